"""What the HTTP routes need from the daemon: the database and the readiness checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from ingestd.config.settings import IngestdSettings

if TYPE_CHECKING:
    from ingestd.metrics.exposition import Metrics

# name -> a check returning (passed, detail); run in a worker thread, may block briefly.
ReadinessCheck = Callable[[], tuple[bool, str]]


@dataclass(frozen=True)
class ApiContext:
    engine: Engine
    settings: IngestdSettings
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    metrics: Metrics | None = None
