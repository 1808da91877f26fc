"""The ``inbound_messages`` table in SQLAlchemy Core alone: the queue and the intake log.

Defined without sqlmodel so that storing a message (``ingestd ingest -`` run
by an MTA once per message, the SMTP commit) loads SQLAlchemy only. The
models module places this same table into the metadata the migrations are
compared with (tests/test_schema.py checks that they agree).

status: pending | processed | duplicate | ignored | quarantined
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData()


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(name: str, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


INBOUND = sa.Table(
    "inbound_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(64), nullable=False),
    # Chosen by the source: sha256 of the raw bytes (SMTP, files) or mailbox +
    # provider id (pulls; a Graph id alone runs to 150+ characters).
    sa.Column("source_key", sa.Text, nullable=False, index=True),
    sa.Column("mailbox", sa.String(255), nullable=False, index=True),
    # Other configured mailboxes the same transaction was addressed to.
    sa.Column("also_mailboxes", sa.JSON, nullable=False),
    sa.Column("envelope_from", sa.Text, nullable=True),
    sa.Column("envelope_to", sa.JSON, nullable=False),
    sa.Column("peer", sa.String(255), nullable=True),
    sa.Column("message_id", sa.String(998), nullable=True, index=True),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("size", sa.Integer, nullable=False),
    _ts("received_at", nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="pending"),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("claimed_by", sa.String(255), nullable=True),
    _ts("claimed_until"),
    # After a failed attempt: not claimed again before this (the retry back-off).
    _ts("not_before"),
    _ts("processed_at"),
    # Plain ids, not foreign keys: the intake log outlives tickets the helpdesk
    # deletes, and actions already point back here (no reference cycle).
    sa.Column("ticket_id", sa.Integer, nullable=True),
    sa.Column("action_id", sa.Integer, nullable=True),
    sa.Column("inbox_item_id", sa.Integer, nullable=True),
    sa.Column("duplicate_of", sa.Integer, sa.ForeignKey("inbound_messages.id"), nullable=True),
    sa.Column("defects", sa.JSON, nullable=True),
    sa.Column("stage_timings", sa.JSON, nullable=True),
    # Last, so listings that skip it never read a large value's pages in SQLite.
    sa.Column("raw", sa.LargeBinary, nullable=False),
    # "<stage>: <error>" of the last failed attempt; the quarantine reason quotes it.
    sa.Column("last_error", sa.Text, nullable=True),
    # Set by `messages reprocess`: an operator asked to process a duplicate anyway.
    sa.Column("skip_dedupe", sa.Boolean, nullable=False, server_default=sa.false()),
    # Set by `messages purge`: raw is then empty; the row and its dedupe keys stay.
    _ts("raw_purged_at"),
    sa.Index("ix_inbound_messages_status_id", "status", "id"),
)
