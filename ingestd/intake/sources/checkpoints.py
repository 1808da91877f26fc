"""mailbox_checkpoints: where each folder's last poll stopped, written with the mail it covers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from ingestd.db.errors import translated
from ingestd.db.tables import MAILBOX_CHECKPOINTS
from ingestd.intake.sources.pull import Cursor

C = MAILBOX_CHECKPOINTS.c


@dataclass(frozen=True)
class FolderCheckpoint:
    cursor: Cursor
    # The earliest mail this mailbox may import (first connection or import_since).
    since: datetime
    # The last poll that found the cursor valid (None for one not yet written).
    checked_at: datetime | None = None


def load(engine: Engine, mailbox: str, folder: str) -> FolderCheckpoint | None:
    with translated("read checkpoint"), engine.connect() as conn:
        row = conn.execute(sa.select(C.cursor, C.since, C.checked_at).where(
            C.mailbox == mailbox, C.folder == folder)).first()
    if row is None:
        return None
    since = _utc(row.since)
    assert since is not None  # NOT NULL
    return FolderCheckpoint(json.loads(row.cursor), since, _utc(row.checked_at))


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite keeps no zone; every timestamp is stored in UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _upsert(dialect: str) -> sa.Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(MAILBOX_CHECKPOINTS)
    return stmt.on_conflict_do_update(
        index_elements=["mailbox", "folder"],
        set_={"cursor": stmt.excluded.cursor, "since": stmt.excluded.since,
              "updated_at": stmt.excluded.updated_at, "checked_at": stmt.excluded.checked_at,
              "fetch_failures": stmt.excluded.fetch_failures})


def save(conn: sa.Connection, mailbox: str, folder: str, checkpoint: FolderCheckpoint,
         now: datetime) -> None:
    """Write the folder's checkpoint in ``conn``'s transaction (the messages' own)."""
    conn.execute(_upsert(conn.dialect.name), {
        "mailbox": mailbox, "folder": folder, "since": checkpoint.since,
        "cursor": json.dumps(checkpoint.cursor, sort_keys=True),
        "updated_at": now, "checked_at": now, "fetch_failures": None,
    })


def count_fetch_failure(conn: sa.Connection, mailbox: str, folder: str,
                        provider_id: str) -> int:
    """One more poll that could not fetch ``provider_id``; the count so far (0: no
    checkpoint to keep it in yet, as in a first connection's backfill)."""
    row = conn.execute(sa.select(C.fetch_failures).where(
        C.mailbox == mailbox, C.folder == folder)).first()
    if row is None:
        return 0
    failures = dict(row.fetch_failures or {})
    failures[provider_id] = int(failures.get(provider_id, 0)) + 1
    conn.execute(sa.update(MAILBOX_CHECKPOINTS).where(C.mailbox == mailbox, C.folder == folder)
                 .values(fetch_failures=failures))
    return int(failures[provider_id])
