"""``ingestd explain --mailbox NAME FILE``: every decision processing would take, unwritten."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    parser = subparsers.add_parser(
        "explain", help="show what processing would do with a message, writing nothing")
    add_config_option(parser)
    parser.add_argument("--mailbox", required=True, metavar="NAME")
    parser.add_argument("file", metavar="FILE", help="an .eml file, or - for stdin")
    parser.add_argument("--as-new", action="store_true",
                        help="skip the duplicate check (explain a message already stored)")
    parser.add_argument("--envelope-from", metavar="ADDRESS",
                        help="the SMTP MAIL FROM it came with (as `ingest` takes it)")
    parser.add_argument("--peer", metavar="IP",
                        help="judge it as mail from this SMTP client (sender authentication "
                             "trusts Authentication-Results only from trusted_relays); "
                             "without it, as a file `ingest` imports")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=explain_command)


def explain_command(args: argparse.Namespace) -> int:
    from ingestd.db.inbound import utcnow
    from ingestd.services.explain import explain

    settings = settings_from(args)
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise CommandFailed(exits.NOINPUT, f"cannot read {args.file}: {exc.strerror}") from exc
    with database(settings) as engine:
        record = explain(engine, settings, args.mailbox, raw, utcnow(), as_new=args.as_new,
                         envelope_from=args.envelope_from, peer=args.peer)
    if args.json:
        print_json(record)
    else:
        for line in lines(record):
            print(terminal_safe(line))
    return exits.OK


def lines(record: dict[str, Any]) -> list[str]:
    out = [f"mailbox   {record['mailbox']}"]
    parse = record.get("parse")
    if parse is not None:
        out.append(f"parse     subject {parse['subject']!r}, from {parse['from']} "
                   f"({parse['sender_header']}), {parse['attachments']} attachment(s), "
                   f"{parse['text_chars']} characters of text")
        out.extend(f"          defect: {d}" for d in parse["defects"])
    if record.get("auto_reply"):
        out.append(f"protect   an auto-reply ({record['auto_reply']})")
    bounce = record.get("bounce")
    if bounce:
        failed = ", ".join(f"{f['address']} {f['status']} {'hard' if f['hard'] else 'soft'}"
                           for f in bounce["failed"])
        out.append(f"protect   a bounce ({bounce['read_as']}): {failed}")
    tag = record.get("tag")
    out.append(f"tag       {tag['text']} in the {tag['where']} names ticket #{tag['ticket_id']}"
               if tag else "tag       none found")
    authentication = record.get("authentication")
    if authentication is not None:
        out.append(f"auth      {authentication['why']}")
    sender = record.get("sender")
    if sender is not None:
        made = " (a new user would be made)" if sender["user_created"] else ""
        out.append(f"sender    {sender['kind']} {sender['address'] or '(no address)'}{made}")
    out.extend(f"decision  {note}" for note in record["notes"])
    for verdict in record["rules"]:
        state = "matched" if verdict["matched"] else f"not matched: {verdict['why']}"
        out.append(f"rule      {verdict['rule']}: {state}")
    if record["plan"]:
        out.append("plan      " + ", ".join(f"{k} {v}" for k, v in record["plan"].items()))
    outcome = record["outcome"]
    target = f" (ticket #{outcome['ticket_id']})" if outcome["ticket_id"] else ""
    out.append(f"outcome   {outcome['result']}{target}: {outcome['reason'] or ''}".rstrip(": "))
    return out
