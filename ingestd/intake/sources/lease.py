"""mailbox_states: the lease that makes one process at a time poll a mailbox, and its health.

The lease is a row, not an advisory lock: a dead host's database session
can hold a lock for hours, a lease simply runs out (2 x poll_interval).
It is taken with one guarded UPDATE (on PostgreSQL the row lock makes two
instances' attempts serial), renewed while the poll works, and checked in
the very transaction that commits a checkpoint, so a poller that lost its
lease commits nothing. Times come from the database's clock on PostgreSQL
(one clock for every host), from this host's on SQLite (one host).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from ingestd.db.errors import translated
from ingestd.db.tables import MAILBOX_STATES
from ingestd.errors import LeaseLost
from ingestd.queue import database_now

Clock = Callable[[], datetime]
S = MAILBOX_STATES.c


def poller_identity() -> str:
    # The random part: two containers with one host name, each running us as PID 1,
    # must never both believe they hold a lease.
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


_NEW_ROW = {
    "postgresql": postgresql.insert(MAILBOX_STATES).on_conflict_do_nothing(
        index_elements=["mailbox"]),
    "sqlite": sqlite.insert(MAILBOX_STATES).on_conflict_do_nothing(index_elements=["mailbox"]),
}


@dataclass
class MailboxLease:
    engine: Engine
    mailbox: str
    source: str
    identity: str
    seconds: float
    clock: Clock

    def now(self, conn: sa.Connection) -> datetime:
        return database_now(conn, self.clock())

    def acquire(self) -> str | None:
        """Take the lease; None on success, else who holds it."""
        with translated("mailbox lease"), self.engine.begin() as conn:
            conn.execute(_NEW_ROW[conn.dialect.name],
                         {"mailbox": self.mailbox, "source": self.source, "status": "pending",
                          "imported": 0})
            now = self.now(conn)
            taken = conn.execute(
                sa.update(MAILBOX_STATES)
                .where(S.mailbox == self.mailbox,
                       sa.or_(S.held_by.is_(None), S.held_until.is_(None),
                              S.held_until < now, S.held_by == self.identity))
                .values(held_by=self.identity, held_until=self._until(now), source=self.source,
                        last_poll_at=now))
            if taken.rowcount == 1:
                return None
            holder = conn.execute(sa.select(S.held_by).where(
                S.mailbox == self.mailbox)).scalar_one_or_none()
            return str(holder)

    def renew(self, conn: sa.Connection | None = None, *, imported: int = 0) -> None:
        """Extend the lease (inside ``conn``'s transaction when given); ``LeaseLost`` if gone.

        Called inside a checkpoint's transaction it is the guard: the
        checkpoint and its messages commit only while we hold the lease.
        """
        if conn is None:
            with translated("mailbox lease"), self.engine.begin() as own:
                self.renew(own, imported=imported)
            return
        now = self.now(conn)
        values: dict[str, object] = {"held_until": self._until(now)}
        if imported:
            values["imported"] = S.imported + imported
        # Still ours even if it ran out: a takeover changes held_by, which is the guard.
        renewed = conn.execute(
            sa.update(MAILBOX_STATES)
            .where(S.mailbox == self.mailbox, S.held_by == self.identity)
            .values(**values))
        if renewed.rowcount != 1:
            raise LeaseLost(f"mailbox {self.mailbox}: another poller took the lease over")

    def release(self, outcome: Outcome | None) -> str | None:
        """Give the lease up and record how the poll went (None: it was cut short);
        return the status before."""
        with translated("mailbox lease"), self.engine.begin() as conn:
            now = self.now(conn)
            before = conn.execute(sa.select(S.status).where(
                S.mailbox == self.mailbox)).scalar_one_or_none()
            values: dict[str, object] = {}
            if outcome is None:
                pass
            elif outcome.status == "ok":
                values["status"] = "ok"
                values.update(last_success_at=now, last_error=None, last_error_at=None)
            else:
                values.update(status=outcome.status, last_error=(outcome.error or "")[:2000],
                              last_error_at=now)
            mine = S.held_by == self.identity
            conn.execute(sa.update(MAILBOX_STATES).where(S.mailbox == self.mailbox, mine)
                         .values(held_by=None, held_until=None, **values))
            return str(before) if before is not None else None

    def _until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Outcome:
    status: str  # ok | error | needs_reauth
    error: str | None = None
