"""Workers as threads of the daemon's process (``processing.isolation: thread``)."""

from __future__ import annotations

import asyncio
import threading
import time

import structlog
from sqlalchemy.engine import Engine

from ingestd.config.settings import IngestdSettings
from ingestd.pipeline.runner import Pipeline
from ingestd.queue import worker_identity
from ingestd.workers.loop import WakeableWait, work_loop
from ingestd.workers.worker import Worker

log = structlog.get_logger("ingestd.workers")


class WorkerThreads:
    """A service: ``count`` threads running the worker loop on one engine, which it owns."""

    name = "workers"

    def __init__(self, engine: Engine, settings: IngestdSettings, count: int,
                 pipeline: Pipeline | None = None) -> None:
        self._engine = engine
        self._settings = settings
        self._count = count
        self._pipeline = pipeline
        self._stopping = threading.Event()
        self._wakes = [threading.Event() for _ in range(count)]
        self._threads: list[threading.Thread] = []
        self._workers: list[Worker] = []

    def reload(self, settings: IngestdSettings) -> None:
        """New settings (rules) for every worker, from its next message on."""
        self._settings = settings
        for worker in self._workers:
            worker.settings = settings

    async def start(self) -> None:
        poll = self._settings.processing.poll_interval_seconds
        for index, wake in enumerate(self._wakes):
            worker = Worker(self._engine, self._settings, worker_identity(index),
                            pipeline=self._pipeline)
            self._workers.append(worker)
            thread = threading.Thread(
                target=work_loop, name=f"worker-{index}", daemon=True,
                kwargs={"worker": worker, "stopping": self._stopping.is_set,
                        "wait": WakeableWait(wake), "poll": poll},
            )
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        """Intake committed something: wake every idle worker."""
        for wake in self._wakes:
            wake.set()

    async def stop(self, timeout: float = 30.0) -> None:
        """Each worker finishes the message it holds, then stops."""
        self._stopping.set()
        self.notify()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            await asyncio.to_thread(thread.join, max(0.1, deadline - time.monotonic()))
            if thread.is_alive():
                # A thread cannot be killed; its claim's lease ends by itself
                # (or is released when the daemon next starts).
                log.warning("worker.still_busy_at_stop", worker=thread.name)
        if not any(thread.is_alive() for thread in self._threads):
            self._engine.dispose()
