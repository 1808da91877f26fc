"""``ingestd messages``: the inbound log (what came in, and what became of it)."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

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
from ingestd.cli.quarantine import days
from ingestd.services.vocabulary import INBOUND_STATUSES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("messages", help="the inbound message log")
    commands = parser.add_subparsers(dest="messages_command", required=True)
    listing = commands.add_parser("list", help="list inbound messages, newest first")
    add_config_option(listing)
    listing.add_argument("--status", choices=INBOUND_STATUSES)
    listing.add_argument("--mailbox")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=list_messages)
    show = commands.add_parser("show", help="one inbound message")
    add_config_option(show)
    show.add_argument("id", type=int)
    show.add_argument("--raw", action="store_true", help="write the stored bytes, byte-exact")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=show_message)
    again = commands.add_parser(
        "reprocess", help="process a duplicate, ignored or quarantined message again"
    )
    add_config_option(again)
    again.add_argument("id", type=int)
    again.set_defaults(func=reprocess_message)
    purge = commands.add_parser(
        "purge", help="drop the raw bytes of processed, duplicate and ignored messages "
        "received more than DAYS days ago (rows, dedupe keys and tickets stay)")
    add_config_option(purge)
    purge.add_argument("--older-than", type=days, required=True, metavar="DAYS")
    purge.set_defaults(func=purge_messages)


def list_messages(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services import messages

    settings = settings_from(args)
    with database(settings) as engine, read_only(engine) as conn:
        page = messages.list_messages(conn, status=args.status, mailbox=args.mailbox,
                                      limit=args.limit)
    if args.json:
        print_json(page.records)
    else:
        for r in page.records:
            reason = f"  ({r['reason']})" if r["reason"] else ""
            subject = terminal_safe((r["subject"] or "")[:50])
            print(f"{r['id']:>7}  {r['received_at'][:19]}  {r['status']:<11} "
                  f"{r['mailbox']:<12} {subject}{reason}")
        if not page.total:
            print("no messages", file=sys.stderr)
    note_truncation(page)
    return exits.OK


def show_message(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services import messages

    settings = settings_from(args)
    with database(settings) as engine, read_only(engine) as conn:
        if args.raw:
            raw = messages.raw_message(conn, args.id)
        else:
            record = messages.show_message(conn, args.id)
    if args.raw:
        write_bytes(raw)
    elif args.json:
        print_json(record)
    else:
        print_record(record)
    return exits.OK


def reprocess_message(args: argparse.Namespace) -> int:
    from ingestd.queue import reprocess

    with database(settings_from(args)) as engine, engine.begin() as conn:
        was = reprocess(conn, args.id)
    print(f"message {args.id} ({was}) is pending again; the daemon's workers will process it")
    return exits.OK


def purge_messages(args: argparse.Namespace) -> int:
    from ingestd.services.retention import purge_raw

    with database(settings_from(args)) as engine:
        purged = purge_raw(engine, timedelta(days=args.older_than))
    print(f"raw bytes of {purged} message(s) older than {args.older_than} day(s) purged")
    return exits.OK
