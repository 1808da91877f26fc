"""The inbound log: what came in and what became of it (``messages``, ``quarantine``).

The records built here are the ``--json`` contract of ``ingestd messages`` and
``ingestd quarantine list``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ingestd.db.tables import INBOUND
from ingestd.errors import NotFound
from ingestd.services.page import Page, count_where
from ingestd.services.retention import stored_raw

# The keys of every inbound record, in this order (then also_mailboxes and size).
LOG_COLUMNS = (
    "id", "source", "mailbox", "envelope_from", "envelope_to", "message_id", "subject",
    "received_at", "status", "reason", "attempts", "ticket_id", "action_id",
    "inbox_item_id", "duplicate_of",
)
_LISTED = (*LOG_COLUMNS, "also_mailboxes", "size")


def message_record(row: Any) -> dict[str, Any]:
    """One inbound row (with at least the listed columns) as its JSON record."""
    record = {name: getattr(row, name) for name in LOG_COLUMNS}
    if record["received_at"] is not None:
        record["received_at"] = record["received_at"].isoformat()
    record["also_mailboxes"] = row.also_mailboxes
    record["size"] = row.size
    return record


def _page(conn: sa.Connection, conditions: list[sa.ColumnElement[bool]],
          order: sa.ColumnElement[Any], limit: int) -> Page:
    query = (sa.select(*(INBOUND.c[name] for name in _LISTED))
             .where(*conditions).order_by(order).limit(max(limit, 0)))
    records = [message_record(row) for row in conn.execute(query)]
    return Page(records, count_where(conn, INBOUND, *conditions))


def list_messages(conn: sa.Connection, *, status: str | None = None,
                  mailbox: str | None = None, limit: int = 50) -> Page:
    """Inbound messages, newest first, at most ``limit``."""
    conditions = []
    if status:
        conditions.append(INBOUND.c.status == status)
    if mailbox:
        conditions.append(INBOUND.c.mailbox == mailbox)
    return _page(conn, conditions, INBOUND.c.id.desc(), limit)


def list_quarantined(conn: sa.Connection, *, limit: int = 100) -> Page:
    """Quarantined messages, oldest first (the longest waiting), at most ``limit``."""
    return _page(conn, [INBOUND.c.status == "quarantined"], INBOUND.c.id.asc(), limit)


def show_message(conn: sa.Connection, message_id: int) -> dict[str, Any]:
    """One inbound message's record, with its parser defects and stage timings."""
    columns = (*(INBOUND.c[name] for name in _LISTED), INBOUND.c.defects,
               INBOUND.c.stage_timings, INBOUND.c.raw_purged_at)
    row = conn.execute(sa.select(*columns).where(INBOUND.c.id == message_id)).first()
    if row is None:
        raise NotFound(f"no inbound message with id {message_id}")
    record = message_record(row)
    record["defects"] = row.defects
    record["stage_timings"] = row.stage_timings
    record["raw_purged_at"] = (row.raw_purged_at.isoformat()
                               if row.raw_purged_at is not None else None)
    return record


def raw_message(conn: sa.Connection, message_id: int) -> bytes:
    """The stored bytes of one inbound message, byte-exact (``RawPurged`` once purged)."""
    return stored_raw(conn, message_id)
