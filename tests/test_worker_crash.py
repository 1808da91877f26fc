"""A worker killed mid-message: attempts are counted before work, so nothing loops forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from tests.conftest import FIXTURES, REPO, inbound_rows, write_config
from tests.processing_env import processing_config
from tests.support.waiting import wait_for


def _setup(tmp_path: Path, db_url: str, marker: str, max_attempts: int,
           isolation: str = "thread", lease_seconds: float = 3) -> tuple[Path, Any]:
    config = processing_config(db_url, lease_seconds=lease_seconds, timeout_seconds=2,
                               max_attempts=max_attempts,
                               isolation=isolation)
    path = write_config(tmp_path, config)
    raw = (FIXTURES / "new-ticket.eml").read_bytes().replace(
        b"Subject:", f"X-Test-Kill: {marker}\r\nSubject:".encode(), 1)
    eml = tmp_path / "killer.eml"
    eml.write_bytes(raw)
    assert main(["ingest", "--no-process", "--config", str(path), "--mailbox", "support",
                 str(eml)]) == 0
    return path, make_engine(load_settings(path).database)


def _start(path: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KILL_ONCE_FLAG": str(tmp_path / "killed.flag"),
           "PYTHONPATH": str(REPO)}
    with (tmp_path / "daemon.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "support" / "crashing_daemon.py"),
             "run", "--config", str(path)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_killed_mid_message_then_processed_exactly_once(tmp_path: Path, db_url: str) -> None:
    """Thread isolation: SIGKILL takes the daemon; after a restart the message is processed once."""
    path, engine = _setup(tmp_path, db_url, "once", max_attempts=5)
    try:
        first = _start(path, tmp_path)
        assert first.wait(timeout=60) == -signal.SIGKILL
        assert inbound_rows(engine)[0].status == "pending"
        assert inbound_rows(engine)[0].attempts == 1
        second = _start(path, tmp_path)
        try:
            row = wait_for(lambda: (r := inbound_rows(engine)[0]).status != "pending" and r,
                           timeout=30, what="processed after restart")
        finally:
            _stop(second)
        assert row.status == "processed"
        assert row.attempts == 2
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM tickets")).scalar_one() == 1
            assert conn.execute(sa.text("SELECT count(*) FROM actions")).scalar_one() == 1
    finally:
        engine.dispose()


def test_restart_after_a_crash_does_not_wait_out_the_lease(tmp_path: Path, db_url: str) -> None:
    """A restarted daemon frees the claims of this host's dead processes at once."""
    path, engine = _setup(tmp_path, db_url, "once", max_attempts=5, lease_seconds=600)
    try:
        first = _start(path, tmp_path)
        assert first.wait(timeout=60) == -signal.SIGKILL
        held = inbound_rows(engine)[0]
        assert held.status == "pending" and held.claimed_by is not None
        second = _start(path, tmp_path)
        try:
            # Far inside the 600 s lease: only the start-up release can explain it.
            row = wait_for(lambda: (r := inbound_rows(engine)[0]).status != "pending" and r,
                           timeout=30, what="processed after restart")
        finally:
            _stop(second)
        assert (row.status, row.attempts) == ("processed", 2)
        assert "daemon.released_dead_claims" in (tmp_path / "daemon.log").read_text()
    finally:
        engine.dispose()


def test_live_claims_of_this_host_are_not_released(tmp_path: Path, sqlite_url: str) -> None:
    """Only claims whose process has ended are freed; a running process keeps its claim."""
    import os
    import socket

    from ingestd import queue
    from ingestd.workers.worker import Worker

    path, engine = _setup(tmp_path, sqlite_url, "none", max_attempts=5, lease_seconds=600)
    try:
        settings = load_settings(path)
        live = f"{socket.gethostname()}:{os.getpid()}:0:abcd"
        assert Worker(engine, settings, live).claim() is not None
        with engine.begin() as conn:
            assert queue.release_dead_claims(conn, socket.gethostname(), lambda pid: False) == [1]
        assert inbound_rows(engine)[0].claimed_by is None
        assert Worker(engine, settings, live).claim() is not None
        with engine.begin() as conn:
            assert queue.release_dead_claims(conn, socket.gethostname(), lambda pid: True) == []
            assert queue.release_dead_claims(conn, "other-host", lambda pid: False) == []
        assert inbound_rows(engine)[0].claimed_by == live
    finally:
        engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_message_that_always_kills_is_quarantined(tmp_path: Path, db_url: str) -> None:
    """Thread isolation: a message killing the daemon every time ends quarantined."""
    path, engine = _setup(tmp_path, db_url, "always", max_attempts=3)
    try:
        for attempt in range(1, 4):
            proc = _start(path, tmp_path)
            assert proc.wait(timeout=60) == -signal.SIGKILL, f"attempt {attempt}"
            assert inbound_rows(engine)[0].attempts == attempt
        survivor = _start(path, tmp_path)
        try:
            row = wait_for(lambda: (r := inbound_rows(engine)[0]).status == "quarantined" and r,
                           timeout=30, what="quarantine")
            assert survivor.poll() is None, "the worker must survive the poison message now"
        finally:
            _stop(survivor)
        assert row.reason.startswith("attempts: worker stopped during processing")
        assert row.attempts == 3
    finally:
        engine.dispose()


def test_worker_process_killed_mid_message_daemon_carries_on(tmp_path: Path,
                                                              db_url: str) -> None:
    """Process isolation: the worker dies, the daemon replaces it; processed exactly once."""
    path, engine = _setup(tmp_path, db_url, "once", max_attempts=5, isolation="process")
    daemon = _start(path, tmp_path)
    try:
        row = wait_for(lambda: (r := inbound_rows(engine)[0]).status != "pending" and r,
                       timeout=60, what="processed by a replacement worker")
        assert daemon.poll() is None, "the daemon itself must survive"
        assert (row.status, row.attempts) == ("processed", 2)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM tickets")).scalar_one() == 1
    finally:
        _stop(daemon)
        engine.dispose()
    assert daemon.returncode == 0
    assert "worker.died" in (tmp_path / "daemon.log").read_text()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_poison_message_quarantined_while_daemon_serves(tmp_path: Path, db_url: str) -> None:
    """Process isolation: a message killing every worker is quarantined; SMTP keeps working."""
    path, engine = _setup(tmp_path, db_url, "always", max_attempts=3, isolation="process")
    daemon = _start(path, tmp_path)
    try:
        row = wait_for(lambda: (r := inbound_rows(engine)[0]).status == "quarantined" and r,
                       timeout=90, what="quarantine")
        assert daemon.poll() is None
        assert (row.reason, row.attempts) == ("attempts: worker stopped during processing", 3)
        # The replacement worker goes on with ordinary mail.
        assert main(["ingest", "--no-process", "--config", str(path), "--mailbox", "support",
                     str(FIXTURES / "from-unknown.eml")]) == 0
        wait_for(lambda: inbound_rows(engine)[1].status == "processed", timeout=60,
                 what="next message processed")
    finally:
        _stop(daemon)
        engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_hung_worker_is_killed_and_the_message_quarantined(tmp_path: Path, db_url: str) -> None:
    """A message that hangs its worker past timeout_seconds: worker killed, others go on."""
    config = processing_config(db_url, lease_seconds=30, timeout_seconds=1, max_attempts=2,
                               isolation="process")
    path = write_config(tmp_path, config)
    hang = tmp_path / "hang.eml"
    hang.write_bytes((FIXTURES / "new-ticket.eml").read_bytes().replace(
        b"Subject:", b"X-Test-Hang: yes\r\nSubject:", 1))
    assert main(["ingest", "--no-process", "--config", str(path), "--mailbox", "support",
                 str(hang), str(FIXTURES / "from-unknown.eml")]) == 0
    engine = make_engine(load_settings(path).database)
    daemon = _start(path, tmp_path)
    try:
        rows = wait_for(lambda: (r := inbound_rows(engine))[0].status == "quarantined"
                        and r[1].status == "processed" and r, timeout=90,
                        what="hung message quarantined, the other processed")
        assert daemon.poll() is None
    finally:
        _stop(daemon)
        engine.dispose()
    assert rows[0].reason == "timeout: processing took longer than 1 s"
    assert "worker.timeout" in (tmp_path / "daemon.log").read_text()


def test_claims_carrying_our_own_pid_are_freed_at_start(tmp_path: Path, sqlite_url: str) -> None:
    """A restart that reuses the pid (PID 1 in a container) still frees its predecessor's claims."""
    import os
    import socket

    from ingestd.daemon import release_claims_of_dead_processes
    from ingestd.workers.worker import Worker

    path, engine = _setup(tmp_path, sqlite_url, "none", max_attempts=5, lease_seconds=600)
    try:
        predecessor = f"{socket.gethostname()}:{os.getpid()}:0:beef"
        assert Worker(engine, load_settings(path), predecessor).claim() is not None
        assert release_claims_of_dead_processes(engine) == [1]
        assert inbound_rows(engine)[0].claimed_by is None
    finally:
        engine.dispose()
