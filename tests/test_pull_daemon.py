"""Pulled mailboxes inside the daemon: scheduled polls, the operator's view, several instances."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.config.settings import DatabaseSettings
from ingestd.db.engine import make_engine
from ingestd.db.tables import INBOUND, MAILBOX_CHECKPOINTS, MAILBOX_STATES
from tests.conftest import REPO, DaemonThread, base_config, new_pg_database, write_config
from tests.faultproxy import FaultProxy
from tests.imapserver import Dovecot, ImapUser
from tests.pull_contract import message
from tests.support.postgres import free_port
from tests.support.waiting import wait_for


def pulled_config(db_url: str, dovecot: Dovecot, user: ImapUser, secrets: Path, *,
                  port: int | None = None, interval: float = 1, **processing: Any
                  ) -> dict[str, Any]:
    password = secrets / "imap.pass"
    password.write_text(user.password)
    config = base_config(db_url)
    config["processing"] = {"workers": 1, "isolation": "thread",
                            "poll_interval_seconds": 0.2, **processing}
    config["mailboxes"].append({
        "name": "sales-nina", "addresses": ["nina@example.com"], "source": "imap",
        "poll_interval": interval,
        "imap": {"host": dovecot.host, "port": port or dovecot.port, "tls": "none",
                 "username": user.name, "password_file": str(password), "timeout_seconds": 5},
    })
    return config


def _count(engine: sa.Engine, table: sa.Table, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)
                                ).scalar_one())


def _mailboxes_list(config: Path, capsys: Any) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["mailboxes", "list", "--json", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    # The daemon thread's log lines may land in the same captured stdout: the listing is
    # the JSON array that starts a line.
    start = out.index("[\n") if out.startswith("[\n") else out.index("\n[\n") + 1
    records, _ = json.JSONDecoder().raw_decode(out[start:])
    return {r["name"]: r for r in records}


def test_the_daemon_polls_and_processes_pulled_mail(
        tmp_path: Path, db_url: str, dovecot: Dovecot, imap_user: ImapUser, start_daemon: Any,
        capsys: Any) -> None:
    """A pulled mailbox is polled on schedule; new mail becomes a ticket; `mailboxes list`
    shows it ok with what it imported, and the SMTP mailboxes beside it."""
    dovecot.append(imap_user.name, message("there before we connected"))
    path = write_config(tmp_path, pulled_config(db_url, dovecot, imap_user, tmp_path))
    daemon = start_daemon(path)
    wait_for(lambda: _count(daemon.engine, MAILBOX_CHECKPOINTS) == 1, 15, "the first poll")
    dovecot.append(imap_user.name, message("Quote for 20 laptops"))
    wait_for(lambda: _count(daemon.engine, INBOUND, INBOUND.c.status == "processed") == 1, 15,
             "the new message processed")
    rows = daemon.rows()
    assert [(r.source, r.mailbox, r.subject) for r in rows] == [
        ("imap", "sales-nina", "Quote for 20 laptops")]
    records = _mailboxes_list(path, capsys)
    assert records["sales-nina"]["status"] == "ok"
    assert records["sales-nina"]["imported"] == 1
    assert records["sales-nina"]["source"] == "imap"
    assert records["sales-nina"]["cursor_age_s"] is not None
    assert records["support"]["source"] == "smtp"


def test_mailboxes_poll_prints_what_it_imported(
        tmp_path: Path, sqlite_url: str, dovecot: Dovecot, imap_user: ImapUser,
        capsys: Any) -> None:
    """`ingestd mailboxes poll NAME` polls once now and says what it did; a disabled or
    unknown mailbox is refused or shown as such."""
    config = pulled_config(sqlite_url, dovecot, imap_user, tmp_path)
    path = write_config(tmp_path, config)
    assert main(["mailboxes", "poll", "sales-nina", "--config", str(path)]) == 0
    dovecot.append(imap_user.name, message())
    dovecot.append(imap_user.name, message())
    capsys.readouterr()
    assert main(["mailboxes", "poll", "sales-nina", "--json", "--config", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["status"], report["imported"]) == ("ok", 2)
    assert main(["mailboxes", "poll", "nobody", "--config", str(path)]) == 64
    assert main(["mailboxes", "poll", "support", "--config", str(path)]) == 64
    config["mailboxes"][-1]["enabled"] = False
    write_config(tmp_path, config)
    assert _mailboxes_list(path, capsys)["sales-nina"]["status"] == "disabled"
    assert main(["mailboxes", "poll", "sales-nina", "--config", str(path)]) == 64


def test_a_wrong_password_shows_needs_reauth(
        tmp_path: Path, sqlite_url: str, dovecot: Dovecot, imap_user: ImapUser,
        capsys: Any) -> None:
    """A refused login is needs_reauth in `mailboxes list`, with the server's reason."""
    path = write_config(tmp_path, pulled_config(sqlite_url, dovecot, imap_user, tmp_path))
    (tmp_path / "imap.pass").write_text("not-it")
    assert main(["mailboxes", "poll", "sales-nina", "--config", str(path)]) == 78
    record = _mailboxes_list(path, capsys)["sales-nina"]
    assert record["status"] == "needs_reauth"
    assert "AUTHENTICATIONFAILED" in record["last_error"]
    assert "not-it" not in json.dumps(record)


class Instance:
    """`ingestd run` in a process of its own."""

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        directory.mkdir()
        config["smtp"]["port"] = free_port()
        config["logging"] = {"level": "info", "format": "json"}
        path = write_config(directory, config)
        self.log = directory / "stdout.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingestd", "run", "--config", str(path)],
                stdout=out, stderr=subprocess.STDOUT, cwd=directory, start_new_session=True,
                env={**os.environ, "PYTHONPATH": str(REPO)})
        wait_for(lambda: self.proc.poll() is not None or b"daemon.ready" in self.log.read_bytes(),
                 30, "instance ready")
        assert self.proc.poll() is None, self.log.read_text()

    @property
    def identity(self) -> str:
        return f"{os.uname().nodename}:{self.proc.pid}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def test_two_instances_import_each_message_once_and_take_over(
        tmp_path: Path, pg_server: Any, dovecot: Dovecot, imap_user: ImapUser) -> None:
    """Two daemons on one PostgreSQL poll the same mailbox: every message is stored once.
    One dies holding the mailbox's lease (its server stalled mid-poll); the other imports
    new mail within 3 x poll_interval plus jitter of the lease's last renewal."""
    db_url = new_pg_database(pg_server)
    engine = make_engine(DatabaseSettings(url=db_url))
    interval = 2.0
    proxy = FaultProxy(dovecot.host, dovecot.port)
    instances: list[Instance] = []
    try:
        # a polls through the proxy (so it can be frozen mid-poll), b directly.
        instances.append(Instance(tmp_path / "a", pulled_config(
            db_url, dovecot, imap_user, tmp_path, port=proxy.port, interval=interval,
            workers=0)))
        wait_for(lambda: _count(engine, MAILBOX_CHECKPOINTS) == 1, 15, "the first poll")
        instances.append(Instance(tmp_path / "b", pulled_config(
            db_url, dovecot, imap_user, tmp_path, interval=interval, workers=0)))
        sent = 0
        for _ in range(4):
            for _ in range(5):
                dovecot.append(imap_user.name, message())
                sent += 1
            wait_for(lambda n=sent: _count(engine, INBOUND) == n, 20, "the batch imported")
        assert _count(engine, INBOUND) == sent
        with engine.connect() as conn:
            keys = list(conn.execute(sa.select(INBOUND.c.source_key)).scalars())
        assert len(set(keys)) == sent

        a = instances[0]
        proxy.stall()

        def a_holds_the_lease() -> bool:
            with engine.connect() as conn:
                holder = conn.execute(sa.select(MAILBOX_STATES.c.held_by)).scalar()
                return str(holder).startswith(a.identity + ":")

        wait_for(a_holds_the_lease, 20, "instance a stuck mid-poll holding the lease")
        with engine.connect() as conn:
            held_until = conn.execute(sa.select(MAILBOX_STATES.c.held_until)).scalar_one()
            db_now = conn.execute(sa.select(sa.func.now())).scalar_one()
        a.kill()
        dovecot.append(imap_user.name, message("after the kill"))
        started = time.monotonic()
        wait_for(lambda: _count(engine, INBOUND) == sent + 1, 30, "b took over")
        took = time.monotonic() - started
        # The lease ran out at held_until; b's next poll comes within an interval plus jitter.
        allowed = max(0.0, (held_until - db_now).total_seconds()) + interval * 1.1 + 2.0
        assert took <= min(allowed, 3 * interval + interval * 0.1 + 2.0), (took, allowed)
    finally:
        for instance in instances:
            instance.stop()
        proxy.close()
        engine.dispose()


def test_a_poll_killed_mid_import_loses_and_doubles_nothing(
        tmp_path: Path, db_url: str, dovecot: Dovecot, imap_user: ImapUser) -> None:
    """`ingestd mailboxes poll` killed with SIGKILL in the middle of a 60-message import: the
    next poll (once the dead poller's lease ran out) stores the rest, each message once."""
    config = pulled_config(db_url, dovecot, imap_user, tmp_path, interval=1)
    config["mailboxes"][-1]["imap"]["fetch_batch"] = 3
    path = write_config(tmp_path, config)
    poll = [sys.executable, "-m", "ingestd", "mailboxes", "poll", "sales-nina", "--config",
            str(path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(poll, env=env, check=True, capture_output=True, timeout=60)
    raws = [message() + b"x" * 20_000 + b"\r\n" for _ in range(60)]
    for raw in raws:
        dovecot.append(imap_user.name, raw)
    engine = make_engine(DatabaseSettings(url=db_url))
    try:
        victim = subprocess.Popen(poll, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_for(lambda: victim.poll() is not None or _count(engine, INBOUND) >= 6, 30,
                 "the first batches stored")
        victim.kill()
        victim.wait(10)
        partial = _count(engine, INBOUND)
        assert 0 < partial < 60, partial

        def finished() -> bool:
            done = subprocess.run(poll, env=env, capture_output=True, timeout=60)
            return done.returncode == 0 and _count(engine, INBOUND) == 60

        # Until the killed poller's lease (2 x poll_interval) runs out, polls find it held.
        wait_for(finished, 30, "a later poll finishing the import")
        with engine.connect() as conn:
            stored_raws = sorted(bytes(r) for r in conn.execute(sa.select(INBOUND.c.raw)).scalars())
        assert stored_raws == sorted(raws)
    finally:
        engine.dispose()


def test_one_stuck_mailbox_does_not_delay_the_others(
        tmp_path: Path, sqlite_url: str, dovecot: Dovecot, imap_user: ImapUser) -> None:
    """A mailbox whose server hangs mid-poll holds up only itself: another pulled mailbox
    keeps importing on schedule, and the daemon still stops promptly (the hung connection
    is dropped)."""
    proxy = FaultProxy(dovecot.host, dovecot.port)
    config = pulled_config(sqlite_url, dovecot, imap_user, tmp_path, workers=0)
    stuck = dict(config["mailboxes"][-1], name="sales-stuck", addresses=["stuck@example.com"])
    stuck["imap"] = dict(stuck["imap"], port=proxy.port, timeout_seconds=60)
    config["mailboxes"].append(stuck)
    daemon = DaemonThread(load_settings(write_config(tmp_path, config)))
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    stopped = False
    try:
        daemon.start()
        wait_for(lambda: _count(engine, MAILBOX_CHECKPOINTS) == 2, 15, "first polls")
        proxy.stall()
        for i in range(3):
            dovecot.append(imap_user.name, message())
            wait_for(lambda n=i + 1: _count(engine, INBOUND,
                                            INBOUND.c.mailbox == "sales-nina") == n,
                     10, "sales-nina importing while sales-stuck hangs")

        def stuck_polling() -> bool:
            with engine.connect() as conn:
                return conn.execute(sa.select(MAILBOX_STATES.c.held_by).where(
                    MAILBOX_STATES.c.mailbox == "sales-stuck")).scalar_one() is not None

        wait_for(stuck_polling, 10, "the stuck mailbox's poll hanging")
        started = time.monotonic()
        daemon.stop()
        stopped = True
        assert time.monotonic() - started < 8
        assert _count(engine, INBOUND, INBOUND.c.mailbox == "sales-stuck") == 0
    finally:
        if not stopped:
            daemon.stop()
        proxy.close()
        engine.dispose()
