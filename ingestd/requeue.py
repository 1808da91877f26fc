"""Sending held messages back to the workers: quarantine retry and reprocess."""

from __future__ import annotations

import sqlalchemy as sa

from ingestd.db.tables import INBOUND
from ingestd.errors import InvalidRequest, NotFound

_FRESH = {"status": "pending", "attempts": 0, "last_error": None, "reason": None,
          "claimed_by": None, "claimed_until": None, "processed_at": None}


def retry_quarantined(conn: sa.Connection, message_id: int | None) -> list[int]:
    """Quarantined → pending with attempts reset; ``None`` means all of them."""
    query = sa.select(INBOUND.c.id).where(INBOUND.c.status == "quarantined")
    if message_id is not None:
        query = query.where(INBOUND.c.id == message_id)
    ids = [int(i) for i in conn.execute(query).scalars()]
    if message_id is not None and not ids:
        raise NotFound(f"message {message_id} is not quarantined")
    if ids:
        conn.execute(sa.update(INBOUND).where(INBOUND.c.id.in_(ids)).values(**_FRESH))
    return ids


def reprocess(conn: sa.Connection, message_id: int) -> str:
    """Send a duplicate, ignored or quarantined message through processing again.

    A duplicate is processed as if it were first (dedupe is skipped for it):
    the operator decided it is not the same message after all.
    """
    status = conn.execute(sa.select(INBOUND.c.status).where(INBOUND.c.id == message_id)).scalar()
    if status is None:
        raise NotFound(f"no inbound message with id {message_id}")
    if status not in ("duplicate", "ignored", "quarantined"):
        raise InvalidRequest(
            f"message {message_id} is {status}; only duplicate, ignored or quarantined "
            "messages can be reprocessed"
        )
    conn.execute(sa.update(INBOUND).where(INBOUND.c.id == message_id).values(
        **_FRESH, skip_dedupe=status == "duplicate", duplicate_of=None))
    return str(status)
