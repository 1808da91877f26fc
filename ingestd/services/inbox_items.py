"""My Inbox items as records, who may see them, and the claim every action starts with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ingestd.addresses import normalise_address
from ingestd.db.tables import AGENTS, INBOX_ITEMS
from ingestd.errors import AlreadyActed, NotFound

# The keys of an item record, in order (CLI --json and the HTTP API alike).
ITEM_KEYS = ("id", "agent_email", "status", "from", "subject", "received_at", "preview",
             "message_id", "inbound_id", "acted_by", "acted_at", "ticket_id", "crm_note_id")


@dataclass(frozen=True)
class Actor:
    """The agent acting: from ``--as EMAIL`` on the CLI, or the bearer token's owner."""

    agent_id: int
    email: str
    admin: bool


def actor_by_email(conn: sa.Connection, email: str) -> Actor:
    """The active agent with this address; ``NotFound`` otherwise."""
    address = normalise_address(email)
    row = conn.execute(
        sa.select(AGENTS.c.id, AGENTS.c.email, AGENTS.c.admin)
        .where(AGENTS.c.email == address, AGENTS.c.active.is_(True))
    ).first()
    if row is None:
        raise NotFound(f"no active agent with address {address}")
    return Actor(agent_id=int(row.id), email=row.email, admin=bool(row.admin))


_OWNER = AGENTS.alias("owner")
_ACTED_BY = AGENTS.alias("acted_by")
ITEM_QUERY = (
    sa.select(INBOX_ITEMS, _OWNER.c.email.label("agent_email"),
              _ACTED_BY.c.email.label("acted_by_email"))
    .outerjoin(_OWNER, _OWNER.c.id == INBOX_ITEMS.c.agent_id)
    .outerjoin(_ACTED_BY, _ACTED_BY.c.id == INBOX_ITEMS.c.acted_by_id)
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def item_record(row: Any) -> dict[str, Any]:
    """A row of ``ITEM_QUERY`` as its record (keys in ``ITEM_KEYS`` order)."""
    return {
        "id": row.id, "agent_email": row.agent_email, "status": row.status,
        "from": row.from_address, "subject": row.subject,
        "received_at": _iso(row.received_at), "preview": row.preview,
        "message_id": row.message_id, "inbound_id": row.inbound_message_id,
        "acted_by": row.acted_by_email, "acted_at": _iso(row.acted_at),
        "ticket_id": row.ticket_id, "crm_note_id": row.crm_note_id,
    }


def visible(actor: Actor | None) -> sa.ColumnElement[bool]:
    """The items ``actor`` may see: its own, or all for an administrator or the operator."""
    if actor is None or actor.admin:
        return sa.true()
    return INBOX_ITEMS.c.agent_id == actor.agent_id


def find_item(conn: sa.Connection, item_id: int, actor: Actor | None) -> Any:
    """The item's ``ITEM_QUERY`` row; ``NotFound`` alike when missing and when not visible."""
    row = conn.execute(ITEM_QUERY.where(INBOX_ITEMS.c.id == item_id, visible(actor))).first()
    if row is None:
        raise NotFound(f"no inbox item with id {item_id}")
    return row


def claim(conn: sa.Connection, item_id: int, actor: Actor, status: str, now: datetime) -> Any:
    """Move an open item to ``status`` for ``actor``; return its row as it now is.

    The conditional update is the serialising point: of two transactions
    acting on one item, the second waits for the first's row lock (SQLite:
    its write lock), then finds the item no longer open and gets
    ``AlreadyActed`` with the item as the winner left it.
    """
    moved = conn.execute(
        sa.update(INBOX_ITEMS)
        .where(INBOX_ITEMS.c.id == item_id, INBOX_ITEMS.c.status == "open", visible(actor))
        .values(status=status, acted_by_id=actor.agent_id, acted_at=now, updated_at=now)
    ).rowcount
    row = find_item(conn, item_id, actor)
    if moved != 1:
        raise AlreadyActed(f"item {item_id} is already {row.status}", current=item_record(row))
    return row


def link(conn: sa.Connection, item_id: int, **values: int) -> None:
    """Record what the item became (``ticket_id``, ``crm_note_id``)."""
    conn.execute(sa.update(INBOX_ITEMS).where(INBOX_ITEMS.c.id == item_id).values(**values))
