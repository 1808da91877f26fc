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
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event

import structlog

from ingestd.config.settings import IngestdSettings
from ingestd.pipeline.runner import Pipeline
from ingestd.queue import worker_identity

log = structlog.get_logger("ingestd.workers")

# A worker that dies sooner than this after starting is restarted with a delay,
# so a broken installation does not spin.
_QUICK_DEATH_SECONDS = 5.0
_SUPERVISE_EVERY = 0.5

# Called with (message id, worker identity, seconds) after a hung worker is killed.
OnTimeout = Callable[[int, str, float], None]


class SharedBusy:
    """Which message a worker process is on and since when, in one shared 64-bit word.

    Two separate values could be read half-updated (the supervisor seeing the
    old start time with the next message's id, and killing the wrong
    message's worker). A lock would be worse: a worker killed while holding
    it (by the supervisor, by the OOM killer) would leave it held for ever and
    block the supervisor in the event loop. One aligned 64-bit store is seen
    whole or not at all: the message id in the high 32 bits, the start in
    tenths of a second of the system-wide monotonic clock (which wall-clock
    steps do not move) in the low 32.
    """

    def __init__(self, word: ctypes.c_int64) -> None:
        self._word = word

    @contextlib.contextmanager
    def busy(self, message_id: int) -> Iterator[None]:
        started = int(time.monotonic() * 10) & 0xFFFFFFFF
        self._word.value = ((message_id & 0x7FFFFFFF) << 32) | started
        try:
            yield
        finally:
            self._word.value = 0

    def read(self) -> tuple[int, float]:
        """(message id, seconds busy with it); (0, 0.0) when idle."""
        word = self._word.value
        if not word:
            return 0, 0.0
        now = int(time.monotonic() * 10) & 0xFFFFFFFF
        return word >> 32, ((now - (word & 0xFFFFFFFF)) & 0xFFFFFFFF) / 10


class WorkerProcesses:
    """A service: starts, wakes, supervises and stops the worker processes.

    The supervisor kills a worker that exceeds ``processing.timeout_seconds``
    on one message (a message that makes the parser loop or crawl) and starts
    a replacement.
    """

    name = "workers"

    def __init__(self, settings: IngestdSettings, count: int,
                 on_timeout: OnTimeout | None = None, pipeline: Pipeline | None = None,
                 metrics_dir: str | None = None) -> None:
        # spawn, not fork: the parent runs an event loop and threads.
        self._context = multiprocessing.get_context("spawn")
        self._settings = settings
        self._pipeline = pipeline
        # Where the workers' prometheus-client files go (None: no metrics).
        self._metrics_dir = metrics_dir
        self._timeout = settings.processing.timeout_seconds
        self._on_timeout = on_timeout
        self._stop = self._context.Event()
        # Made anew for each process (see _spawn); these are placeholders.
        self._wakes: list[Event] = [self._context.Event() for _ in range(count)]
        self._busy = [self._new_marker() for _ in range(count)]
        self._processes: list[SpawnProcess | None] = [None] * count
        self._started_at = [0.0] * count
        self._timed_out = [False] * count
        # Asked to finish their message and leave, to be replaced with new settings.
        self._retiring = [False] * count
        self._identities = [""] * count
        self._supervisor: asyncio.Task[None] | None = None
        # Timed-out claims whose quarantine could not be written yet (database locked).
        self._owed: list[tuple[int, str, float]] = []
        self.restarts = 0

    def reload(self, settings: IngestdSettings) -> None:
        """Replace every worker process, each once it has finished its message, by one
        started with ``settings`` (a process cannot be handed new settings in flight)."""
        self._settings = settings
        for index, process in enumerate(self._processes):
            if process is not None and process.is_alive():
                self._retiring[index] = True
                process.terminate()  # SIGTERM: the worker finishes its message, then exits
                self._wakes[index].set()

    async def start(self) -> None:
        for index in range(len(self._processes)):
            self._spawn(index)
        self._supervisor = asyncio.create_task(self._supervise(), name="supervisor")

    def _spawn(self, index: int) -> None:
        # Chosen here, so the supervisor knows whose claim to end after a timeout.
        self._identities[index] = worker_identity(index)
        # Fresh shared objects for each process: a process killed inside an
        # Event's internal lock would leave it held, and the next notify()
        # would block the event loop.
        self._wakes[index] = self._context.Event()
        self._busy[index] = self._new_marker()
        process = self._context.Process(
            target=run_worker_process,
            args=(self._settings, self._identities[index], self._wakes[index], self._stop,
                  os.getpid(), self._busy[index], self._pipeline, self._metrics_dir),
            name=f"ingestd-worker-{index}",
            daemon=True,
        )
        process.start()
        self._processes[index] = process
        self._started_at[index] = time.monotonic()
        log.info("worker.started", worker=index, pid=process.pid)

    def _new_marker(self) -> SharedBusy:
        # lock=False: a raw shared c_int64 (see SharedBusy for why no lock).
        word: ctypes.c_int64 = self._context.RawValue(ctypes.c_int64, 0)
        return SharedBusy(word)

    def notify(self) -> None:
        """Intake committed something: wake every idle worker."""
        for wake in self._wakes:
            wake.set()

    async def _supervise(self) -> None:
        """Replace workers that die and kill hung ones, until stopped.

        A failure here (the database locked while a timed-out message is
        quarantined) is logged and the round retried: a supervisor that ended
        would leave dead workers unreplaced for good.
        """
        while not self._stop.is_set():
            await asyncio.sleep(_SUPERVISE_EVERY)
            if self._owed and self._on_timeout is not None:
                try:
                    await self._settle_timeouts()
                except Exception as exc:
                    log.error("worker.supervise_failed", error=type(exc).__name__,
                              detail=str(exc)[:300])
            for index in range(len(self._processes)):
                if self._stop.is_set():
                    return
                try:
                    await self._check(index)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("worker.supervise_failed", worker=index,
                              error=type(exc).__name__, detail=str(exc)[:300])

    async def _check(self, index: int) -> None:
        process = self._processes[index]
        if process is None:
            return
        if process.is_alive():
            await self._check_timeout(index, process)
            return
        if self._retiring[index]:
            self._retiring[index] = False
            self._processes[index] = None
            log.info("worker.replaced", worker=index, pid=process.pid)
            if not self._stop.is_set():
                self._spawn(index)
            return
        quick = (time.monotonic() - self._started_at[index] < _QUICK_DEATH_SECONDS
                 and not self._timed_out[index])
        self._timed_out[index] = False
        log.error("worker.died", worker=index, pid=process.pid, exitcode=process.exitcode,
                  restarting_in=2.0 if quick else 0.0)
        self._processes[index] = None
        if quick:
            await asyncio.sleep(2.0)
        if not self._stop.is_set():
            self.restarts += 1
            # Imported here, never at the top: a worker process imports this module
            # before it sets up prometheus-client's multiprocess files.
            from ingestd.metrics.counters import WORKER_RESTARTS

            WORKER_RESTARTS.inc()
            self._spawn(index)

    async def _check_timeout(self, index: int, process: SpawnProcess) -> None:
        message_id, busy_for = self._busy[index].read()
        if not message_id or busy_for <= self._timeout:
            return
        log.error("worker.timeout", worker=index, pid=process.pid, message=message_id,
                  seconds=busy_for)
        process.kill()
        await asyncio.to_thread(process.join, 5)
        self._timed_out[index] = True
        if self._on_timeout is not None:
            self._owed.append((message_id, self._identities[index], busy_for))
            await self._settle_timeouts()

    async def _settle_timeouts(self) -> None:
        """Record the timeouts not yet recorded; what fails now is tried next round."""
        assert self._on_timeout is not None
        while self._owed:
            message_id, identity, seconds = self._owed[0]
            await asyncio.to_thread(self._on_timeout, message_id, identity, seconds)
            self._owed.pop(0)

    async def stop(self, timeout: float = 30.0) -> None:
        """Ask every worker to finish its message and exit; kill what does not."""
        self._stop.set()
        self.notify()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
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
    marker: SharedBusy, pipeline: Pipeline | None, metrics_dir: str | None = None,
) -> None:
    """The body of one worker process."""
    if metrics_dir is not None:
        # Before anything imports prometheus-client here: its values then live in
        # files the daemon reads at each scrape (and outlive this process).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from ingestd.db.engine import make_engine
    from ingestd.logs import configure_logging
    from ingestd.workers.loop import WakeableWait, work_loop
    from ingestd.workers.worker import Worker

    # The parent owns Ctrl-C and SIGTERM; a worker finishes its message and leaves.
    stopping = False

    def on_term(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    configure_logging(settings.logging)
    engine = make_engine(settings.database)
    worker = Worker(engine, settings, identity, pipeline=pipeline)
    log.info("worker.ready", worker=identity, pid=os.getpid())
    try:
        work_loop(
            worker,
            stopping=lambda: stopping or stop.is_set() or os.getppid() != parent_pid,
            wait=WakeableWait(wake),
            poll=settings.processing.poll_interval_seconds,
            marker=marker,
        )
    finally:
        engine.dispose()
