"""My Inbox: list, show and act on the items sales mail leaves for agents.

Shared by the CLI (``ingestd inbox ...``) and the HTTP API (``/api/inbox``):
the records built here are both ``--json`` contracts. Every action is one
transaction that first moves the item out of ``open`` with a conditional
update, so acting twice, or two agents racing, ends with exactly one winner;
the loser gets ``AlreadyActed`` carrying the item as it now is.

Visibility: an agent sees and acts on its own items only (another agent's
item is ``NotFound``, so its existence is not revealed); administrators see
and act on all. ``visible_to=None`` is the CLI's operator view (everything).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ingestd.addresses import normalise_address
from ingestd.config.settings import IngestdSettings
from ingestd.db.tables import AGENTS, INBOX_ITEMS
from ingestd.errors import InvalidRequest, NotFound
from ingestd.services import inbox_actions
from ingestd.services.inbox_items import (
    ITEM_KEYS,
    ITEM_QUERY,
    Actor,
    actor_by_email,
    find_item,
    item_record,
    visible,
)
from ingestd.services.page import Page, count_where
from ingestd.services.retention import stored_raw
from ingestd.services.vocabulary import INBOX_STATUSES

__all__ = ["ITEM_KEYS", "Actor", "actor_by_email", "attach", "convert", "delete",
           "item_message", "list_items", "note", "show_item"]


def list_items(conn: sa.Connection, *, visible_to: Actor | None = None,
               agent_email: str | None = None, status: str | None = None,
               limit: int = 100) -> Page:
    """Items, newest first; ``InvalidRequest`` for an unknown status."""
    if status and status not in INBOX_STATUSES:
        raise InvalidRequest(f"an inbox item's status is one of {', '.join(INBOX_STATUSES)}")
    conditions = [visible(visible_to)]
    if agent_email is not None:
        address = normalise_address(agent_email)
        agent_id = conn.execute(sa.select(AGENTS.c.id).where(AGENTS.c.email == address)).scalar()
        if agent_id is None:
            raise NotFound(f"no agent with address {address}")
        conditions.append(INBOX_ITEMS.c.agent_id == agent_id)
    # Deleted items are hidden, not gone: only asking for them shows them.
    conditions.append(INBOX_ITEMS.c.status == status if status
                      else INBOX_ITEMS.c.status != "deleted")
    query = ITEM_QUERY.where(*conditions).order_by(INBOX_ITEMS.c.id.desc()).limit(max(limit, 0))
    records = [item_record(row) for row in conn.execute(query)]
    return Page(records, count_where(conn, INBOX_ITEMS, *conditions))


def show_item(conn: sa.Connection, item_id: int, *, visible_to: Actor | None = None
              ) -> dict[str, Any]:
    return item_record(find_item(conn, item_id, visible_to))


def item_message(conn: sa.Connection, item_id: int, *, visible_to: Actor | None = None
                 ) -> bytes:
    """The stored message's raw bytes, exactly as received."""
    item = find_item(conn, item_id, visible_to)
    if item.inbound_message_id is None:
        raise NotFound(f"inbox item {item_id} has no stored message")
    return stored_raw(conn, item.inbound_message_id)


def attach(conn: sa.Connection, settings: IngestdSettings, item_id: int, ticket_id: int,
           actor: Actor) -> dict[str, Any]:
    """Add the mail to an existing ticket as an email action with its attachments."""
    return inbox_actions.attach(conn, settings, item_id, ticket_id, actor)


def convert(conn: sa.Connection, settings: IngestdSettings, item_id: int, actor: Actor,
            summary: str | None = None) -> dict[str, Any]:
    """A new ticket of the mailbox's match type; details = the body, contact = the sender."""
    return inbox_actions.convert(conn, settings, item_id, actor, summary)


def note(conn: sa.Connection, settings: IngestdSettings, item_id: int, actor: Actor,
         client: str | None = None) -> dict[str, Any]:
    """A CRM note on a client (by name, else suggested from the sender's domain)."""
    return inbox_actions.note(conn, settings, item_id, actor, client)


def delete(conn: sa.Connection, item_id: int, actor: Actor) -> dict[str, Any]:
    """Hide the item (administrators only: ``Forbidden`` otherwise); the message stays."""
    return inbox_actions.delete(conn, item_id, actor)
