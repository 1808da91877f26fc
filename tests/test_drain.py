"""SIGTERM drains SMTP: DATA in progress gets its reply, idle sessions get 421, exit 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import base_config, write_config
from tests.support.postgres import free_port
from tests.support.waiting import wait_for
from tests.test_daemon_process import LineReader
from tests.test_smtp_intake import SIMPLE


class Session:
    """A raw SMTP client: the test decides exactly when each line is sent."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        """The next complete reply (multi-line replies joined); b'' when closed."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return b"".join(lines)
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line + b"\r\n")
            if line[3:4] != b"-":
                return b"".join(lines)

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def start_data(self) -> None:
        assert self.command(b"EHLO client.example").startswith(b"250")
        assert self.command(b"MAIL FROM:<alice@acme.example>").startswith(b"250")
        assert self.command(b"RCPT TO:<support@example.com>").startswith(b"250")
        assert self.command(b"DATA").startswith(b"354")


def _start(tmp_path: Path, drain_seconds: float) -> tuple[subprocess.Popen[bytes], int,
                                                          LineReader]:
    port = free_port()
    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["smtp"].update({"port": port, "drain_seconds": drain_seconds})
    config["logging"] = {"level": "info", "format": "json"}
    path = write_config(tmp_path, config)
    proc = subprocess.Popen([sys.executable, "-m", "ingestd", "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    assert proc.stdout is not None
    out = LineReader(proc.stdout)
    wait_for(lambda: any(e.get("event") == "daemon.ready" for e in out.events()),
             timeout=30, what="daemon.ready")
    return proc, port, out


def test_sigterm_lets_data_finish_and_closes_idle_sessions(tmp_path: Path) -> None:
    """Mid-DATA gets 250 after SIGTERM, then 421; idle gets 421 at once; exit 0."""
    proc, port, _ = _start(tmp_path, drain_seconds=10)
    try:
        busy, idle = Session(port), Session(port)
        assert idle.command(b"EHLO idle.example").startswith(b"250")
        busy.start_data()
        half = len(SIMPLE) // 2
        busy.sock.sendall(SIMPLE[:half])
        proc.send_signal(signal.SIGTERM)
        # The idle session hears 421 at once: the drain has begun.
        assert idle.reply().startswith(b"421 4.3.2")
        assert idle.sock.recv(10) == b""
        # New connections are no longer accepted.
        wait_for(lambda: _refused(port), timeout=10, what="listener closed")
        busy.sock.sendall(SIMPLE[half:] + b".\r\n")
        assert busy.reply().startswith(b"250 2.0.0")
        assert busy.reply().startswith(b"421 4.3.2")
        started = time.monotonic()
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_session_that_never_ends_data_is_cut_after_drain_seconds(tmp_path: Path) -> None:
    """DATA that does not finish within smtp.drain_seconds gets 421; the daemon exits 0."""
    proc, port, out = _start(tmp_path, drain_seconds=1.5)
    try:
        stuck = Session(port)
        stuck.start_data()
        stuck.sock.sendall(SIMPLE[:20])
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert stuck.reply().startswith(b"421 4.3.2")
        assert 1.0 <= time.monotonic() - started < 6
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    drained = [e for e in out.events() if e.get("event") == "smtp.drained"]
    assert drained and drained[0]["cut_off"] == 1


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(100).startswith(b"421")
    except OSError:
        return True
