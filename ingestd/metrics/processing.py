"""What processing counts: messages by outcome, and each stage's latency.

In a worker process (``PROMETHEUS_MULTIPROC_DIR`` set by the daemon before
anything imported prometheus-client there) the values live in that
directory's files; the daemon merges them at each scrape. With thread
isolation they live in this process, in ``THREAD_REGISTRY``.
"""

from __future__ import annotations

import os
from functools import cache

from prometheus_client import CollectorRegistry, Counter, Histogram

THREAD_REGISTRY = CollectorRegistry(auto_describe=True)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: most stages take microseconds to milliseconds; parse of a large
# message and a slow database reach seconds.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
            30, 120)


class _Processing:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.processed = Counter("ingestd_messages_processed",
                                 "Messages processed, by outcome (failed: will be retried)",
                                 ["outcome"], registry=registry)
        self.stage_seconds = Histogram("ingestd_stage_seconds",
                                       "Processing time of each pipeline stage", ["stage"],
                                       buckets=_BUCKETS, registry=registry)


@cache
def _metrics() -> _Processing:
    # In a worker process the values go to the multiprocess files and belong to no
    # registry here; in the daemon's process (threads) to THREAD_REGISTRY.
    return _Processing(None if os.environ.get(MULTIPROC_ENV) else THREAD_REGISTRY)


def record_processed(outcome: str, timings: dict[str, float]) -> None:
    metrics = _metrics()
    metrics.processed.labels(outcome).inc()
    for stage, seconds in timings.items():
        metrics.stage_seconds.labels(stage).observe(seconds)
