"""Rules reloaded while `ingestd run` works with worker processes: on SIGHUP and on a file
change; an invalid new file keeps the old rules and logs why."""

from __future__ import annotations

import signal
import smtplib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ingestd.config.settings import DatabaseSettings
from ingestd.db.engine import make_engine
from ingestd.db.tables import INBOUND, TICKETS
from tests.conftest import write_config
from tests.processing_env import processing_config
from tests.support.logged_daemon import events, start_logged_daemon
from tests.support.postgres import free_port
from tests.support.waiting import wait_for
from tests.test_rules import mail


def _rules(directory: Path, priority: str, pattern: str = ".") -> None:
    (directory / "10.yaml").write_text(
        f"- name: priority\n  match: {{subject: {{matches: '{pattern}'}}}}\n"
        f"  actions: [{{set_priority: {priority}}}]\n")


_events = events


def test_rules_reload_on_sighup_and_file_change_with_worker_processes(
        tmp_path: Path, sqlite_url: str) -> None:
    """SIGHUP applies the new rules to the next message (worker processes replaced); an
    invalid file is refused with its problem and the old rules stay; a changed file is
    picked up without a signal."""
    rules = tmp_path / "rules"
    rules.mkdir()
    _rules(rules, "low")
    config = processing_config(sqlite_url, workers=1, isolation="process")
    config["rules_dir"] = "rules"
    config["smtp"]["port"] = port = free_port()
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    daemon, _, log = start_logged_daemon(config, tmp_path, write_config)
    sent = 0

    def priority_of_next(subject: str) -> str:
        nonlocal sent
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
            client.sendmail("relay@example.net", ["support@example.com"],
                            mail(subject=subject, body=subject))
        sent += 1

        def ticket_priority() -> Any:
            with engine.connect() as conn:
                row = conn.execute(sa.select(TICKETS.c.priority).join(
                    INBOUND, INBOUND.c.ticket_id == TICKETS.c.id).where(
                    INBOUND.c.subject == subject)).first()
            return row

        return str(wait_for(ticket_priority, 30, f"{subject} processed")[0])

    try:
        wait_for(lambda: daemon.poll() is not None or _events(log, "worker.ready"), 30,
                 "daemon and worker ready")
        assert daemon.poll() is None, log.read_text()
        assert priority_of_next("first") == "low"

        _rules(rules, "high")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: _events(log, "config.reloaded"), 20, "the reload")
        assert priority_of_next("second") == "high"
        assert _events(log, "worker.replaced"), "worker processes were not replaced"

        _rules(rules, "urgent", pattern="(")
        daemon.send_signal(signal.SIGHUP)
        refused = wait_for(lambda: _events(log, "config.reload_refused"), 20, "the refusal")
        assert any("10.yaml:2" in p and "regular expression" in p
                   for p in refused[0]["problems"]), refused
        assert priority_of_next("third") == "high"

        reloads = len(_events(log, "config.reloaded"))
        _rules(rules, "urgent")
        wait_for(lambda: len(_events(log, "config.reloaded")) > reloads, 20,
                 "the reload after a file change")
        assert _events(log, "config.reloaded")[-1]["why"] == "rule files changed"
        assert priority_of_next("fourth") == "urgent"
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        engine.dispose()
    assert daemon.returncode == 0
