"""Worker processes: processing runs beside intake, never inside it.

With ``processing.isolation: process`` (the default) each worker is its own
process, started by the daemon and restarted when it dies. A message that
crashes the parser (a segfault in a C extension, the kernel's OOM killer)
takes one worker down; SMTP intake in the main process carries on, the
worker is replaced, and the message's lease expires so it is tried again
(its attempt already counted). Separate processes also let processing use
every CPU instead of sharing intake's interpreter lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

import structlog

from ingestd.config.settings import IngestdSettings
from ingestd.db.engine import make_engine
from ingestd.logs import configure_logging
from ingestd.worker import Worker, worker_identity

log = structlog.get_logger("ingestd.workers")

# A worker that dies sooner than this after starting is restarted with a delay,
# so a broken installation does not spin.
_QUICK_DEATH_SECONDS = 5.0


# Called with (message id, worker identity, seconds) after a hung worker is killed.
OnTimeout = Callable[[int, str, float], None]


class WorkerProcesses:
    """Starts, wakes, supervises and stops the worker processes.

    Each worker publishes, in shared memory, which message it is on and since
    when; the supervisor kills one that exceeds ``processing.timeout_seconds``
    (a message that makes the parser loop or crawl) and starts a replacement.
    """

    def __init__(self, settings: IngestdSettings, count: int,
                 on_timeout: OnTimeout | None = None) -> None:
        # spawn, not fork: the parent runs an event loop and threads.
        self._context = multiprocessing.get_context("spawn")
        self._settings = settings
        self._timeout = settings.processing.timeout_seconds
        self._on_timeout = on_timeout
        self._stop = self._context.Event()
        self._wakes = [self._context.Event() for _ in range(count)]
        self._busy_since: list[Synchronized[float]] = [
            self._context.Value("d", 0.0, lock=False) for _ in range(count)]
        self._busy_with: list[Synchronized[int]] = [
            self._context.Value("q", 0, lock=False) for _ in range(count)]
        self._processes: list[SpawnProcess | None] = [None] * count
        self._started_at = [0.0] * count
        self._timed_out = [False] * count
        self._identities = [""] * count
        self.restarts = 0

    def start(self) -> None:
        for index in range(len(self._processes)):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        # Chosen here, so the supervisor knows whose claim to end after a timeout.
        self._identities[index] = worker_identity(index)
        process = self._context.Process(
            target=run_worker_process,
            args=(self._settings, self._identities[index], self._wakes[index], self._stop,
                  os.getpid(), self._busy_since[index], self._busy_with[index]),
            name=f"ingestd-worker-{index}",
            daemon=True,
        )
        self._busy_since[index].value = 0.0
        process.start()
        self._processes[index] = process
        self._started_at[index] = time.monotonic()
        log.info("worker.started", worker=index, pid=process.pid)

    def notify(self) -> None:
        """Intake committed something: wake every idle worker."""
        for wake in self._wakes:
            wake.set()

    async def supervise(self, stop: asyncio.Event) -> None:
        """Replace workers that die, until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            if stop.is_set():
                return
            for index, process in enumerate(self._processes):
                if process is not None and process.is_alive():
                    await self._check_timeout(index, process)
                    continue
                if process is None:
                    continue
                quick = (time.monotonic() - self._started_at[index] < _QUICK_DEATH_SECONDS
                         and not self._timed_out[index])
                self._timed_out[index] = False
                log.error("worker.died", worker=index, pid=process.pid,
                          exitcode=process.exitcode, restarting_in=2.0 if quick else 0.0)
                self._processes[index] = None
                if quick:
                    await asyncio.sleep(2.0)
                if not stop.is_set():
                    self.restarts += 1
                    self._spawn(index)

    async def _check_timeout(self, index: int, process: SpawnProcess) -> None:
        since = self._busy_since[index].value
        if not since or time.time() - since <= self._timeout:
            return
        message_id = self._busy_with[index].value
        seconds = round(time.time() - since, 1)
        log.error("worker.timeout", worker=index, pid=process.pid, message=message_id,
                  seconds=seconds)
        process.kill()
        await asyncio.to_thread(process.join, 5)
        self._timed_out[index] = True
        if self._on_timeout is not None:
            await asyncio.to_thread(self._on_timeout, message_id, self._identities[index],
                                    seconds)

    async def stop(self, timeout: float = 60.0) -> None:
        """Ask every worker to finish its message and exit; kill what does not."""
        self._stop.set()
        self.notify()
        deadline = time.monotonic() + timeout
        for process in self._processes:
            if process is None:
                continue
            await asyncio.to_thread(process.join, max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker.killed_at_stop", pid=process.pid)
                process.kill()
                await asyncio.to_thread(process.join, 5)


def run_worker_process(
    settings: IngestdSettings, identity: str, wake: Event, stop: Event, parent_pid: int,
    busy_since: Synchronized[float], busy_with: Synchronized[int],
) -> None:
    """The body of one worker process."""
    # The parent owns Ctrl-C and SIGTERM; a worker finishes its message and leaves.
    stopping = False

    def on_term(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    configure_logging(settings.logging)
    engine = make_engine(settings.database)
    worker = Worker(engine, settings, identity)
    poll = settings.processing.poll_interval_seconds
    log.info("worker.ready", worker=identity, pid=os.getpid())
    failures = 0
    try:
        while not (stopping or stop.is_set()) and os.getppid() == parent_pid:
            wake.clear()
            try:
                claim = worker.claim()
                if claim is not None:
                    busy_with.value = claim.id
                    busy_since.value = time.time()
                    try:
                        worker.process(claim)
                    finally:
                        busy_since.value = 0.0
                done = claim
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("worker.error", worker=worker.identity, error=type(exc).__name__,
                            detail=str(exc)[:300])
                stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if done is None:
                wake.wait(poll)
    finally:
        engine.dispose()
