"""systemd: READY once SMTP listens, and WATCHDOG=1 pings sent from the event loop itself."""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.config import load_settings
from ingestd.systemd import watchdog_interval
from tests.conftest import DaemonThread, base_config, write_config


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's, named in NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


def _next(sock: socket.socket, wanted: bytes) -> float:
    """Wait for the message ``wanted`` (others are skipped); when it came."""
    while True:
        if sock.recv(100) == wanted:
            return time.monotonic()


def test_watchdog_pings_come_from_the_event_loop_and_stop_when_it_is_stuck(
        tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    """WatchdogSec=1 s: a ping every 0.5 s after READY; a loop blocked for 3 s sends none
    (systemd would restart the daemon), and pinging resumes once it is free. (Generous
    margins: the machine running the tests may be busy.)"""
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    settings = load_settings(write_config(tmp_path, base_config(f"sqlite:///{tmp_path}/i.db")))
    daemon = DaemonThread(settings)
    daemon.start()
    try:
        _next(notify_socket, b"READY=1")
        pings = [_next(notify_socket, b"WATCHDOG=1") for _ in range(3)]
        blocked = time.monotonic()
        daemon.block_loop(3.0)
        while pings[-1] < blocked + 5:
            pings.append(_next(notify_socket, b"WATCHDOG=1"))
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        # One gap of the block's length (no ping while the loop is stuck), the rest short.
        assert len([g for g in gaps if g >= 2.5]) == 1, gaps
        assert len([g for g in gaps if g >= 2.0]) == 1, gaps
    finally:
        daemon.stop()
    assert _next(notify_socket, b"STOPPING=1")


def test_no_pings_without_a_watchdog_or_for_another_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
