"""The daemon as a process: readiness, signals, logs, exit codes."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from tests.conftest import base_config, write_config
from tests.support.postgres import free_port
from tests.support.waiting import wait_for
from tests.test_smtp_intake import SIMPLE


class LineReader:
    """Collects a stream's lines in a thread, so tests can wait on them."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.append(line.decode("utf-8", "replace"))

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]


def _start(tmp_path: Path, port: int) -> tuple[subprocess.Popen[bytes], LineReader]:
    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["smtp"]["port"] = port
    config["logging"] = {"level": "info", "format": "auto"}
    path = write_config(tmp_path, config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingestd", "run", "--config", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    assert proc.stdout is not None
    return proc, LineReader(proc.stdout)


def test_run_logs_json_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`ingestd run` logs JSON events (no bodies), serves SMTP, and exits 0 on SIGTERM."""
    port = free_port()
    proc, out = _start(tmp_path, port)
    try:
        wait_for(lambda: any(e.get("event") == "daemon.ready" for e in out.events()),
                 timeout=30, what="daemon.ready")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("alice@acme.example", ["support@example.com"], SIMPLE)
        stored = wait_for(
            lambda: [e for e in out.events() if e.get("event") == "smtp.transaction"],
            what="transaction event")
        assert stored[0]["outcome"] == "stored"
        assert stored[0]["size"] == len(SIMPLE)
        assert stored[0]["mailbox"] == "support"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not any("It jams" in line for line in out.lines), "a body reached the log"
    assert any(e.get("event") == "daemon.stopped" for e in out.events())


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    """A port already in use makes `run` exit 69 with a one-line reason."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc, out = _start(tmp_path, port)
        assert proc.wait(timeout=30) == 69
    wait_for(lambda: any("cannot listen on 127.0.0.1:" in line for line in out.lines),
             what="error line")


def test_sd_notify_ready(tmp_path: Path) -> None:
    """Under systemd (NOTIFY_SOCKET set) the daemon sends READY=1 once it listens."""
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(30)
        config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
        path = write_config(tmp_path, config)
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
        proc = subprocess.Popen([sys.executable, "-m", "ingestd", "run", "--config", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            assert sock.recv(100) == b"READY=1"
            proc.send_signal(signal.SIGTERM)
            assert sock.recv(100) == b"STOPPING=1"
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
