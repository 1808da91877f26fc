"""``ingestd inbox``: the My Inbox items sales mail leaves for agents, and acting on them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ingestd.cli import exits
from ingestd.cli.common import (
    add_config_option,
    database,
    note_truncation,
    print_json,
    settings_from,
    terminal_safe,
    write_bytes,
)
from ingestd.services.vocabulary import INBOX_STATUSES

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ingestd.config.settings import IngestdSettings
    from ingestd.services.inbox import Actor

    Action = Callable[[sa.Connection, IngestdSettings, Actor, argparse.Namespace],
                      dict[str, Any]]
    Parsers = argparse._SubParsersAction[argparse.ArgumentParser]


def register(subparsers: Parsers) -> None:
    parser = subparsers.add_parser("inbox", help="My Inbox: sales mail waiting for its agent")
    commands = parser.add_subparsers(dest="inbox_command", required=True)
    listing = _command(commands, "list", "items, newest first (deleted ones only when asked)",
                       list_items, item=False)
    listing.add_argument("--agent", metavar="EMAIL", help="only this agent's items")
    listing.add_argument("--status", choices=INBOX_STATUSES)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true")
    show = _command(commands, "show", "one item", show_item)
    show.add_argument("--json", action="store_true")
    _command(commands, "raw", "write the item's stored message to stdout, byte-exact", raw)
    attach = _action(commands, "attach", "add the mail to a ticket as an email action",
                     _attach)
    attach.add_argument("--ticket", type=int, required=True, metavar="T")
    new = _action(commands, "new", "make the mail a new ticket (the mailbox's match type)",
                  _convert)
    new.add_argument("--summary", metavar="TEXT", help="default: the cleaned subject")
    note = _action(commands, "note", "add the mail as a CRM note on a client", _note)
    note.add_argument("--client", metavar="NAME",
                      help="default: the client owning the sender's domain")
    _action(commands, "delete", "hide the item (administrators only; the message stays)",
            _delete)


def _command(commands: Parsers, name: str, help_text: str,
             func: Callable[[argparse.Namespace], int], *, item: bool = True
             ) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text)
    add_config_option(parser)
    if item:
        parser.add_argument("id", type=int)
    parser.set_defaults(func=func)
    return parser


def _action(commands: Parsers, name: str, help_text: str, action: Action
            ) -> argparse.ArgumentParser:
    parser = _command(commands, name, help_text, act)
    parser.add_argument("--as", dest="as_agent", required=True, metavar="EMAIL",
                        help="the agent acting (its own items; an administrator's: all)")
    parser.add_argument("--json", action="store_true", help="print the item afterwards")
    parser.set_defaults(action=action, verb=name)
    return parser


def list_items(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services import inbox

    with database(settings_from(args)) as engine, read_only(engine) as conn:
        page = inbox.list_items(conn, agent_email=args.agent, status=args.status,
                                limit=args.limit)
    if args.json:
        print_json(page.records)
    else:
        for r in page.records:
            print(f"#{r['id']:<6} {r['status']:<9} {r['agent_email'] or '-':<24} "
                  f"{terminal_safe(r['from'] or '-'):<30} "
                  f"{terminal_safe((r['subject'] or '')[:60])}")
    note_truncation(page)
    return exits.OK


def show_item(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services import inbox

    with database(settings_from(args)) as engine, read_only(engine) as conn:
        record = inbox.show_item(conn, args.id)
    if args.json:
        print_json(record)
        return exits.OK
    print(f"#{record['id']} [{record['status']}] {terminal_safe(record['subject'] or '')}")
    print(f"from {terminal_safe(record['from'] or '-')}, for {record['agent_email'] or '-'}, "
          f"received {record['received_at']}, message {record['inbound_id']}")
    if record["acted_by"]:
        made = (f", ticket #{record['ticket_id']}" if record["ticket_id"] else "") + (
            f", CRM note {record['crm_note_id']}" if record["crm_note_id"] else "")
        print(f"{record['status']} by {record['acted_by']} at {record['acted_at']}{made}")
    if record["preview"]:
        print(f"\n   {terminal_safe(record['preview'])}")
    return exits.OK


def raw(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services import inbox

    with database(settings_from(args)) as engine, read_only(engine) as conn:
        content = inbox.item_message(conn, args.id)
    write_bytes(content)
    return exits.OK


def act(args: argparse.Namespace) -> int:
    """One action in one transaction: a refusal (exit 65) leaves everything as it was."""
    from ingestd.db.errors import translated
    from ingestd.services import inbox

    settings = settings_from(args)
    with database(settings) as engine, translated(f"inbox {args.verb}"), \
            engine.begin() as conn:
        actor = inbox.actor_by_email(conn, args.as_agent)
        record = args.action(conn, settings, actor, args)
    if args.json:
        print_json(record)
    else:
        print(_done(record))
    return exits.OK


def _done(record: dict[str, Any]) -> str:
    what = f"item {record['id']} {record['status']} by {record['acted_by']}"
    if record["status"] == "attached":
        return f"{what}: an action on ticket #{record['ticket_id']}"
    if record["status"] == "converted":
        return f"{what}: new ticket #{record['ticket_id']}"
    if record["status"] == "noted":
        return f"{what}: CRM note {record['crm_note_id']}"
    return f"{what}; its message stays (inbound message {record['inbound_id']})"


def _attach(conn: sa.Connection, settings: IngestdSettings, actor: Actor,
            args: argparse.Namespace) -> dict[str, Any]:
    from ingestd.services import inbox

    return inbox.attach(conn, settings, args.id, args.ticket, actor)


def _convert(conn: sa.Connection, settings: IngestdSettings, actor: Actor,
             args: argparse.Namespace) -> dict[str, Any]:
    from ingestd.services import inbox

    return inbox.convert(conn, settings, args.id, actor, args.summary)


def _note(conn: sa.Connection, settings: IngestdSettings, actor: Actor,
          args: argparse.Namespace) -> dict[str, Any]:
    from ingestd.services import inbox

    return inbox.note(conn, settings, args.id, actor, args.client)


def _delete(conn: sa.Connection, _settings: IngestdSettings, actor: Actor,
            args: argparse.Namespace) -> dict[str, Any]:
    from ingestd.services import inbox

    return inbox.delete(conn, args.id, actor)
