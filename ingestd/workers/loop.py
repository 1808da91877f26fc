"""The one worker loop, the same in a thread and in a worker process.

Claim a message, process it, repeat; when nothing is claimable, sleep until
woken (intake committed something) or ``poll`` seconds pass. Errors outside
any message (the database away while claiming) back off and never end the
loop: the rows stay pending.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

import structlog

from ingestd.workers.worker import Worker

log = structlog.get_logger("ingestd.worker")


class BusyMarker(Protocol):
    """Where a worker says which message it is on, for its supervisor's timeout."""

    def busy(self, message_id: int) -> contextlib.AbstractContextManager[None]: ...


class NotWatched:
    """For workers nobody times (threads, ``ingest``)."""

    @contextlib.contextmanager
    def busy(self, message_id: int) -> Iterator[None]:
        yield


def backoff_seconds(failures: int) -> float:
    return min(30.0, 0.5 * 2.0 ** min(failures, 6))


def work_loop(
    worker: Worker,
    *,
    stopping: Callable[[], bool],
    wait: Callable[[float], object],
    poll: float,
    marker: BusyMarker | None = None,
) -> None:
    """Process messages until ``stopping()``; ``wait(seconds)`` returns early when woken."""
    marker = marker or NotWatched()
    failures = 0
    while not stopping():
        try:
            claim = worker.claim()
            if claim is not None:
                with marker.busy(claim.id):
                    worker.process(claim)
            failures = 0
        except Exception as exc:
            failures += 1
            log.warning("worker.error", worker=worker.identity, error=type(exc).__name__,
                        detail=str(exc)[:300])
            wait(backoff_seconds(failures))
            continue
        if claim is None:
            wait(poll)


class Event(Protocol):
    """threading.Event and multiprocessing's Event alike."""

    def wait(self, timeout: float | None = None) -> bool: ...
    def clear(self) -> None: ...
    def set(self) -> None: ...


class WakeableWait:
    """``wait(seconds)`` that a notify ends early; cleared as each wait starts.

    Clearing before the wait could lose a notify that arrives between the
    claim that found nothing and the wait; so the flag is cleared after it
    is seen instead, and a notify during a claim makes the next wait return
    at once (one extra, empty claim: cheap).
    """

    def __init__(self, event: Event) -> None:
        self._event = event

    def __call__(self, seconds: float) -> bool:
        woken = self._event.wait(seconds)
        self._event.clear()
        return woken
