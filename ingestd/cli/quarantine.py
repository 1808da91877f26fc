"""``ingestd quarantine``: messages held for a person, and sending them back."""

from __future__ import annotations

import argparse

import sqlalchemy as sa

from ingestd.cli import exits
from ingestd.cli.common import add_config_option, database, print_json, settings_from
from ingestd.cli.messages import LOG_COLUMNS, _record
from ingestd.db.engine import read_only
from ingestd.db.tables import INBOUND
from ingestd.requeue import retry_quarantined


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("quarantine", help="messages held for a person")
    commands = parser.add_subparsers(dest="quarantine_command", required=True)
    listing = commands.add_parser("list", help="quarantined messages with their reasons")
    add_config_option(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=list_quarantine)
    again = commands.add_parser("retry", help="back to pending, attempts reset")
    add_config_option(again)
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?")
    which.add_argument("--all", action="store_true")
    again.set_defaults(func=retry)


def list_quarantine(args: argparse.Namespace) -> int:
    columns = [INBOUND.c[name] for name in (*LOG_COLUMNS, "also_mailboxes", "size")]
    with database(settings_from(args)) as engine, read_only(engine) as conn:
        records = [_record(row) for row in conn.execute(
            sa.select(*columns).where(INBOUND.c.status == "quarantined").order_by(INBOUND.c.id))]
    if args.json:
        print_json(records)
    else:
        for r in records:
            print(f"{r['id']:>7}  {r['mailbox']:<12} {r['reason']}")
        print(f"{len(records)} quarantined")
    return exits.OK


def retry(args: argparse.Namespace) -> int:
    with database(settings_from(args)) as engine, engine.begin() as conn:
        ids = retry_quarantined(conn, None if args.all else args.id)
    print(f"{len(ids)} message(s) back to pending")
    return exits.OK
