"""The pulled mailboxes' tables: each mailbox's health and lease, each folder's checkpoint
(the rest of the contract: models.py)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ingestd.db.columns import timestamp as _ts


class MailboxState(SQLModel, table=True):
    """One row per pulled mailbox: its health, and the lease of whoever polls it.

    status: pending (never polled) | ok | error (temporary trouble) | needs_reauth
    (``disabled`` comes from the configuration, never from this table).
    held_by / held_until: the poller's lease (``host:pid``), timed by the
    database's clock on PostgreSQL; it is renewed while the poll runs, and a
    checkpoint commits only while it is held.
    """

    __tablename__ = "mailbox_states"
    mailbox: str = Field(sa_column=sa.Column(sa.String(255), primary_key=True))
    source: str = Field(max_length=16)
    status: str = Field(default="pending", max_length=16)
    held_by: str | None = Field(default=None, max_length=255)
    held_until: datetime | None = _ts(nullable=True)
    last_poll_at: datetime | None = _ts(nullable=True)
    last_success_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    last_error_at: datetime | None = _ts(nullable=True)
    # Messages this mailbox's polls stored, ever.
    imported: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False,
                                                         server_default="0"))


class MailboxCheckpoint(SQLModel, table=True):
    """Where the last poll of one folder of a mailbox stopped (an IMAP folder,
    a Gmail label, a Graph folder).

    ``cursor`` is the source's own JSON (IMAP: ``{"uidvalidity", "last_uid"}``),
    committed in the transaction of the messages it covers, never before.
    ``since`` is the earliest mail the mailbox may import: the first
    connection's time, or ``import_since``; a resync never goes before it.
    """

    __tablename__ = "mailbox_checkpoints"
    mailbox: str = Field(sa_column=sa.Column(sa.String(255), primary_key=True))
    folder: str = Field(sa_column=sa.Column(sa.String(512), primary_key=True))
    cursor: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    since: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    # The last poll that found this cursor valid (updated even when no mail came).
    checked_at: datetime | None = _ts()
    # Provider id -> polls in a row whose fetch of it failed (cleared when the cursor moves).
    fetch_failures: dict[str, int] | None = Field(
        default=None, sa_column=sa.Column(sa.JSON, nullable=True))
