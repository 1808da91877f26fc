"""``ingestd messages``: the inbound log (what came in, and what became of it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import sqlalchemy as sa

from ingestd.cli import exits
from ingestd.cli.common import CommandFailed, add_config_option, database, print_json, settings_from
from ingestd.db.engine import read_only
from ingestd.db.tables import INBOUND
from ingestd.requeue import reprocess

# The contract of `messages list/show --json`.
LOG_COLUMNS = (
    "id", "source", "mailbox", "envelope_from", "envelope_to", "message_id", "subject",
    "received_at", "status", "reason", "attempts", "ticket_id", "action_id",
    "inbox_item_id", "duplicate_of",
)
STATUSES = ("pending", "processed", "duplicate", "ignored", "quarantined")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("messages", help="the inbound message log")
    commands = parser.add_subparsers(dest="messages_command", required=True)
    listing = commands.add_parser("list", help="list inbound messages, newest first")
    add_config_option(listing)
    listing.add_argument("--status", choices=STATUSES)
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


def _record(row: Any) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in LOG_COLUMNS}
    if record["received_at"] is not None:
        record["received_at"] = record["received_at"].isoformat()
    record["also_mailboxes"] = row.also_mailboxes
    record["size"] = row.size
    return record


def list_messages(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    columns = [INBOUND.c[name] for name in (*LOG_COLUMNS, "also_mailboxes", "size")]
    query = sa.select(*columns).order_by(INBOUND.c.id.desc()).limit(max(args.limit, 0))
    if args.status:
        query = query.where(INBOUND.c.status == args.status)
    if args.mailbox:
        query = query.where(INBOUND.c.mailbox == args.mailbox)
    with database(settings) as engine, read_only(engine) as conn:
        records = [_record(row) for row in conn.execute(query)]
    if args.json:
        print_json(records)
        return exits.OK
    for r in records:
        reason = f"  ({r['reason']})" if r["reason"] else ""
        print(f"{r['id']:>7}  {r['received_at'][:19]}  {r['status']:<11} {r['mailbox']:<12} "
              f"{(r['subject'] or '')[:50]}{reason}")
    if not records:
        print("no messages", file=sys.stderr)
    return exits.OK


def show_message(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as engine, read_only(engine) as conn:
        row = conn.execute(sa.select(INBOUND).where(INBOUND.c.id == args.id)).first()
    if row is None:
        raise CommandFailed(exits.DATAERR, f"no inbound message with id {args.id}")
    if args.raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(row.raw)
        sys.stdout.buffer.flush()
        return exits.OK
    record = _record(row)
    record["defects"] = row.defects
    record["stage_timings"] = row.stage_timings
    if args.json:
        print_json(record)
    else:
        for key, value in record.items():
            print(f"{key + ':':<16} {'' if value is None else value}")
    return exits.OK


def reprocess_message(args: argparse.Namespace) -> int:
    with database(settings_from(args)) as engine, engine.begin() as conn:
        was = reprocess(conn, args.id)
    print(f"message {args.id} ({was}) is pending again; the daemon's workers will process it")
    return exits.OK
