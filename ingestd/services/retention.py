"""Retention: what an operator may drop, and what must stay.

``purge_raw`` drops the raw bytes of messages that are done with (processed,
duplicate, ignored) and older than a cut-off. The row stays — the log, its
ticket links, and its dedupe keys, so a later copy of the same mail is still
a duplicate — and ``raw_purged_at`` says when. A message whose My Inbox item
is still ``open`` keeps its bytes: the agent may yet attach or convert it.
Tickets, actions and attachments are never touched.

``purge_quarantine`` deletes quarantined messages older than a cut-off, with
their dedupe keys (they were never processed: a later copy should be).

Both work in batches, each its own transaction, so a purge of millions of
rows never holds one long transaction (nor SQLite's write lock) for long.
Nothing is purged unless an operator runs one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ingestd.db.models import utcnow
from ingestd.db.tables import ACTIONS, DEDUPE_KEYS, INBOUND, INBOX_ITEMS
from ingestd.errors import NotFound, RawPurged

_DONE = ("processed", "duplicate", "ignored")
BATCH = 500


def stored_raw(conn: sa.Connection, message_id: int) -> bytes:
    """The stored bytes of one inbound message, or ``RawPurged`` / ``NotFound``."""
    row = conn.execute(sa.select(INBOUND.c.raw, INBOUND.c.raw_purged_at)
                       .where(INBOUND.c.id == message_id)).first()
    if row is None:
        raise NotFound(f"no inbound message with id {message_id}")
    if row.raw_purged_at is not None:
        raise RawPurged(purged_text(message_id, row.raw_purged_at))
    return bytes(row.raw)


def purged_text(message_id: int, when: datetime) -> str:
    return f"message {message_id}: raw bytes purged on {when.date().isoformat()}"


def purge_raw(engine: sa.Engine, older_than: timedelta, *,
              now: Callable[[], datetime] = utcnow) -> int:
    """Drop the raw bytes of done messages received before now - ``older_than``."""
    cutoff = now() - older_than
    open_item = (sa.select(INBOX_ITEMS.c.id)
                 .where(INBOX_ITEMS.c.inbound_message_id == INBOUND.c.id,
                        INBOX_ITEMS.c.status == "open"))
    due = (sa.select(INBOUND.c.id)
           .where(INBOUND.c.status.in_(_DONE), INBOUND.c.received_at < cutoff,
                  INBOUND.c.raw_purged_at.is_(None), ~sa.exists(open_item))
           .order_by(INBOUND.c.id).limit(BATCH))

    def purge(conn: sa.Connection, ids: list[int]) -> int:
        # Status checked again: a row reprocessed meanwhile is pending and keeps its bytes.
        return conn.execute(
            sa.update(INBOUND).where(INBOUND.c.id.in_(ids), INBOUND.c.status.in_(_DONE))
            .values(raw=b"", raw_purged_at=now())).rowcount

    return _in_batches(engine, due, purge)


def purge_quarantine(engine: sa.Engine, older_than: timedelta, *,
                     now: Callable[[], datetime] = utcnow) -> int:
    """Delete quarantined messages received before now - ``older_than``."""
    cutoff = now() - older_than
    due = (sa.select(INBOUND.c.id)
           .where(INBOUND.c.status == "quarantined", INBOUND.c.received_at < cutoff)
           .order_by(INBOUND.c.id).limit(BATCH))

    def delete(conn: sa.Connection, ids: list[int]) -> int:
        conn.execute(sa.update(INBOUND).where(INBOUND.c.duplicate_of.in_(ids))
                     .values(duplicate_of=None))
        for table in (INBOX_ITEMS, ACTIONS):  # none expected: never processed
            conn.execute(sa.update(table).where(table.c.inbound_message_id.in_(ids))
                         .values(inbound_message_id=None))
        conn.execute(sa.delete(DEDUPE_KEYS).where(DEDUPE_KEYS.c.inbound_message_id.in_(ids)))
        return conn.execute(sa.delete(INBOUND).where(
            INBOUND.c.id.in_(ids), INBOUND.c.status == "quarantined")).rowcount

    return _in_batches(engine, due, delete)


def _in_batches(engine: sa.Engine, due: sa.Select[Any],
                act: Callable[[sa.Connection, list[int]], int]) -> int:
    """``act`` on the ids ``due`` selects, a batch per transaction, until none is left."""
    done = 0
    while True:
        with engine.begin() as conn:
            ids = [int(i) for i in conn.execute(due).scalars()]
            if not ids:
                return done
            done += act(conn, ids)
