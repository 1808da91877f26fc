"""Temporary failures inside one poll: retried a few times, honouring Retry-After, then given up.

Only ``SourceUnavailable`` is retried (timeouts, resets, 5xx, 429): a
rejected credential or a lost cursor would fail the same way again. The
wait is bounded so the whole poll stays well inside its lease, which is
renewed before every wait; a daemon that is stopping cuts the wait short.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from ingestd.errors import SourceUnavailable

log = structlog.get_logger("ingestd.pull")
T = TypeVar("T")


def retry_after_seconds(value: object) -> float | None:
    """A Retry-After header in seconds: a number, or an HTTP date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class PollStopped(Exception):
    """The daemon is stopping: the poll ends where it is (everything committed stays)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    # Exponential back-off with jitter: about 1, 2, 4 s ...
    first_wait: float = 1.0
    # No wait longer than this, whatever Retry-After says (the lease must outlive it).
    max_wait: float = 60.0


def retrying(policy: RetryPolicy, work: Callable[[], T], *, mailbox: str,
             before_wait: Callable[[], None], stop: threading.Event, max_wait: float) -> T:
    """Run ``work``; on ``SourceUnavailable`` wait and run it again, up to the policy's attempts."""
    cap = max(0.0, min(policy.max_wait, max_wait))
    backoff = wait_random_exponential(multiplier=policy.first_wait, max=cap)

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        asked = getattr(error, "retry_after", None)
        return min(float(asked), cap) if asked is not None else float(backoff(state))

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise PollStopped()

    def announce(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        wait_for = state.next_action.sleep if state.next_action is not None else 0.0
        log.info("mailbox.retrying", mailbox=mailbox, attempt=state.attempt_number,
                 wait_seconds=round(wait_for, 2), error=str(error)[:300])
        before_wait()

    runner = Retrying(retry=retry_if_exception_type(SourceUnavailable), wait=wait,
                      stop=stop_after_attempt(policy.attempts), sleep=sleep,
                      before_sleep=announce, reraise=True)
    return runner(work)
