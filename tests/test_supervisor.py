"""The worker supervisor outlives its own failures; timeouts quarantine at once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import FIXTURES, inbound_rows, write_config
from tests.processing_env import processing_config
from tests.support.waiting import wait_for
from tests.test_worker_crash import _start, _stop


def test_supervisor_survives_a_failing_quarantine_and_replaces_workers(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A timeout whose quarantine write fails (database locked): worker replaced, write retried."""
    from ingestd.cli.main import main
    from ingestd.config import load_settings
    from ingestd.db.engine import make_engine

    config = processing_config(sqlite_url, lease_seconds=4, timeout_seconds=1, max_attempts=3,
                               isolation="process")
    config["database"]["busy_timeout_ms"] = 200
    config["logging"] = {"level": "info", "format": "json"}
    path = write_config(tmp_path, config)
    hang = tmp_path / "hang.eml"
    hang.write_bytes((FIXTURES / "new-ticket.eml").read_bytes().replace(
        b"Subject:", b"X-Test-Hang: yes\r\nSubject:", 1))
    assert main(["ingest", "--no-process", "--config", str(path), "--mailbox", "support",
                 str(hang)]) == 0
    engine = make_engine(load_settings(path).database)
    daemon = _start(path, tmp_path)
    log = tmp_path / "daemon.log"
    try:
        wait_for(lambda: inbound_rows(engine)[0].claimed_by is not None, timeout=60,
                 what="the hanging message claimed")
        blocker = sqlite3.connect(tmp_path / "ingestd.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            wait_for(lambda: "worker.supervise_failed" in log.read_text(), timeout=30,
                     what="the quarantine write failing under the lock")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # The supervisor is still there: a replacement worker takes ordinary mail.
        assert main(["ingest", "--no-process", "--config", str(path), "--mailbox", "support",
                     str(FIXTURES / "from-unknown.eml")]) == 0
        rows = wait_for(lambda: (r := inbound_rows(engine))[1].status == "processed" and r,
                        timeout=60, what="ordinary mail processed by a replacement")
        # The quarantine that failed under the lock is written once the lock is gone.
        row = wait_for(lambda: (r := inbound_rows(engine)[0]).status == "quarantined" and r,
                       timeout=60, what="hanging message quarantined")
        assert daemon.poll() is None
    finally:
        _stop(daemon)
        engine.dispose()
    assert rows[1].status == "processed"
    assert row.reason == "timeout: processing took longer than 1 s"
    assert row.attempts == 1  # not tried again at the same cost
