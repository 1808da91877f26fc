"""Several `ingestd run` instances on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiosmtplib
import sqlalchemy as sa

from ingestd.config.settings import DatabaseSettings
from ingestd.db.engine import make_engine
from tests.conftest import REPO, new_pg_database, write_config
from tests.processing_env import processing_config
from tests.support.postgres import free_port
from tests.support.waiting import wait_for

MESSAGES = 300


def _message(i: int, extra_header: str = "") -> bytes:
    return (
        f"From: Sender {i} <sender{i}@load.example>\r\nTo: support@example.com\r\n"
        f"Subject: Load test message {i}\r\nMessage-ID: <load-{i}@load.example>\r\n"
        f"{extra_header}\r\nBody of message {i}.\r\n"
    ).encode()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Instance:
    def __init__(self, tmp_path: Path, name: str, db_url: str, script: list[str]) -> None:
        self.port = free_port()
        config = processing_config(db_url, workers=2, lease_seconds=4, timeout_seconds=3,
                                   isolation="process")
        config["smtp"]["port"] = self.port
        config["logging"] = {"level": "info", "format": "json"}
        directory = tmp_path / name
        self.log = directory / "stdout.log"
        directory.mkdir()
        path = write_config(directory, config)
        # KILL_SCOPE=group: the test hook kills the whole instance, workers and all.
        env = {**os.environ, "PYTHONPATH": str(REPO), "KILL_SCOPE": "group",
               "KILL_ONCE_FLAG": str(tmp_path / "killed.flag")}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *script, "run", "--config", str(path)],
                stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=directory,
                start_new_session=True)
        # Listening, and its worker processes up (they start after the port opens).
        wait_for(lambda: self.proc.poll() is not None
                 or (_listening(self.port) and self._count('"event": "worker.ready"') == 2),
                 timeout=60, what=f"{name} listening with its workers ready")
        assert self.proc.poll() is None, f"{name} exited with {self.proc.returncode}"

    def _count(self, fragment: str) -> int:
        lines = self.log.read_text(errors="replace").splitlines()
        return sum(fragment in line for line in lines)

    def processed(self) -> int:
        """How many message.processed events this instance logged."""
        return self._count('"event": "message.processed"')

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=30)
        return self.proc.returncode


async def _send_all(ports: list[int], messages: list[bytes]) -> None:
    """Send every message, spreading them over the instances, 16 connections at a time."""
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for i, data in enumerate(messages):
        queue.put_nowait((ports[i % len(ports)], data))

    async def sender() -> None:
        while not queue.empty():
            port, data = queue.get_nowait()
            await aiosmtplib.send(data, sender="relay@example.net",
                                  recipients=["support@example.com"], hostname="127.0.0.1",
                                  port=port, timeout=30)

    await asyncio.gather(*(sender() for _ in range(16)))


def _counts(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            "tickets": conn.execute(sa.text("SELECT count(*) FROM tickets")).scalar_one(),
            "actions": conn.execute(sa.text("SELECT count(*) FROM actions")).scalar_one(),
            "statuses": dict(conn.execute(sa.text(
                "SELECT status, count(*) FROM inbound_messages GROUP BY status")).all()),
            "per_message": conn.execute(sa.text(
                "SELECT max(c) FROM (SELECT count(*) AS c FROM actions "
                "GROUP BY inbound_message_id) AS x")).scalar_one(),
        }


def test_two_instances_process_every_message_exactly_once(tmp_path: Path, pg_server: Any
                                                          ) -> None:
    """300 messages over SMTP to two instances: 300 tickets, one action each, none pending."""
    db_url = new_pg_database(pg_server)
    engine = make_engine(DatabaseSettings(url=db_url))
    instances = [Instance(tmp_path, n, db_url, ["-m", "ingestd"]) for n in ("a", "b")]
    try:
        asyncio.run(_send_all([i.port for i in instances],
                              [_message(i) for i in range(MESSAGES)]))
        wait_for(lambda: _counts(engine)["statuses"].get("processed") == MESSAGES, timeout=120,
                 what="every message processed")
        counts = _counts(engine)
    finally:
        codes = [i.stop() for i in instances]
        engine.dispose()
    per_instance = [i.processed() for i in instances]
    assert codes == [0, 0]
    assert counts["statuses"] == {"processed": MESSAGES}
    assert (counts["tickets"], counts["actions"], counts["per_message"]) == (
        MESSAGES, MESSAGES, 1)
    assert sum(per_instance) == MESSAGES
    assert min(per_instance) > 0, f"one instance processed nothing: {per_instance}"


def test_killed_instance_is_taken_over_after_its_lease(tmp_path: Path, pg_server: Any) -> None:
    """One instance dies holding a claim; the other processes the message after the lease."""
    db_url = new_pg_database(pg_server)
    engine = make_engine(DatabaseSettings(url=db_url))
    script = [str(REPO / "tests" / "support" / "crashing_daemon.py")]
    instances = [Instance(tmp_path, n, db_url, script) for n in ("a", "b")]
    try:
        normal = [_message(i) for i in range(40)]
        killer = _message(999, "X-Test-Kill: once\r\n")
        asyncio.run(_send_all([i.port for i in instances], [*normal[:20], killer, *normal[20:]]))
        wait_for(lambda: _counts(engine)["statuses"].get("processed") == 41, timeout=120,
                 what="every message processed, the killer's too")
        dead = [i for i in instances if i.proc.poll() is not None]
        with engine.connect() as conn:
            attempts = conn.execute(sa.text(
                "SELECT attempts FROM inbound_messages WHERE message_id = '<load-999@load.example>'"
            )).scalar_one()
        counts = _counts(engine)
    finally:
        codes = [i.stop() for i in instances]
        engine.dispose()
    assert len(dead) == 1 and dead[0].proc.returncode == -signal.SIGKILL
    assert sorted(codes, key=str) == sorted([0, -signal.SIGKILL], key=str)
    assert attempts == 2
    assert (counts["tickets"], counts["actions"], counts["per_message"]) == (41, 41, 1)
