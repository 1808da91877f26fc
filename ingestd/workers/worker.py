"""A worker: claim a pending message, run the pipeline, commit the outcome.

The queue (``ingestd/queue.py``) owns the row's states; this module decides
which transition a processing attempt ends in:

* the pipeline decided → ``finish`` with the outcome, in the same transaction
  as everything the stages made (guarded by the lease);
* a processing limit was broken → quarantined ``limit: <which>`` at once;
* anything else failed (a bug, or database errors that outlasted the quick
  retries) → ``release`` with the back-off of ``processing.retry_delays_seconds``;
  the attempt counts, so a message that keeps failing, for whatever reason,
  ends quarantined ``attempts: <stage>: <error>`` instead of looping;
* another worker took the lease over → nothing is committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ingestd import queue
from ingestd.config.settings import IngestdSettings
from ingestd.db.engine import processing_engine
from ingestd.db.errors import translated
from ingestd.db.inbound import utcnow
from ingestd.errors import (
    LeaseLost,
    LimitExceeded,
    StorageConflict,
    StorageUnavailable,
    first_line,
)
from ingestd.pipeline.context import MessageContext, Outcome, normalised_envelope
from ingestd.pipeline.runner import Pipeline, run_stages
from ingestd.queue import Claim, Settlement
from ingestd.rules.plan import TicketPlan

log = structlog.get_logger("ingestd.worker")
T = TypeVar("T")

# Retried at once, a few times, inside one attempt: a lock or a dropped
# connection, and unique-key races with another worker creating the same user
# or client. What outlasts these retries costs the message an attempt.
_QUICK_RETRY = (StorageUnavailable, StorageConflict)


def default_pipeline() -> Pipeline:
    # Imported here: the stage modules pull in the parser stack, which the
    # commands that never process (and worker start-up checks) need not load.
    from ingestd.pipeline.order import PIPELINE

    return PIPELINE


class Worker:
    def __init__(
        self,
        engine: Engine,
        settings: IngestdSettings,
        identity: str,
        clock: Callable[[], datetime] = utcnow,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.engine = engine
        self._engine = processing_engine(engine)
        self.settings = settings
        self._processing = settings.processing
        self._pipeline = pipeline or default_pipeline()
        self.identity = identity
        self._clock = clock
        # Claims whose attempt failed only because the database was away (not
        # even the release could be written): their attempts are returned once
        # it is back, so an outage does not push the backlog into quarantine.
        self._owed: list[int] = []

    # --- claiming ------------------------------------------------------------------

    def claim(self, only_ids: Sequence[int] | None = None) -> Claim | None:
        """Lease the oldest claimable row (committed before any work starts)."""
        self._return_owed_attempts()
        with translated("claim"), self._engine.begin() as conn:
            now = queue.database_now(conn, self._clock())
            claimed, quarantined = queue.claim(
                conn, self.identity, now, lease_seconds=self._processing.lease_seconds,
                max_attempts=self._processing.max_attempts, only_ids=only_ids)
        for message_id, reason in quarantined:
            log.warning("message.processed", id=message_id, outcome="quarantined",
                        reason=reason)
        return claimed

    def run_once(self, only_ids: Sequence[int] | None = None) -> tuple[int, Outcome] | None:
        """Claim and process one message: (its id, the outcome); None when none is claimable."""
        claimed = self.claim(only_ids)
        if claimed is None:
            return None
        return claimed.id, self.process(claimed)

    # --- processing ----------------------------------------------------------------

    def process(self, claim: Claim) -> Outcome:
        started = time.perf_counter()
        ctx: MessageContext | None = None
        try:
            ctx = self._context(claim)
            outcome = run_stages(ctx, self._pipeline.prepare)
            if outcome is None:
                outcome = self._quickly_retried(self._decide, ctx)
            else:
                self._quickly_retried(self._commit_outcome, (ctx, outcome))
        except LeaseLost as exc:
            log.warning("message.lease_lost", id=claim.id, worker=self.identity,
                        detail=str(exc))
            return Outcome("failed", "pending", "lease lost to another worker")
        except LimitExceeded as exc:
            outcome = Outcome("quarantined", "quarantined", f"limit: {exc.which}")
            self._settle_failure(claim, outcome, ctx)
        except Exception as exc:
            stage = ctx.stage if ctx else "load"
            error = f"{stage}: {type(exc).__name__}: {first_line(exc)[:500]}"
            if claim.attempts < self._processing.max_attempts:
                delay = self._processing.retry_delay(claim.attempts)
                if not self._release(claim, error, delay) and isinstance(exc, _QUICK_RETRY):
                    # Not even the release could be written: the database is
                    # away for everyone, not refusing this message.
                    self._owed.append(claim.id)
                log.warning("message.failed", id=claim.id, stage=stage, error=error,
                            attempts=claim.attempts, retry_in=delay)
                return Outcome("failed", "pending", error)
            outcome = Outcome("quarantined", "quarantined", f"attempts: {error}")
            self._settle_failure(claim, outcome, ctx)
        self._log(claim.id, ctx, outcome, time.perf_counter() - started)
        return outcome

    def _context(self, claim: Claim) -> MessageContext:
        mailbox = self.settings.mailbox(claim.mailbox)
        if mailbox is None:
            raise LookupError(f"mailbox {claim.mailbox!r} is not configured any more")
        return MessageContext(
            inbound_id=claim.id, raw=claim.raw, source_key=claim.source_key,
            mailbox=mailbox, settings=self.settings, now=self._clock(),
            skip_dedupe=claim.skip_dedupe, envelope_from=normalised_envelope(claim.envelope_from),
            source=claim.source, peer=claim.peer,
        )

    def _quickly_retried(self, step: Callable[[T], Outcome | None], argument: T
                         ) -> Outcome:
        """Run ``step``, retrying storage trouble a few times within this attempt."""
        retrying = Retrying(
            retry=retry_if_exception_type(_QUICK_RETRY),
            stop=stop_after_attempt(4),
            wait=wait_exponential(multiplier=0.1, max=2),
            before_sleep=lambda state: log.warning(
                "message.retrying", attempt=state.attempt_number,
                error=_error_text(state.outcome.exception() if state.outcome else None)),
            reraise=True,
        )
        result = retrying(step, argument)
        assert result is not None
        return result

    def _decide(self, ctx: MessageContext) -> Outcome:
        ctx.notes.clear()
        ctx.ticket_id = None
        ctx.linked_ticket_id = None
        ctx.sender = None
        ctx.new_ticket_type = None
        ctx.to_inbox = False
        ctx.plan = TicketPlan()
        ctx.verdicts.clear()
        with translated("database"), self._engine.begin() as conn:
            ctx.conn = conn
            try:
                outcome = run_stages(ctx, self._pipeline.decide)
                assert outcome is not None, "the last stage always decides"
                self._finish(conn, ctx.inbound_id, outcome, ctx)
            finally:
                ctx.conn = None
        return outcome

    def _commit_outcome(self, pair: tuple[MessageContext, Outcome]) -> Outcome:
        ctx, outcome = pair
        with translated("finish"), self._engine.begin() as conn:
            self._finish(conn, ctx.inbound_id, outcome, ctx)
        return outcome

    def _finish(self, conn: sa.Connection, message_id: int, outcome: Outcome,
                ctx: MessageContext | None) -> None:
        parsed = ctx.parsed if ctx is not None else None
        queue.finish(conn, message_id, Settlement(
            status=outcome.status, reason=outcome.reason, ticket_id=outcome.ticket_id,
            action_id=outcome.action_id, duplicate_of=outcome.duplicate_of,
            inbox_item_id=outcome.inbox_item_id,
            timings=dict(ctx.timings) if ctx is not None else None,
            defects=(list(parsed.defects) or None) if parsed is not None else None,
        ), now=self._clock(), holder=self.identity)

    def _settle_failure(self, claim: Claim, outcome: Outcome, ctx: MessageContext | None
                        ) -> None:
        with translated("quarantine"), self._engine.begin() as conn:
            self._finish(conn, claim.id, outcome, ctx)

    def _release(self, claim: Claim, error: str, delay: float) -> bool:
        """The attempt failed: record why; claimable again after ``delay`` seconds.

        False when the database is away: the lease then ends by itself.
        """
        try:
            with translated("release"), self._engine.begin() as conn:
                now = queue.database_now(conn, self._clock())
                queue.release(conn, claim.id, self.identity, error=error,
                              not_before=now + timedelta(seconds=delay))
        except (StorageUnavailable, StorageConflict):
            return False
        return True

    def _return_owed_attempts(self) -> None:
        """Give back the attempts an outage cost (raises while the database is still away)."""
        if not self._owed:
            return
        with translated("give back"), self._engine.begin() as conn:
            for message_id in self._owed:
                if queue.give_back(conn, message_id, self.identity):
                    log.info("message.attempt_returned", id=message_id,
                             reason="the database was unavailable")
        self._owed.clear()

    def _log(self, row_id: int, ctx: MessageContext | None, outcome: Outcome,
             seconds: float) -> None:
        # Imported here: a worker process sets up prometheus-client's multiprocess
        # files before the first import (workers/processes.py).
        from ingestd.metrics.processing import record_processed

        record_processed(outcome.result, ctx.timings if ctx else {})
        sender = ctx.sender if ctx else None
        log.info(
            "message.processed", id=row_id, mailbox=ctx.mailbox.name if ctx else None,
            outcome=outcome.result, ticket=outcome.ticket_id, action=outcome.action_id,
            duplicate_of=outcome.duplicate_of, reason=outcome.reason,
            sender_kind=sender.kind if sender else None,
            timings=ctx.timings if ctx else {}, seconds=round(seconds, 6),
        )


def _error_text(error: BaseException | None) -> str | None:
    return first_line(error) if error is not None else None


def abandon_claim(engine: Engine, message_id: int, identity: str, error: str, *,
                  quarantine: bool) -> bool:
    """A worker was killed holding a claim: quarantine the message, or end its lease now."""
    with translated("abandon"), engine.begin() as conn:
        now = queue.database_now(conn, utcnow())
        return queue.abandon(conn, message_id, identity, error=error, now=now,
                             quarantine=quarantine)
