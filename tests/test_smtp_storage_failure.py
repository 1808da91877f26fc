"""A database that refuses writes: 451, nothing half-stored, recovery without restart."""

from __future__ import annotations

import smtplib
import sqlite3
from pathlib import Path
from typing import Any

from tests.conftest import base_config, new_pg_database, write_config
from tests.test_smtp_intake import SIMPLE

TEMPFAIL_TEXT = b"4.3.0 Temporary failure storing the message, please try again later"


def _transaction(client: smtplib.SMTP, data: bytes = SIMPLE) -> tuple[int, bytes]:
    client.mail("alice@acme.example")
    client.rcpt("support@example.com")
    return client.data(data)


def test_sqlite_locked_gives_451_then_recovers(start_daemon: Any, tmp_path: Path) -> None:
    """While another connection holds an exclusive lock, DATA gets 451; then 250 again."""
    url = f"sqlite:///{tmp_path}/ingestd.db"
    config = base_config(url)
    config["database"]["busy_timeout_ms"] = 200
    daemon = start_daemon(write_config(tmp_path, config))
    blocker = sqlite3.connect(tmp_path / "ingestd.db", isolation_level=None)
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        client.ehlo()
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            code, reply = _transaction(client)
            assert code == 451, reply
            assert reply == TEMPFAIL_TEXT
            assert b"locked" not in reply and b"Error" not in reply
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # The same session carries on with the next MAIL FROM.
        code, _ = _transaction(client, SIMPLE.replace(b"It jams", b"Still jams"))
        assert code == 250
    rows = daemon.rows()
    assert len(rows) == 1
    assert b"Still jams" in bytes(rows[0].raw)


def test_postgres_down_gives_451_then_recovers(
    start_daemon: Any, tmp_path: Path, pg_server: Any
) -> None:
    """With the PostgreSQL server stopped DATA gets 451; after it starts, 250 again."""
    daemon = start_daemon(write_config(tmp_path, base_config(new_pg_database(pg_server))))
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        client.ehlo()
        assert _transaction(client)[0] == 250
        pg_server.stop("fast")
        try:
            code, reply = _transaction(client, SIMPLE.replace(b"It jams", b"lost?"))
            assert code == 451, reply
            assert reply == TEMPFAIL_TEXT
        finally:
            pg_server.start()
        code, _ = _transaction(client, SIMPLE.replace(b"It jams", b"after restart"))
        assert code == 250
    bodies = [bytes(r.raw) for r in daemon.rows()]
    assert len(bodies) == 2
    assert not any(b"lost?" in b for b in bodies)
    assert b"after restart" in bodies[1]


def test_broken_logging_never_changes_the_reply(daemon: Any) -> None:
    """If logging itself fails, a committed message still gets 250 (never a 5xx and a resend)."""
    import structlog

    def explode(*_: object) -> dict[str, object]:
        raise RuntimeError("log sink broken")

    saved = structlog.get_config()
    structlog.configure(processors=[explode])
    try:
        with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
            client.ehlo()
            code, _ = _transaction(client)
            assert code == 250
    finally:
        structlog.configure(**saved)
    assert len(daemon.rows()) == 1
