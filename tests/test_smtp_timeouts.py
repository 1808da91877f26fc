"""Honest SMTP timeouts: idle time, the whole DATA, the whole session — each ends with 421 4.4.2."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ingestd.config.settings import SmtpSettings
from tests.test_drain import Session
from tests.test_smtp_intake import SIMPLE
from tests.test_smtp_protocol import daemon_with_smtp


def test_an_idle_session_is_closed_with_421(start_daemon: Any, tmp_path: Path) -> None:
    """No command for idle_timeout_seconds: 421 4.4.2, then the connection closes."""
    daemon = daemon_with_smtp(start_daemon, tmp_path, idle_timeout_seconds=0.5)
    session = Session(daemon.port)
    assert session.command(b"EHLO quiet.example").startswith(b"250")
    started = time.monotonic()
    assert session.reply().startswith(b"421 4.4.2 Idle")
    assert 0.4 <= time.monotonic() - started < 5


def test_a_slow_but_steady_data_transfer_outlives_the_idle_timeout(
    start_daemon: Any, tmp_path: Path
) -> None:
    """Chunks more often than the idle timeout keep DATA alive past it: 250, not a cut."""
    daemon = daemon_with_smtp(start_daemon, tmp_path, idle_timeout_seconds=0.6,
                              data_timeout_seconds=20)
    session = Session(daemon.port)
    session.start_data()
    chunks = [SIMPLE[i:i + 40] for i in range(0, len(SIMPLE), 40)]
    started = time.monotonic()
    while time.monotonic() - started < 1.8:  # three idle timeouts in all
        for chunk in chunks[:-1]:
            session.sock.sendall(chunk)
            time.sleep(0.2)  # the client's pace (what is under test), not synchronisation
    session.sock.sendall(b"".join(chunks[-1:]) + b".\r\n")
    reply = session.reply()
    assert reply.startswith(b"250 2.0.0"), reply


def test_a_dribbling_data_transfer_is_cut_at_the_data_timeout(
    start_daemon: Any, tmp_path: Path
) -> None:
    """A sender that never finishes DATA hears 421 4.4.2 after data_timeout_seconds."""
    daemon = daemon_with_smtp(start_daemon, tmp_path, idle_timeout_seconds=5,
                              data_timeout_seconds=1)
    session = Session(daemon.port)
    session.start_data()
    session.sock.sendall(SIMPLE[:30])
    started = time.monotonic()
    session.sock.settimeout(0.2)
    reply = b""
    while not reply and time.monotonic() - started < 10:
        session.sock.sendall(b"x")  # a byte now and then: never idle, never done
        try:
            reply = session.sock.recv(200)
        except TimeoutError:
            continue
    assert reply.startswith(b"421 4.4.2 Data"), reply
    assert 0.8 <= time.monotonic() - started < 5
    assert daemon.rows() == []


def test_a_noop_loop_is_ended_by_the_session_timeout(start_daemon: Any, tmp_path: Path) -> None:
    """NOOP every few tenths of a second never idles, yet the session ends at its timeout."""
    daemon = daemon_with_smtp(start_daemon, tmp_path, idle_timeout_seconds=5,
                              session_timeout_seconds=1.5)
    session = Session(daemon.port)
    started = time.monotonic()
    reply = b""
    while time.monotonic() - started < 10:
        reply = session.command(b"NOOP")
        if not reply.startswith(b"250"):
            break
        time.sleep(0.2)  # the client's pace
    assert reply.startswith(b"421 4.4.2 Session"), reply
    assert 1.3 <= time.monotonic() - started < 5


def test_the_old_timeout_key_still_sets_the_idle_timeout() -> None:
    """smtp.timeout_seconds (deprecated) keeps working as idle_timeout_seconds."""
    assert SmtpSettings(timeout_seconds=42).idle_timeout_seconds == 42
    assert SmtpSettings(timeout_seconds=42, idle_timeout_seconds=7).idle_timeout_seconds == 7
    assert SmtpSettings().idle_timeout_seconds == 300
