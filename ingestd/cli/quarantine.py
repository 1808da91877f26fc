"""``ingestd quarantine``: messages held for a person, and sending them back."""

from __future__ import annotations

import argparse

from ingestd.cli import exits
from ingestd.cli.common import (
    add_config_option,
    database,
    note_truncation,
    print_json,
    settings_from,
    terminal_safe,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("quarantine", help="messages held for a person")
    commands = parser.add_subparsers(dest="quarantine_command", required=True)
    listing = commands.add_parser(
        "list", help="quarantined messages with their reasons, the longest waiting first"
    )
    add_config_option(listing)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=list_quarantine)
    again = commands.add_parser("retry", help="back to pending, attempts reset")
    add_config_option(again)
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?")
    which.add_argument("--all", action="store_true")
    again.set_defaults(func=retry)


def list_quarantine(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services import messages

    with database(settings_from(args)) as engine, read_only(engine) as conn:
        page = messages.list_quarantined(conn, limit=args.limit)
    if args.json:
        print_json(page.records)
    else:
        for r in page.records:
            print(f"{r['id']:>7}  {r['mailbox']:<12} {terminal_safe(r['reason'] or '')}")
        print(f"{page.total} quarantined")
    note_truncation(page)
    return exits.OK


def retry(args: argparse.Namespace) -> int:
    from ingestd.queue import retry_quarantined

    with database(settings_from(args)) as engine, engine.begin() as conn:
        ids = retry_quarantined(conn, None if args.all else args.id)
    print(f"{len(ids)} message(s) back to pending")
    return exits.OK
