"""Processing in the calling process: what ``ingestd ingest`` stored, here and now.

The daemon's worker processes are killed past ``processing.timeout_seconds``;
here the message runs in a thread the caller waits for with the same
timeout. A message that outlasts it is quarantined (``timeout: …``) and
processing stops: the rest stays ``pending`` for the daemon's workers, and
the caller should leave promptly (the stuck thread is a daemon thread that
the interpreter abandons at exit). A thread cannot be interrupted inside C
code that holds the interpreter lock, so there the timeout takes effect only
once that call returns; the parser bounds its own work so that it returns.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from ingestd.config.settings import IngestdSettings
from ingestd.db.engine import read_only
from ingestd.db.errors import translated
from ingestd.db.tables import INBOUND
from ingestd.errors import IngestdError
from ingestd.pipeline.context import Outcome
from ingestd.pipeline.runner import Pipeline
from ingestd.queue import Claim, worker_identity
from ingestd.workers.worker import Worker, abandon_claim

log = structlog.get_logger("ingestd.ingest")

# Claiming among a short id list keeps the query cheap however much was stored.
_CHUNK = 64


@dataclass(frozen=True)
class Processed:
    status: str  # the outcome's result, or the row's status if another worker settled it
    ticket_id: int | None


@dataclass
class InlineRun:
    results: dict[int, Processed]
    timed_out: bool = False


def process_now(engine: Engine, settings: IngestdSettings, ids: Sequence[int],
                pipeline: Pipeline | None = None) -> InlineRun:
    """Process ``ids`` (claimable ones; others are left to whoever holds them)."""
    worker = Worker(engine, settings, worker_identity(), pipeline=pipeline)
    run = InlineRun({})
    remaining = sorted(ids)
    while remaining:
        chunk = remaining[:_CHUNK]
        try:
            claim = worker.claim(only_ids=chunk)
        except IngestdError as exc:
            log.warning("ingest.processing_stopped", error=str(exc)[:300])
            break
        if claim is None:
            # Nothing in the chunk is claimable: done, or leased by a daemon's worker.
            del remaining[: len(chunk)]
            continue
        outcome = _with_timeout(worker, claim, settings)
        if outcome is None:
            # Quarantined, if that write went through: the read-back below says.
            run.timed_out = True
            break
        # A failed attempt is retried after its back-off by the daemon's workers.
        if outcome.result != "failed":
            run.results[claim.id] = Processed(outcome.result, outcome.ticket_id)
        remaining.remove(claim.id)
    try:
        _read_back(engine, [i for i in ids if i not in run.results], run)
    except IngestdError as exc:
        # Stored is stored: what became of them is for `messages list` to tell.
        log.warning("ingest.read_back_failed", error=str(exc)[:300])
    return run


def _with_timeout(worker: Worker, claim: Claim, settings: IngestdSettings) -> Outcome | None:
    """The outcome, or None after quarantining a message that outlasted the timeout."""
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(worker.process(claim)),
                              name=f"ingest-{claim.id}", daemon=True)
    thread.start()
    timeout = settings.processing.timeout_seconds
    thread.join(timeout)
    if not thread.is_alive():
        return box[0] if box else Outcome("failed", "pending", "worker thread failed")
    log.error("worker.timeout", message=claim.id, seconds=timeout)
    try:
        abandon_claim(worker.engine, claim.id, worker.identity,
                      f"timeout: processing took longer than {timeout:g} s", quarantine=True)
    except IngestdError as exc:
        log.warning("ingest.quarantine_failed", id=claim.id, error=str(exc)[:300])
    return None


def _read_back(engine: Engine, ids: list[int], run: InlineRun) -> None:
    """What this run did not settle itself: report the row's status as it is now."""
    if not ids:
        return
    with translated("read back"), read_only(engine) as conn:
        for start in range(0, len(ids), 500):
            query = (sa.select(INBOUND.c.id, INBOUND.c.status, INBOUND.c.ticket_id)
                     .where(INBOUND.c.id.in_(ids[start:start + 500])))
            for row in conn.execute(query):
                run.results[int(row.id)] = Processed(str(row.status), row.ticket_id)
