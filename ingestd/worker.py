"""Workers: claim a pending row, run the pipeline, commit the outcome.

A claim is a lease (``claimed_by``, ``claimed_until``) plus ``attempts + 1``,
committed before any work starts. So a message that kills the process still
has its attempt counted, and once ``max_attempts`` are used up the next claim
quarantines it instead of trying again. The outcome and everything it made
commit in one transaction, guarded by the lease: a worker that lost its lease
(it was too slow and another took over) commits nothing.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from ingestd.config.settings import IngestdSettings
from ingestd.db.engine import is_postgres, processing_engine
from ingestd.db.models import utcnow
from ingestd.db.tables import INBOUND
from ingestd.errors import LimitExceeded, StorageUnavailable, TemporaryError, first_line
from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.order import DECIDE, PREPARE

log = structlog.get_logger("ingestd.worker")
T = TypeVar("T")

# Database errors worth retrying at once: the connection or a lock (never the
# message's fault), and unique-key races with another worker creating the same
# user or client (if those persist, they count against the message).
_RETRYABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.IntegrityError,
              StorageUnavailable)
_NOT_THE_MESSAGE = (sa.exc.OperationalError, sa.exc.InterfaceError, TemporaryError)


# Statements built once: building them per message cost more than running them.
_CLAIMABLE = (
    sa.select(INBOUND.c.id, INBOUND.c.attempts, INBOUND.c.last_error, INBOUND.c.mailbox,
              INBOUND.c.source_key, INBOUND.c.skip_dedupe, INBOUND.c.raw)
    .where(INBOUND.c.status == "pending")
    .where(sa.or_(INBOUND.c.claimed_until.is_(None),
                  INBOUND.c.claimed_until < sa.bindparam("b_now")))
    .order_by(INBOUND.c.id)
    .limit(1)
)
_CLAIMABLE_AMONG = _CLAIMABLE.where(INBOUND.c.id.in_(sa.bindparam("b_ids", expanding=True)))
_LEASE = (
    sa.update(INBOUND).where(INBOUND.c.id == sa.bindparam("b_id"))
    .values(claimed_by=sa.bindparam("b_me"), claimed_until=sa.bindparam("b_until"),
            attempts=INBOUND.c.attempts + 1)
)
_FINISH = (
    sa.update(INBOUND).where(INBOUND.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"), reason=sa.bindparam("b_reason"),
        ticket_id=sa.bindparam("b_ticket"), action_id=sa.bindparam("b_action"),
        duplicate_of=sa.bindparam("b_duplicate_of"), processed_at=sa.bindparam("b_now"),
        claimed_by=None, claimed_until=None,
        stage_timings=sa.bindparam("b_timings", type_=INBOUND.c.stage_timings.type),
        defects=sa.bindparam("b_defects", type_=INBOUND.c.defects.type),
    )
)
_DB_NOW = sa.select(sa.func.now())
# Only while this worker still holds the lease.
_FINISH_MINE = _FINISH.where(INBOUND.c.claimed_by == sa.bindparam("b_me"))


class LeaseLost(TemporaryError):
    """Another worker took the row over; this worker's result is discarded."""


@dataclass(frozen=True)
class Claim:
    """A leased row and what processing needs of it (read in the claiming query)."""

    id: int
    attempts: int  # including the one just started
    mailbox: str
    source_key: str
    skip_dedupe: bool
    raw: bytes


def worker_identity(index: int = 0) -> str:
    """host:pid:index:random — unique even where containers share host names and pids."""
    return f"{socket.gethostname()}:{os.getpid()}:{index}:{secrets.token_hex(4)}"


class Worker:
    def __init__(
        self,
        engine: Engine,
        settings: IngestdSettings,
        identity: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = processing_engine(engine)
        self._settings = settings
        self._processing = settings.processing
        self.identity = identity
        self._clock = clock
        self._postgres = engine.dialect.name == "postgresql"

    # --- claiming ------------------------------------------------------------------

    def claim(self, only_ids: Sequence[int] | None = None) -> Claim | None:
        """Lease the oldest claimable row, quarantining rows out of attempts on the way."""
        query = _CLAIMABLE if only_ids is None else _CLAIMABLE_AMONG
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        while True:
            with self._engine.begin() as conn:
                now = self._now(conn)
                row = conn.execute(query, {"b_now": now, "b_ids": list(only_ids or ())}).first()
                if row is None:
                    return None
                if row.attempts >= self._processing.max_attempts:
                    last = row.last_error or "worker stopped during processing"
                    self._finish(conn, row.id, Outcome(
                        "quarantined", "quarantined", f"attempts: {last}"), guard=False)
                    log.warning("message.processed", id=row.id, outcome="quarantined",
                                reason=f"attempts: {last}")
                    continue
                conn.execute(_LEASE, {
                    "b_id": row.id, "b_me": self.identity,
                    "b_until": now + timedelta(seconds=self._processing.lease_seconds),
                })
                return Claim(row.id, row.attempts + 1, row.mailbox, row.source_key,
                             bool(row.skip_dedupe), bytes(row.raw))

    def _now(self, conn: sa.Connection) -> datetime:
        """Lease time: on a shared PostgreSQL the database's clock, one for every host."""
        if self._postgres:
            return conn.execute(_DB_NOW).scalar_one()  # type: ignore[no-any-return]
        return self._clock()

    # --- processing ----------------------------------------------------------------

    def run_once(self, only_ids: Sequence[int] | None = None) -> tuple[int, Outcome] | None:
        """Claim and process one message: (its id, the outcome); None when none is claimable."""
        claim = self.claim(only_ids)
        if claim is None:
            return None
        return claim.id, self.process(claim)

    def process(self, claim: Claim) -> Outcome:
        started = time.perf_counter()
        ctx: MessageContext | None = None
        try:
            ctx = self._context(claim)
            for name, stage in PREPARE:
                self._run_stage(ctx, name, stage)
            outcome = self._retrying(self._decide, ctx)
        except LimitExceeded as exc:
            outcome = Outcome("quarantined", "quarantined", f"limit: {exc.which}")
            self._commit_failure(claim, outcome, ctx)
        except _NOT_THE_MESSAGE as exc:
            # Not the message's fault: give the attempt back, but keep the lease, so
            # the message waits for it to expire while other messages go ahead (a
            # fault that only looks like database trouble cannot block the queue).
            self._give_back_attempt(claim)
            log.warning("message.deferred", id=claim.id, stage=ctx.stage if ctx else "load",
                        error=first_line(exc)[:500])
            raise
        except Exception as exc:
            stage = ctx.stage if ctx else "load"
            error = f"{stage}: {type(exc).__name__}: {first_line(exc)[:500]}"
            if claim.attempts < self._processing.max_attempts:
                self._release(claim, error=error)
                log.warning("message.failed", id=claim.id, stage=stage, error=error,
                            attempts=claim.attempts)
                return Outcome("failed", "pending", error)
            outcome = Outcome("quarantined", "quarantined", f"attempts: {error}")
            self._commit_failure(claim, outcome, ctx)
        self._log(claim.id, ctx, outcome, time.perf_counter() - started)
        return outcome

    def _context(self, claim: Claim) -> MessageContext:
        mailbox = self._settings.mailbox(claim.mailbox)
        if mailbox is None:
            raise LookupError(f"mailbox {claim.mailbox!r} is not configured any more")
        return MessageContext(
            inbound_id=claim.id, raw=claim.raw, source_key=claim.source_key,
            mailbox=mailbox, settings=self._settings, now=self._clock(),
            skip_dedupe=claim.skip_dedupe,
        )

    def _run_stage(self, ctx: MessageContext, name: str, stage: Callable[..., Outcome | None]
                   ) -> Outcome | None:
        ctx.stage = name
        started = time.perf_counter()
        try:
            return stage(ctx)
        finally:
            ctx.timings[name] = round(time.perf_counter() - started, 6)

    def _retrying(self, step: Callable[[Any], T], argument: Any) -> T:
        """Run ``step``, retrying database trouble with back-off (never the message's fault)."""
        retrying = Retrying(
            retry=retry_if_exception_type(_RETRYABLE),
            stop=stop_after_attempt(4),
            wait=wait_exponential(multiplier=0.1, max=2),
            before_sleep=before_sleep_log(_StdlibAdapter(), 30),  # type: ignore[arg-type]
            reraise=True,
        )
        return retrying(step, argument)

    def _decide(self, ctx: MessageContext) -> Outcome:
        ctx.notes.clear()
        ctx.ticket_id = None
        ctx.sender = None
        with self._engine.begin() as conn:
            ctx.conn = conn
            try:
                outcome: Outcome | None = None
                for name, stage in DECIDE:
                    outcome = self._run_stage(ctx, name, stage)
                    if outcome is not None:
                        break
                assert outcome is not None, "the last stage always decides"
                self._finish(conn, ctx.inbound_id, outcome, ctx=ctx)
            finally:
                ctx.conn = None
        return outcome

    def _finish(self, conn: sa.Connection, row_id: int, outcome: Outcome, *,
                ctx: MessageContext | None = None, guard: bool = True) -> None:
        parsed = ctx.parsed if ctx is not None else None
        result = conn.execute(_FINISH_MINE if guard else _FINISH, {
            "b_id": row_id, "b_me": self.identity, "b_status": outcome.status,
            "b_reason": outcome.reason, "b_ticket": outcome.ticket_id,
            "b_action": outcome.action_id, "b_duplicate_of": outcome.duplicate_of,
            "b_now": self._clock(),
            "b_timings": dict(ctx.timings) if ctx is not None else None,
            "b_defects": (list(parsed.defects) or None) if parsed is not None else None,
        })
        if result.rowcount != 1:
            raise LeaseLost(f"message {row_id} was taken over by another worker")

    def _commit_failure(self, claim: Claim, outcome: Outcome, ctx: MessageContext | None
                        ) -> None:
        with self._engine.begin() as conn:
            self._finish(conn, claim.id, outcome, ctx=ctx)

    def _release(self, claim: Claim, *, error: str) -> None:
        """This attempt failed: record why and let the next claim retry at once."""
        self._update_mine(claim, claimed_by=None, claimed_until=None, last_error=error[:2000])

    def _give_back_attempt(self, claim: Claim) -> None:
        self._update_mine(claim, attempts=INBOUND.c.attempts - 1)

    def _update_mine(self, claim: Claim, **values: object) -> None:
        try:
            with self._engine.begin() as conn:
                mine = (INBOUND.c.id == claim.id) & (INBOUND.c.claimed_by == self.identity)
                conn.execute(sa.update(INBOUND).where(mine).values(**values))
        except sa.exc.SQLAlchemyError:
            # The database is away; the lease expires by itself.
            pass

    def _log(self, row_id: int, ctx: MessageContext | None, outcome: Outcome,
             seconds: float) -> None:
        sender = ctx.sender if ctx else None
        log.info(
            "message.processed", id=row_id, mailbox=ctx.mailbox.name if ctx else None,
            outcome=outcome.result, ticket=outcome.ticket_id, action=outcome.action_id,
            duplicate_of=outcome.duplicate_of, reason=outcome.reason,
            sender_kind=sender.kind if sender else None,
            timings=ctx.timings if ctx else {}, seconds=round(seconds, 6),
        )


class _StdlibAdapter:
    """tenacity logs through a stdlib-style ``log(level, msg)``; send it to structlog."""

    def log(self, level: int, msg: str, *args: object, **kwargs: object) -> None:
        log.warning("message.retrying", detail=msg % args if args else msg)



def abandon_claim(engine: Engine, message_id: int, identity: str, error: str) -> None:
    """A worker was killed holding a claim: record why and end its lease now.

    The attempt stays counted, so a message that hangs every worker reaches
    quarantine with this reason instead of waiting out a lease each time.
    """
    with engine.begin() as conn:
        conn.execute(
            sa.update(INBOUND)
            .where(INBOUND.c.id == message_id, INBOUND.c.claimed_by == identity)
            .values(last_error=error[:2000],
                    claimed_until=sa.func.now() if is_postgres(engine) else utcnow())
        )
