"""Figures read at each scrape: from the database (the same for every instance on one
PostgreSQL) and from the daemon's memory budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingestd.config.settings import IngestdSettings
from ingestd.db.tables import INBOUND, MAILBOX_STATES

log = structlog.get_logger("ingestd.metrics")

MAILBOX_STATUSES = ("pending", "ok", "error", "needs_reauth")


class StateCollector(Collector):
    """Backlog, quarantine, pulled mailboxes and bytes in flight, as they are now.

    ``engine`` should be the collector's own (one connection): /metrics needs no
    token, and scrapes must never take the connections SMTP intake answers with.
    Scrapes take turns, and one within ``cache_seconds`` of the last reuses its
    database figures, so a flood of scrapes costs one query at a time.
    """

    def __init__(self, engine: sa.Engine, settings: Callable[[], IngestdSettings],
                 in_flight: Callable[[], tuple[int, int]] | None = None,
                 cache_seconds: float = 1.0) -> None:
        self._engine = engine
        self._settings = settings  # the current ones (a reload may change mailboxes)
        self._in_flight = in_flight  # (bytes held, budget)
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._budget()
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._cache_seconds:
                self._cached = (now, self._read())
            figures = self._cached[1]
        yield from figures

    def _read(self) -> list[Metric]:
        try:
            return list(self._database())
        except Exception as exc:  # a scrape must answer while the database is away
            log.warning("metrics.database_unavailable", error=type(exc).__name__,
                        detail=str(exc)[:200])
            up = GaugeMetricFamily("ingestd_database_up", "The database answered this scrape")
            up.add_metric([], 0)
            return [up]

    def _budget(self) -> Iterator[Metric]:
        if self._in_flight is None:
            return
        used, limit = self._in_flight()
        held = GaugeMetricFamily("ingestd_smtp_bytes_in_flight",
                                 "Message bytes SMTP sessions hold in memory")
        held.add_metric([], used)
        budget = GaugeMetricFamily("ingestd_smtp_bytes_budget",
                                   "smtp.max_inflight_bytes: the most they may hold")
        budget.add_metric([], limit)
        yield held
        yield budget

    def _database(self) -> Iterator[Metric]:
        with self._engine.connect() as conn:
            counts: dict[str, int] = {status: count for status, count in conn.execute(
                sa.select(INBOUND.c.status, sa.func.count())
                .where(INBOUND.c.status.in_(("pending", "quarantined")))
                .group_by(INBOUND.c.status))}
            oldest = conn.execute(sa.select(sa.func.min(INBOUND.c.received_at))
                                  .where(INBOUND.c.status == "pending")).scalar()
            states = {row.mailbox: row for row in conn.execute(sa.select(
                MAILBOX_STATES.c.mailbox, MAILBOX_STATES.c.status,
                MAILBOX_STATES.c.last_success_at))}
        up = GaugeMetricFamily("ingestd_database_up", "The database answered this scrape")
        up.add_metric([], 1)
        yield up
        pending = GaugeMetricFamily("ingestd_pending_messages",
                                    "Stored messages not processed yet (all instances)")
        pending.add_metric([], counts.get("pending", 0))
        yield pending
        age = GaugeMetricFamily("ingestd_oldest_pending_age_seconds",
                                "Age of the oldest pending message (0: none pending)")
        age.add_metric([], _age_seconds(oldest))
        yield age
        held = GaugeMetricFamily("ingestd_quarantined_messages",
                                 "Messages in quarantine, waiting for a person")
        held.add_metric([], counts.get("quarantined", 0))
        yield held
        yield from self._mailboxes(states)

    def _mailboxes(self, states: dict[str, Any]) -> Iterator[Metric]:
        pulled = [m for m in self._settings().mailboxes if m.pulled]
        if not pulled:
            return
        status = GaugeMetricFamily("ingestd_mailbox_status",
                                   "1 for the pulled mailbox's current status",
                                   labels=["mailbox", "status"])
        success = GaugeMetricFamily("ingestd_mailbox_last_success_timestamp_seconds",
                                    "When the mailbox was last polled successfully (Unix time)",
                                    labels=["mailbox"])
        expiry = GaugeMetricFamily("ingestd_mailbox_secret_days_left",
                                   "Days until the mailbox's configured secret expires",
                                   labels=["mailbox"])
        today = date.today()
        for mailbox in pulled:
            row = states.get(mailbox.name)
            now_status = row.status if row is not None else "pending"
            for name in MAILBOX_STATUSES:
                status.add_metric([mailbox.name, name], 1 if name == now_status else 0)
            if row is not None and row.last_success_at is not None:
                success.add_metric([mailbox.name], _aware(row.last_success_at).timestamp())
            days = mailbox.graph.secret_days_left(today) if mailbox.graph is not None else None
            if days is not None:
                expiry.add_metric([mailbox.name], days)
        yield status
        yield success
        yield expiry


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _age_seconds(oldest: datetime | None) -> float:
    if oldest is None:
        return 0.0
    return max(0.0, (datetime.now(UTC) - _aware(oldest)).total_seconds())
