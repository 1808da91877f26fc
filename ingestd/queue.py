"""The ``inbound_messages`` state machine: the only code that writes ``status``.

::

    insert ──► pending ──claim──► (leased: claimed_by, claimed_until, attempts + 1)
                 ▲   ▲               │
                 │   └── release ────┤  attempt failed: retry after the back-off (not_before)
                 │   └── give_back ──┤  not the message's fault: attempt returned
                 │                   ├── finish ──► processed | duplicate | ignored | quarantined
                 │                   └── abandon ─► quarantined (timeout) / lease ended (crash)
                 └── retry_quarantined / reprocess (an operator sends it back)

A claim commits its lease and ``attempts + 1`` before any work starts, so a
message that kills its worker still has the attempt counted and reaches
quarantine once ``max_attempts`` are used. A finish is guarded by the lease:
a worker that lost its lease commits nothing. Leases are timed by the
database's clock on PostgreSQL (one clock for every host), by ``now`` on
SQLite (one host).

Every function takes a connection inside the caller's transaction, so a
source can insert messages and its checkpoint in one commit, and a worker
can finish a message together with everything it made.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ingestd.db.inbound import INBOUND
from ingestd.errors import InvalidRequest, LeaseLost, NotFound, RawPurged

STATUSES = ("pending", "processed", "duplicate", "ignored", "quarantined")


@dataclass(frozen=True)
class Claim:
    """A leased row and what processing needs of it (read in the claiming query)."""

    id: int
    attempts: int  # including the one just started
    mailbox: str
    source_key: str
    skip_dedupe: bool
    raw: bytes
    envelope_from: str | None = None  # MAIL FROM; "" for a null sender (a bounce)
    source: str = ""  # smtp, stdin, file, imap, gmail, graph
    peer: str | None = None  # the SMTP client, "ip:port"


@dataclass(frozen=True)
class Settlement:
    """How a message ended: the row's new status, reason and links."""

    status: str
    reason: str | None = None
    ticket_id: int | None = None
    action_id: int | None = None
    inbox_item_id: int | None = None
    duplicate_of: int | None = None
    timings: dict[str, float] | None = None
    defects: list[str] | None = None


def worker_identity(index: int = 0) -> str:
    """host:pid:index:random — unique even where containers share host names and pids."""
    return f"{socket.gethostname()}:{os.getpid()}:{index}:{secrets.token_hex(4)}"


# --- insert ------------------------------------------------------------------------

# Built once: constructing the statement per batch cost a third of the commit's CPU.
_INSERT = sa.insert(INBOUND).returning(INBOUND.c.id, sort_by_parameter_order=True)


def insert(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert new messages as ``pending`` in the caller's transaction; return their ids."""
    if not rows:
        return []
    pending = [{**row, "status": "pending", "attempts": 0} for row in rows]
    return [int(r[0]) for r in conn.execute(_INSERT, pending)]


# --- claim ---------------------------------------------------------------------------

_CLAIMABLE = (
    sa.select(INBOUND.c.id, INBOUND.c.attempts, INBOUND.c.last_error, INBOUND.c.mailbox,
              INBOUND.c.source_key, INBOUND.c.skip_dedupe, INBOUND.c.raw,
              INBOUND.c.envelope_from, INBOUND.c.source, INBOUND.c.peer)
    .where(INBOUND.c.status == "pending")
    .where(sa.or_(INBOUND.c.claimed_until.is_(None),
                  INBOUND.c.claimed_until < sa.bindparam("b_now")))
    .where(sa.or_(INBOUND.c.not_before.is_(None),
                  INBOUND.c.not_before <= sa.bindparam("b_now")))
    .order_by(INBOUND.c.id)
    .limit(1)
)
_CLAIMABLE_AMONG = _CLAIMABLE.where(INBOUND.c.id.in_(sa.bindparam("b_ids", expanding=True)))
_LEASE = (
    sa.update(INBOUND).where(INBOUND.c.id == sa.bindparam("b_id"))
    .values(claimed_by=sa.bindparam("b_me"), claimed_until=sa.bindparam("b_until"),
            attempts=INBOUND.c.attempts + 1, not_before=None)
)
_DB_NOW = sa.select(sa.func.now())


def database_now(conn: sa.Connection, fallback: datetime) -> datetime:
    """Lease time: on a shared PostgreSQL the database's clock, one for every host."""
    if conn.dialect.name == "postgresql":
        now: datetime = conn.execute(_DB_NOW).scalar_one()
        return now
    return fallback


def claim(conn: sa.Connection, identity: str, now: datetime, *, lease_seconds: float,
          max_attempts: int, only_ids: Sequence[int] | None = None
          ) -> tuple[Claim | None, list[tuple[int, str]]]:
    """Lease the oldest claimable row; (the claim or None, rows quarantined on the way).

    A row whose attempts are used up is quarantined here instead of being
    tried again, with the last attempt's error as the reason. Call it in its
    own transaction: the lease must be committed before the work starts.
    """
    query = _CLAIMABLE if only_ids is None else _CLAIMABLE_AMONG
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    quarantined: list[tuple[int, str]] = []
    while True:
        row = conn.execute(query, {"b_now": now, "b_ids": list(only_ids or ())}).first()
        if row is None:
            return None, quarantined
        if row.attempts >= max_attempts:
            reason = f"attempts: {row.last_error or 'worker stopped during processing'}"
            finish(conn, row.id, Settlement("quarantined", reason), now=now)
            quarantined.append((row.id, reason))
            continue
        conn.execute(_LEASE, {"b_id": row.id, "b_me": identity,
                              "b_until": now + timedelta(seconds=lease_seconds)})
        return Claim(row.id, row.attempts + 1, row.mailbox, row.source_key,
                     bool(row.skip_dedupe), bytes(row.raw), row.envelope_from,
                     str(row.source), row.peer), quarantined


# --- finish ----------------------------------------------------------------------------

_FINISH = (
    sa.update(INBOUND).where(INBOUND.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"), reason=sa.bindparam("b_reason"),
        ticket_id=sa.bindparam("b_ticket"), action_id=sa.bindparam("b_action"),
        inbox_item_id=sa.bindparam("b_inbox_item"),
        duplicate_of=sa.bindparam("b_duplicate_of"), processed_at=sa.bindparam("b_now"),
        claimed_by=None, claimed_until=None, not_before=None,
        stage_timings=sa.bindparam("b_timings", type_=INBOUND.c.stage_timings.type),
        defects=sa.bindparam("b_defects", type_=INBOUND.c.defects.type),
    )
)
_FINISH_MINE = _FINISH.where(INBOUND.c.claimed_by == sa.bindparam("b_me"))


def finish(conn: sa.Connection, message_id: int, settlement: Settlement, *, now: datetime,
           holder: str | None = None) -> None:
    """Record how a message ended; with ``holder``, only while that worker holds the lease.

    Raises ``LeaseLost`` when the guard fails: the caller's transaction must
    then roll back everything it made for this message.
    """
    result = conn.execute(_FINISH_MINE if holder is not None else _FINISH, {
        "b_id": message_id, "b_me": holder, "b_status": settlement.status,
        "b_reason": settlement.reason, "b_ticket": settlement.ticket_id,
        "b_action": settlement.action_id, "b_inbox_item": settlement.inbox_item_id,
        "b_duplicate_of": settlement.duplicate_of, "b_now": now,
        "b_timings": settlement.timings, "b_defects": settlement.defects,
    })
    if result.rowcount != 1:
        raise LeaseLost(f"message {message_id} was taken over by another worker")


# --- failed attempts -------------------------------------------------------------------


def _mine(message_id: int, holder: str) -> sa.ColumnElement[bool]:
    return (INBOUND.c.id == message_id) & (INBOUND.c.claimed_by == holder)


def release(conn: sa.Connection, message_id: int, holder: str, *, error: str,
            not_before: datetime) -> bool:
    """This attempt failed: record why; the row is claimable again from ``not_before``."""
    result = conn.execute(sa.update(INBOUND).where(_mine(message_id, holder)).values(
        claimed_by=None, claimed_until=None, last_error=error[:2000], not_before=not_before))
    return bool(result.rowcount)


def give_back(conn: sa.Connection, message_id: int, holder: str) -> bool:
    """The attempt was not the message's to pay for (the database was away): return it."""
    result = conn.execute(sa.update(INBOUND).where(_mine(message_id, holder)).values(
        claimed_by=None, claimed_until=None, attempts=INBOUND.c.attempts - 1))
    return bool(result.rowcount)


def abandon(conn: sa.Connection, message_id: int, holder: str, *, error: str, now: datetime,
            quarantine: bool) -> bool:
    """A worker was killed holding a claim: quarantine the message, or end the lease now.

    ``quarantine`` is for a message that hit the processing timeout: trying it
    again would cost the same again, so a person looks at it first. Otherwise
    the attempt stays counted and the message is claimable at once.
    """
    if quarantine:
        result = conn.execute(_FINISH_MINE, {
            "b_id": message_id, "b_me": holder, "b_status": "quarantined",
            "b_reason": error[:2000], "b_ticket": None, "b_action": None,
            "b_inbox_item": None, "b_duplicate_of": None, "b_now": now,
            "b_timings": None, "b_defects": None,
        })
    else:
        result = conn.execute(sa.update(INBOUND).where(_mine(message_id, holder)).values(
            last_error=error[:2000], claimed_by=None, claimed_until=None))
    return bool(result.rowcount)


def release_dead_claims(conn: sa.Connection, host: str, is_running: Any) -> list[int]:
    """End the leases held by processes of ``host`` that are no longer running.

    ``claimed_by`` is ``host:pid:index:random``; ``is_running(pid)`` decides.
    A process that still runs (a live ``ingest`` on the same SQLite file, a
    worker of another daemon on this host) keeps its claims. The attempts
    stay counted: the process died while working on the message.
    """
    prefix = f"{host}:"
    rows = conn.execute(
        sa.select(INBOUND.c.id, INBOUND.c.claimed_by)
        .where(INBOUND.c.status == "pending", INBOUND.c.claimed_by.startswith(prefix,
                                                                           autoescape=True))
    ).all()
    released = []
    for row_id, holder in rows:
        pid_text = str(holder)[len(prefix):].split(":", 1)[0]
        if not pid_text.isdigit() or is_running(int(pid_text)):
            continue
        conn.execute(sa.update(INBOUND).where(_mine(row_id, holder)).values(
            claimed_by=None, claimed_until=None,
            last_error="worker stopped during processing (its process had ended at start-up)"))
        released.append(int(row_id))
    return released


# --- operators send messages back ----------------------------------------------------------

_FRESH = {"status": "pending", "attempts": 0, "last_error": None, "reason": None,
          "claimed_by": None, "claimed_until": None, "processed_at": None, "not_before": None}


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
    row = conn.execute(sa.select(INBOUND.c.status, INBOUND.c.raw_purged_at)
                       .where(INBOUND.c.id == message_id)).first()
    if row is None:
        raise NotFound(f"no inbound message with id {message_id}")
    status = row.status
    if row.raw_purged_at is not None:
        from ingestd.services.retention import purged_text

        raise RawPurged(f"{purged_text(message_id, row.raw_purged_at)}; it cannot be "
                        "processed again")
    if status not in ("duplicate", "ignored", "quarantined"):
        raise InvalidRequest(
            f"message {message_id} is {status}; only duplicate, ignored or quarantined "
            "messages can be reprocessed"
        )
    conn.execute(sa.update(INBOUND).where(INBOUND.c.id == message_id).values(
        **_FRESH, skip_dedupe=status == "duplicate", duplicate_of=None))
    return str(status)
