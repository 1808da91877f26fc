"""The text ``/metrics`` answers: the daemon's counters, processing's figures (from the
worker processes' files, or this process's with thread isolation) and the state."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ingestd.metrics.counters import REGISTRY
from ingestd.metrics.processing import THREAD_REGISTRY

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """One daemon's metrics: where its worker processes write, and how to render them all."""

    def __init__(self, *, worker_processes: bool) -> None:
        # A fresh directory per daemon run: files of a previous run's workers
        # (other pids) would otherwise add up into this one's counters.
        self.directory = (Path(tempfile.mkdtemp(prefix="ingestd-metrics-"))
                          if worker_processes else None)
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
