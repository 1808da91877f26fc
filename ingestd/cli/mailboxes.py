"""``ingestd mailboxes list | poll NAME``: how the pulled mailboxes are doing; poll one now."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ingestd.cli import exits
from ingestd.cli.common import (
    CommandFailed,
    add_config_option,
    database,
    print_json,
    settings_from,
    terminal_safe,
)

if TYPE_CHECKING:
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(subparsers: Parsers) -> None:
    parser = subparsers.add_parser("mailboxes", help="pulled mailboxes: status, poll now")
    commands = parser.add_subparsers(dest="mailboxes_command", required=True)
    listing = commands.add_parser("list", help="every mailbox with its source and status")
    add_config_option(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=list_command)
    poll = commands.add_parser("poll", help="poll one pulled mailbox now and print what it did")
    add_config_option(poll)
    poll.add_argument("name", metavar="NAME")
    poll.add_argument("--json", action="store_true")
    poll.set_defaults(func=poll_command)
    auth = commands.add_parser(
        "auth", help="authorise a Gmail mailbox (OAuth client): consent once, store the token")
    add_config_option(auth)
    auth.add_argument("name", metavar="NAME")
    auth.add_argument("--paste", action="store_true",
                      help="headless: print the consent URL and read back the redirected address")
    auth.add_argument("--port", type=int, default=8765,
                      help="loopback port of the redirect (default 8765; 0: any, local mode)")
    auth.set_defaults(func=auth_command)


def list_command(args: argparse.Namespace) -> int:
    from ingestd.db.errors import translated
    from ingestd.db.inbound import utcnow
    from ingestd.services.mailboxes import mailbox_records

    settings = settings_from(args)
    with database(settings) as engine, translated("list mailboxes"), engine.connect() as conn:
        records = mailbox_records(conn, settings, utcnow())
    if args.json:
        print_json(records)
        return exits.OK
    print(f"{'NAME':<20} {'SOURCE':<6} {'STATUS':<12} {'IMPORTED':>8} {'CURSOR AGE':>10}  "
          "LAST SUCCESS / ERROR")
    for r in records:
        age = f"{r['cursor_age_s']:.0f}s" if r["cursor_age_s"] is not None else "-"
        last = r["last_error"] if r["status"] in ("error", "needs_reauth") else \
            (r["last_success_at"] or "-")
        held = f"  (polling: {r['held_by']})" if r["held_by"] else ""
        print(terminal_safe(f"{r['name']:<20} {r['source']:<6} {r['status']:<12} "
                            f"{r['imported']:>8} {age:>10}  {last}{held}"))
    return exits.OK


def poll_command(args: argparse.Namespace) -> int:
    from ingestd.intake.sources.poll import Poller
    from ingestd.intake.sources.registry import batch_size, source_for
    from ingestd.logs import configure_logging

    settings = settings_from(args)
    # The poll's events go to stderr: stdout is the report (and --json must parse).
    configure_logging(settings.logging, to_stderr=True)
    mailbox = settings.mailbox(args.name)
    if mailbox is None:
        raise CommandFailed(exits.USAGE, f"no mailbox named {args.name!r} in the configuration")
    if not mailbox.pulled:
        raise CommandFailed(exits.USAGE, f"mailbox {mailbox.name} receives its mail by SMTP; "
                                         "there is nothing to poll")
    if not mailbox.enabled:
        raise CommandFailed(exits.USAGE, f"mailbox {mailbox.name} is disabled (enabled: false) "
                                         "in the configuration")
    with database(settings) as engine:
        report = Poller(engine, mailbox, source_for(mailbox), batch_size=batch_size(mailbox),
                        max_message_bytes=settings.smtp.max_message_size).poll()
    if args.json:
        print_json(report.record())
    else:
        line = f"{mailbox.name}: {report.status}, imported {report.imported}"
        if report.known:
            line += f", {report.known} already stored"
        if report.too_large:
            line += f", {report.too_large} over smtp.max_message_size left at the source"
        if report.resynced:
            line += f", resynced {', '.join(report.resynced)}"
        if report.backfilled:
            line += f", backfilled {', '.join(report.backfilled)}"
        if report.held_by:
            line += f" (another poller holds the mailbox: {report.held_by})"
        if report.error:
            line += f": {report.error}"
        print(terminal_safe(line))
    if report.status in ("ok",):
        return exits.OK
    if report.status == "needs_reauth":
        return exits.CONFIG
    return exits.TEMPFAIL


def auth_command(args: argparse.Namespace) -> int:
    import sys

    from ingestd.intake.sources import gmail_consent

    settings = settings_from(args)
    mailbox = settings.mailbox(args.name)
    if mailbox is None:
        raise CommandFailed(exits.USAGE, f"no mailbox named {args.name!r} in the configuration")
    gmail = mailbox.gmail
    if gmail is None or gmail.token_file is None:
        raise CommandFailed(exits.USAGE, f"mailbox {mailbox.name} has no OAuth client to "
                                         "authorise (source: gmail with token_file)")

    def show(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.paste:
        if not args.port:
            raise CommandFailed(exits.USAGE, "--paste needs a fixed --port (the redirect "
                                             "address must be known in advance)")
        credentials = gmail_consent.consent_by_paste(gmail, args.port, show, sys.stdin.readline)
    else:
        credentials = gmail_consent.consent_locally(gmail, args.port, show)
    uid, gid = gmail_consent.store_token(credentials, gmail.token_file)
    print(f"stored the refresh token of {mailbox.name} in {gmail.token_file} "
          f"(mode 0600, owner {uid}:{gid})")
    return exits.OK
