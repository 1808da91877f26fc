"""SMTP protocol gaps closed: floods, early talkers, NUL addresses, half-close, headerless DATA."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from ingestd.cli.main import main
from tests.conftest import base_config, write_config
from tests.test_drain import Session
from tests.test_smtp_intake import SIMPLE


def daemon_with_smtp(start_daemon: Any, tmp_path: Path, **smtp: Any) -> Any:
    """A daemon on SQLite with these ``smtp`` settings changed."""
    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["smtp"].update(smtp)
    return start_daemon(write_config(tmp_path, config))


def test_a_recipient_flood_is_cut_off_after_max_errors(start_daemon: Any, tmp_path: Path) -> None:
    """Refused recipients are answered up to smtp.max_errors, then 421 4.7.0 and close."""
    daemon = daemon_with_smtp(start_daemon, tmp_path, max_errors=5)
    session = Session(daemon.port)
    assert session.command(b"EHLO flood.example").startswith(b"250")
    assert session.command(b"MAIL FROM:<spam@flood.example>").startswith(b"250")
    replies = [session.command(f"RCPT TO:<nobody{i}@example.com>".encode()) for i in range(5)]
    assert all(r.startswith(b"550 5.1.1") for r in replies)
    assert session.reply().startswith(b"421 4.7.0")
    session.sock.settimeout(5)
    assert session.sock.recv(100) == b""  # closed


def test_unknown_commands_count_as_errors_too(start_daemon: Any, tmp_path: Path) -> None:
    """Garbage commands end the session as well, and good sessions go on meanwhile."""
    daemon = daemon_with_smtp(start_daemon, tmp_path, max_errors=3)
    bad, good = Session(daemon.port), Session(daemon.port)
    assert bad.command(b"EHLO x").startswith(b"250")
    assert bad.command(b"DATA").startswith(b"503")  # out of sequence: 5xx
    assert bad.command(b"RCPT TO:<a@b>").startswith(b"503")
    assert bad.command(b"MAIL FROM:<a\x00b@x>").startswith(b"501")
    assert bad.reply().startswith(b"421 4.7.0")
    assert good.command(b"EHLO good.example").startswith(b"250")
    good.start_data()
    good.sock.sendall(SIMPLE + b".\r\n")
    assert good.reply().startswith(b"250 2.0.0")


def test_a_client_that_talks_before_the_greeting_is_refused(
    start_daemon: Any, tmp_path: Path
) -> None:
    """With smtp.greet_delay_ms, an early talker gets 421 4.7.0; a patient one is greeted."""
    daemon = daemon_with_smtp(start_daemon, tmp_path, greet_delay_ms=400)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as early:
        early.sendall(b"EHLO impatient.example\r\n")
        assert early.recv(200).startswith(b"421 4.7.0")
    started = time.monotonic()
    patient = Session(daemon.port)  # waits for the 220
    assert time.monotonic() - started >= 0.35
    assert patient.command(b"EHLO patient.example").startswith(b"250")


def test_a_half_close_after_the_final_dot_still_gets_its_reply(daemon: Any) -> None:
    """The client shuts its sending side right after the dot: the 250 still arrives."""
    session = Session(daemon.port)
    session.start_data()
    session.sock.sendall(SIMPLE + b".\r\n")
    session.sock.shutdown(socket.SHUT_WR)
    assert session.reply().startswith(b"250 2.0.0")
    assert len(daemon.rows()) == 1


def test_headerless_or_empty_data_is_refused_over_smtp_and_by_ingest(
    daemon: Any, config_file: Path, tmp_path: Path
) -> None:
    """One rule for both ways in: no header section, no message (550 5.6.0 / exit 65)."""
    for body in (b"", b"just some text\r\nno headers\r\n"):
        session = Session(daemon.port)
        session.start_data()
        session.sock.sendall(body + b".\r\n")
        assert session.reply().startswith(b"550 5.6.0")
    assert daemon.rows() == []
    loose = tmp_path / "loose.txt"
    loose.write_bytes(b"just some text\r\nno headers\r\n")
    assert main(["ingest", "--config", str(config_file), "--mailbox", "support",
                 "--no-process", str(loose)]) == 65
