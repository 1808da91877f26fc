"""``ingestd tickets``: what processing made, and the operator's two changes."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from ingestd.cli import exits
from ingestd.cli.common import (
    add_config_option,
    database,
    note_truncation,
    print_json,
    settings_from,
    terminal_safe,
)
from ingestd.services.vocabulary import TICKET_STATUSES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("tickets", help="tickets and their actions")
    commands = parser.add_subparsers(dest="tickets_command", required=True)
    listing = commands.add_parser("list", help="list tickets, newest first")
    add_config_option(listing)
    listing.add_argument("--status", choices=TICKET_STATUSES)
    listing.add_argument("--mailbox")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=list_tickets)
    show = commands.add_parser("show", help="one ticket with its actions")
    add_config_option(show)
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=show_ticket)
    status = commands.add_parser("set-status", help="open or close a ticket")
    add_config_option(status)
    status.add_argument("id", type=int)
    status.add_argument("status", choices=TICKET_STATUSES)
    status.set_defaults(func=set_status)
    outgoing = commands.add_parser(
        "add-outgoing", help="record mail the helpdesk sent, so replies to it thread here"
    )
    add_config_option(outgoing)
    outgoing.add_argument("id", type=int)
    outgoing.add_argument("--message-id", required=True)
    outgoing.add_argument("--to", required=True)
    outgoing.add_argument("--subject")
    outgoing.set_defaults(func=add_outgoing)


def list_tickets(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services import tickets

    with database(settings_from(args)) as engine, read_only(engine) as conn:
        page = tickets.list_tickets(conn, status=args.status, mailbox=args.mailbox,
                                    limit=args.limit)
    if args.json:
        print_json(page.records)
    else:
        for r in page.records:
            print(f"#{r['id']:<6} {r['status']:<6} {r['type']:<12} {r['mailbox'] or '':<10} "
                  f"{r['user_email'] or '-':<30} {terminal_safe(r['summary'][:60])}")
    note_truncation(page)
    return exits.OK


def show_ticket(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services import tickets

    with database(settings_from(args)) as engine, read_only(engine) as conn:
        record = tickets.show_ticket(conn, args.id)
    if args.json:
        print_json(record)
        return exits.OK
    print(f"#{record['id']} [{record['status']}] {terminal_safe(record['summary'])}")
    print(f"type {record['type']}, mailbox {record['mailbox']}, user {record['user_email']}, "
          f"client {record['client']}, site {record['site']}")
    for action in record["actions"]:
        _print_action(action)
    return exits.OK


def _print_action(a: dict[str, Any]) -> None:
    print(f"\n-- action {a['id']} ({a['kind']}, {a['sender_kind']}) from {a['from']} "
          f"at {a['created_at']}")
    print(f"   subject: {terminal_safe(a['subject'] or '')}")
    # Mail's CRLF (and any other line break) as plain lines, blank ones at the ends dropped.
    body = "\n".join(line.rstrip() for line in (a["body_text"] or "").splitlines()).strip("\n")
    if body:
        print()
        print(textwrap.indent(terminal_safe(body), "   "))
        print()
    for f in a["attachments"]:
        print(f"   attachment {f['id']}: {terminal_safe(f['filename'] or '')} "
              f"({f['content_type']}, {f['size']} B)")


def set_status(args: argparse.Namespace) -> int:
    from ingestd.services import tickets

    with database(settings_from(args)) as engine, engine.begin() as conn:
        tickets.set_status(conn, args.id, args.status)
    print(f"ticket {args.id} is {args.status}")
    return exits.OK


def add_outgoing(args: argparse.Namespace) -> int:
    from ingestd.services import tickets

    with database(settings_from(args)) as engine, engine.begin() as conn:
        action_id = tickets.add_outgoing(conn, args.id, args.message_id, args.to,
                                         args.subject)
    print(f"recorded outgoing action {action_id} on ticket {args.id}")
    return exits.OK
