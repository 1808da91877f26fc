"""Group commit: concurrent SMTP sessions share one durable commit.

Each session still waits for the commit that holds its own message, so
"250 only after commit" does not weaken, but N messages cost one fsync
instead of N. What a waiting sender is promised:

* **a reply within ``reply_within`` seconds** of its end of DATA, whatever
  the database does: ``250`` when its message was committed by then,
  else ``451 4.3.0``. A commit still running at the deadline may succeed
  after the 451; the sender's retry is then absorbed by dedupe (same bytes).
* **a database that is unavailable costs each waiting sender one commit
  attempt**, not one per batch-mate: a batch that fails because the
  database is locked, down or full fails as a whole at once. Only a
  failure that names a value of the batch (``StorageRejected``) is
  retried message by message, so the one bad message alone hears 451.
* **a bounded queue**: beyond ``max_queued`` waiting messages, 451 at once.
* after ``stop()``, ``submit()`` fails at once (451), never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog
from sqlalchemy.engine import Engine

from ingestd.errors import IngestdError, StorageRejected, StorageUnavailable
from ingestd.intake.source import NewMessage, commit_messages

log = structlog.get_logger("ingestd.intake")


@dataclass(eq=False)
class _Waiting:
    message: NewMessage
    future: asyncio.Future[int]
    deadline: float  # time.monotonic()
    given_up: bool = field(default=False)


class GroupCommitter:
    """Batches concurrent ``submit`` calls into shared commits (one writer at a time)."""

    name = "intake-commit"

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 200,
        max_queued: int = 1000,
        reply_within: float = 11.0,
        attempt_seconds: float = 5.0,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        """``attempt_seconds``: how long one commit may wait for an unavailable database."""
        self._engine = engine
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._reply_within = reply_within
        self._attempt_seconds = attempt_seconds
        self._queue: deque[_Waiting] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        # One thread: SQLite has one writer anyway, and commits stay in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intake-commit")
        self.commits = 0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Refuse new messages; finish those already submitted, within their deadlines.

        Every waiting sender has its reply by its deadline whatever happens, so
        waiting longer than the last deadline (plus a little) helps no one: a
        commit stuck in the driver (a vanished PostgreSQL host) is abandoned.
        """
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            latest = max((w.deadline for w in self._queue), default=time.monotonic())
            give_up = max(latest, time.monotonic() + self._reply_within) + 1.0
            while ((self._queue or not self._idle.is_set()) and not self._task.done()
                   and time.monotonic() < give_up):
                self._wake.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), 0.05)
            for waiting in self._queue:
                _fail(waiting, StorageUnavailable("intake stopped before this commit"))
            self._queue.clear()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # A commit stuck in the driver must not hold the daemon's exit.
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, message: NewMessage) -> int:
        """The id of ``message`` once committed; ``IngestdError`` means answer 451."""
        if self._stopping or self._task is None or self._task.done():
            raise StorageUnavailable("intake is not accepting messages (stopping)")
        if len(self._queue) >= self._max_queued:
            raise StorageUnavailable(
                f"{len(self._queue)} messages already wait for the database")
        loop = asyncio.get_running_loop()
        waiting = _Waiting(message, loop.create_future(),
                           time.monotonic() + self._reply_within)
        self._queue.append(waiting)
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(waiting.future), self._reply_within)
        except asyncio.CancelledError:
            waiting.given_up = True  # the session was closed under us
            raise
        except TimeoutError:
            waiting.given_up = True
            log.warning("intake.reply_deadline", seconds=self._reply_within,
                        size=len(message.raw))
            raise StorageUnavailable(
                f"the database did not commit within {self._reply_within:g} s") from None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._take_batch()
                if not batch:
                    continue
                self._idle.clear()
                try:
                    await self._commit(batch)
                except Exception as exc:
                    # A defect of ours must not end the writer: these senders
                    # hear 451, the next batch is tried as usual.
                    log.error("intake.commit_failed", error=type(exc).__name__,
                              detail=str(exc)[:300])
                    for waiting in batch:
                        _fail(waiting, StorageUnavailable(f"commit failed: {exc}"))
                finally:
                    self._idle.set()

    def _take_batch(self) -> list[_Waiting]:
        """The next batch, leaving out senders who gave up or cannot be served in time."""
        now = time.monotonic()
        batch: list[_Waiting] = []
        while self._queue and len(batch) < self._max_batch:
            waiting = self._queue.popleft()
            if waiting.given_up or waiting.future.done():
                continue
            if waiting.deadline - now < self._attempt_seconds:
                # Not enough time left for one attempt against a slow database:
                # answer now rather than store a message whose sender hears 451.
                _fail(waiting, StorageUnavailable(
                    "the database is too slow to commit within the reply deadline"))
                continue
            batch.append(waiting)
        return batch

    async def _commit(self, batch: list[_Waiting]) -> None:
        error = await self._attempt(batch)
        if isinstance(error, StorageRejected) and len(batch) > 1:
            # A value of one message was refused: commit each alone, so only
            # the bad one hears 451 -- unless the database itself fails
            # meanwhile, which the rest then hear at once.
            for index, waiting in enumerate(batch):
                if waiting.given_up or waiting.future.done():
                    continue
                alone = await self._attempt([waiting])
                if alone is not None and not isinstance(alone, StorageRejected):
                    for rest in batch[index + 1:]:
                        _fail(rest, alone)
                    return
        elif error is not None:
            for waiting in batch:
                _fail(waiting, error)

    async def _attempt(self, batch: list[_Waiting]) -> IngestdError | None:
        """Commit ``batch``; resolve its futures on success, return the error otherwise."""
        loop = asyncio.get_running_loop()
        try:
            ids = await loop.run_in_executor(
                self._executor, commit_messages, self._engine, [w.message for w in batch])
        except IngestdError as exc:
            error: IngestdError = exc
        except Exception as exc:
            error = StorageUnavailable(f"commit failed: {type(exc).__name__}: {exc}")
        else:
            self.commits += 1
            # Senders first: if the wake-up call below failed, no one may hang.
            for waiting, row_id in zip(batch, ids, strict=True):
                if waiting.given_up:
                    # Its sender heard 451 and will send again; dedupe absorbs that.
                    log.warning("intake.stored_after_451", id=row_id)
                elif not waiting.future.done():
                    waiting.future.set_result(row_id)
            if self._on_commit is not None:
                try:
                    self._on_commit()
                except Exception as exc:
                    log.error("intake.on_commit_failed", error=type(exc).__name__)
            return None
        if len(batch) == 1:
            _fail(batch[0], error)
        return error


def _fail(waiting: _Waiting, error: IngestdError) -> None:
    # A sender who gave up already heard 451; an exception set on a future
    # nobody awaits would only be logged as never retrieved.
    if not (waiting.given_up or waiting.future.done()):
        waiting.future.set_exception(error)
