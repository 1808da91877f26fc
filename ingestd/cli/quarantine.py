"""``ingestd quarantine``: messages held for a person: list, show, export, retry, purge."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from ingestd.cli import exits
from ingestd.cli.common import (
    add_config_option,
    database,
    note_truncation,
    print_json,
    print_record,
    settings_from,
    terminal_safe,
    write_bytes,
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
    show = commands.add_parser("show", help="one quarantined message: why, and what it is")
    add_config_option(show)
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=show_quarantined)
    export = commands.add_parser(
        "export", help="write a quarantined message's bytes, byte-exact (> file.eml)")
    add_config_option(export)
    export.add_argument("id", type=int)
    export.set_defaults(func=export_quarantined)
    purge = commands.add_parser(
        "purge", help="delete quarantined messages received more than DAYS days ago")
    add_config_option(purge)
    purge.add_argument("--older-than", type=days, required=True, metavar="DAYS")
    purge.set_defaults(func=purge_quarantined)


def days(value: str) -> int:
    """A whole number of days, 0 or more (argparse type)."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days (0 or more)")
    return number


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


def _quarantined(conn: Any, message_id: int) -> dict[str, Any]:
    from ingestd.errors import NotFound
    from ingestd.services import messages

    record = messages.show_message(conn, message_id)
    if record["status"] != "quarantined":
        raise NotFound(f"message {message_id} is {record['status']}, not quarantined")
    return record


def show_quarantined(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only

    with database(settings_from(args)) as engine, read_only(engine) as conn:
        record = _quarantined(conn, args.id)
    if args.json:
        print_json(record)
    else:
        print_record(record)
    return exits.OK


def export_quarantined(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services.retention import stored_raw

    with database(settings_from(args)) as engine, read_only(engine) as conn:
        _quarantined(conn, args.id)
        raw = stored_raw(conn, args.id)
    write_bytes(raw)
    return exits.OK


def purge_quarantined(args: argparse.Namespace) -> int:
    from ingestd.services.retention import purge_quarantine

    with database(settings_from(args)) as engine:
        deleted = purge_quarantine(engine, timedelta(days=args.older_than))
    print(f"{deleted} quarantined message(s) older than {args.older_than} day(s) deleted")
    return exits.OK
