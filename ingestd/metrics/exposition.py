"""The text ``/metrics`` answers: the daemon's counters, processing's figures (from the
worker processes' files, or this process's with thread isolation) and the state."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ingestd.metrics.counters import REGISTRY
from ingestd.metrics.processing import THREAD_REGISTRY
from ingestd.pids import pid_running

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """One daemon's metrics: where its worker processes write, and how to render them all."""

    def __init__(self, *, worker_processes: bool) -> None:
        # A fresh directory per daemon run: files of a previous run's workers
        # (other pids) would otherwise add up into this one's counters.
        self.directory = None
        if worker_processes:
            _remove_stale(Path(tempfile.gettempdir()))
            self.directory = Path(tempfile.mkdtemp(prefix=f"ingestd-metrics-{os.getpid()}-"))
        self._state: Collector | None = None

    def add_state(self, collector: Collector) -> None:
        self._state = collector

    def render(self) -> bytes:
        parts = [generate_latest(REGISTRY)]
        processing = CollectorRegistry(auto_describe=False)
        if self.directory is not None:
            MultiProcessCollector(processing, path=str(self.directory))  # type: ignore[no-untyped-call]
            parts.append(generate_latest(processing))
        else:
            parts.append(generate_latest(THREAD_REGISTRY))
        if self._state is not None:
            state = CollectorRegistry(auto_describe=False)
            state.register(self._state)
            parts.append(generate_latest(state))
        return b"".join(parts)

    def close(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _remove_stale(parent: Path) -> None:
    """Directories of daemons that died without cleaning up (kill -9), by their pid."""
    for path in parent.glob("ingestd-metrics-*-*"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and not pid_running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)

