"""/metrics: exact counter values after a known load, with worker processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import write_config
from tests.processing_env import ProcessingEnv, import_directory, processing_config
from tests.support.waiting import wait_for
from tests.test_rules import mail


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _value(values: dict[Any, float], name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def test_exact_counters_with_worker_processes(tmp_path: Path, sqlite_url: str,
                                              start_daemon: Any) -> None:
    """Nine messages over SMTP into two worker processes: received, replies, outcomes and
    stage counts are exact; the backlog and quarantine come from the database; a killed
    worker is counted as restarted and its counts are not lost with it."""
    config = processing_config(sqlite_url, workers=2, isolation="process")
    config["mailboxes"][0]["unrelated_sender"] = "hold"
    path = write_config(tmp_path, config)
    import_directory(path)
    daemon = start_daemon(path)
    port = daemon.services.http_port
    env = ProcessingEnv(path, daemon.engine, "smtp", daemon.port)
    before = _scrape(port)

    tickets = [env.deliver("", raw=mail(subject=f"Problem {i}", body=f"body {i}"))
               for i in range(5)]
    for i in range(2):
        assert env.deliver("", raw=mail(subject=f"Problem {i}", body=f"body {i}")
                           ).status == "duplicate"
    assert env.deliver("", raw=mail(subject="Away", extra="Auto-Submitted: auto-replied\r\n")
                       ).reason == "auto-reply"
    assert env.deliver("", raw=mail(subject=f"Re: [ID:{tickets[0].ticket_id}] mine",
                                    sender="mallory@evil.example")).status == "quarantined"

    # A worker counts a message just after its row is settled: wait for the last one.
    # Database figures are cached for a second between scrapes: wait for this one's.
    wait_for(lambda: _value(_scrape(port), "ingestd_messages_processed_total",
                            outcome="quarantined") == 1
             and _value(_scrape(port), "ingestd_quarantined_messages") == 1, what="the counts")
    after = _scrape(port)
    received = (_value(after, "ingestd_messages_received_total", source="smtp",
                       mailbox="support")
                - _value(before, "ingestd_messages_received_total", source="smtp",
                         mailbox="support"))
    assert received == 9
    # One reply each (a multi-line EHLO reply is one): EHLO, MAIL, RCPT and the end of DATA
    # answer 250, four per message.
    for code, per_message in (("220", 1), ("250", 4), ("354", 1), ("221", 1)):
        assert (_value(after, "ingestd_smtp_replies_total", code=code)
                - _value(before, "ingestd_smtp_replies_total", code=code)) == 9 * per_message, code
    # From the worker processes' files (a fresh directory for this daemon).
    outcomes = {o: _value(after, "ingestd_messages_processed_total", outcome=o)
                for o in ("ticket_created", "duplicate", "ignored", "quarantined")}
    assert outcomes == {"ticket_created": 5, "duplicate": 2, "ignored": 1, "quarantined": 1}
    assert _value(after, "ingestd_stage_seconds_count", stage="parse") == 9
    assert _value(after, "ingestd_stage_seconds_count", stage="apply") == 6
    assert _value(after, "ingestd_pending_messages") == 0
    assert _value(after, "ingestd_quarantined_messages") == 1
    assert _value(after, "ingestd_database_up") == 1
    assert _value(after, "ingestd_smtp_bytes_budget") > 0

    restarts = _value(after, "ingestd_worker_restarts_total")
    workers = [p for p in multiprocessing.active_children()
               if p.name.startswith("ingestd-worker-")]
    assert len(workers) == 2
    os.kill(workers[0].pid or 0, signal.SIGKILL)
    wait_for(lambda: _value(_scrape(port), "ingestd_worker_restarts_total") == restarts + 1,
             timeout=20, what="the restart counted")
    survived = _scrape(port)
    assert _value(survived, "ingestd_messages_processed_total", outcome="ticket_created") == 5
    env.deliver("", raw=mail(subject="After the restart"))
    wait_for(lambda: _value(_scrape(port), "ingestd_messages_processed_total",
                            outcome="ticket_created") == 6, what="the new count")


def test_state_of_pulled_mailboxes_and_a_database_that_is_away(tmp_path: Path,
                                                                sqlite_url: str) -> None:
    """Per pulled mailbox: its status, last success and the days its secret has left; a
    scrape while the database is away answers, with ingestd_database_up 0."""
    from datetime import UTC, date, datetime, timedelta

    import sqlalchemy as sa
    from prometheus_client import CollectorRegistry, generate_latest

    from ingestd.config import load_settings
    from ingestd.db.engine import make_engine
    from ingestd.db.schema import ensure_schema
    from ingestd.db.tables import MAILBOX_STATES
    from ingestd.metrics.state import StateCollector

    secret = tmp_path / "secret"
    secret.write_text("s")
    config = processing_config(sqlite_url)
    config["mailboxes"].append({
        "name": "m365", "addresses": ["m365@example.com"], "source": "graph",
        "graph": {"tenant_id": "t", "client_id": "c", "client_secret_file": str(secret),
                  "user": "m365@example.com",
                  "secret_expires": (date.today() + timedelta(days=12)).isoformat()}})
    settings = load_settings(write_config(tmp_path, config))
    engine = make_engine(settings.database)
    ensure_schema(engine)
    success = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(MAILBOX_STATES).values(
            mailbox="m365", source="graph", status="needs_reauth", last_success_at=success))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(engine, lambda: settings))
    values = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert _value(values, "ingestd_mailbox_status", mailbox="m365", status="needs_reauth") == 1
    assert _value(values, "ingestd_mailbox_status", mailbox="m365", status="ok") == 0
    assert _value(values, "ingestd_mailbox_last_success_timestamp_seconds",
                  mailbox="m365") == success.timestamp()
    assert _value(values, "ingestd_mailbox_secret_days_left", mailbox="m365") == 12

    away = make_engine(settings.database.model_copy(
        update={"url": f"sqlite:///{tmp_path}/missing/dir/x.db"}))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(away, lambda: settings))
    assert b"ingestd_database_up 0.0" in generate_latest(registry)


def test_health_and_metrics_on_their_own_listener(tmp_path: Path, sqlite_url: str,
                                                  start_daemon: Any) -> None:
    """http.health_listen: /healthz, /readyz and /metrics there, and no longer on the API's
    port; the API stays where it was."""
    import urllib.error

    config = processing_config(sqlite_url)
    config["http"] = {"port": 0, "health_listen": {"host": "127.0.0.1", "port": 0}}
    daemon = start_daemon(write_config(tmp_path, config))
    api, health = daemon.services.http_port, daemon.services.health_port
    assert health is not None and health != api

    def status(port: int, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return error.code

    assert [status(health, p) for p in ("/healthz", "/readyz", "/metrics")] == [200, 200, 200]
    assert status(health, "/api/inbox") == 404
    assert [status(api, p) for p in ("/healthz", "/metrics")] == [404, 404]
    assert status(api, "/api/inbox") == 401  # the API, asking for its token
    assert b"ingestd_pending_messages" in urllib.request.urlopen(
        f"http://127.0.0.1:{health}/metrics", timeout=10).read()


def test_a_killed_daemons_metrics_directory_is_removed_by_the_next() -> None:
    """kill -9 leaves the worker files behind; the next daemon removes those of dead pids
    (and only those) and cleans its own at close."""
    import subprocess
    import sys
    import tempfile

    from ingestd.metrics.exposition import Metrics

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = Path(tempfile.mkdtemp(prefix=f"ingestd-metrics-{dead}-"))
    alive = Path(tempfile.mkdtemp(prefix=f"ingestd-metrics-{os.getpid()}-"))
    try:
        metrics = Metrics(worker_processes=True)
        assert not stale.exists() and alive.exists()
        assert metrics.directory is not None and metrics.directory.is_dir()
        metrics.close()
        assert not metrics.directory.exists()
    finally:
        for path in (stale, alive):
            if path.exists():
                path.rmdir()
