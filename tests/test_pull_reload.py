"""SIGHUP reloads pulled mailboxes' settings (from their next poll) and says what waits for a
restart; an invalid configuration keeps everything as it was."""

from __future__ import annotations

import signal
from pathlib import Path

from ingestd.config.settings import DatabaseSettings
from ingestd.db.engine import make_engine
from ingestd.db.tables import INBOUND, MAILBOX_CHECKPOINTS
from tests.conftest import write_config
from tests.imapserver import Dovecot, ImapUser
from tests.pull_contract import message
from tests.support.logged_daemon import events as _events
from tests.support.logged_daemon import start_logged_daemon
from tests.support.postgres import free_port
from tests.support.waiting import wait_for
from tests.test_pull_daemon import _count, pulled_config


def test_sighup_reloads_a_mailboxs_poll_settings(tmp_path: Path, sqlite_url: str,
                                                 dovecot: Dovecot, imap_user: ImapUser
                                                 ) -> None:
    config = pulled_config(sqlite_url, dovecot, imap_user, tmp_path, interval=3600)
    config["smtp"]["port"] = free_port()
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    daemon, _, log = start_logged_daemon(config, tmp_path, write_config)
    try:
        wait_for(lambda: daemon.poll() is not None or _events(log, "daemon.ready"), 30,
                 "the daemon ready")
        wait_for(lambda: daemon.poll() is not None
                 or _count(engine, MAILBOX_CHECKPOINTS) == 1, 30, "the first poll")
        assert daemon.poll() is None, log.read_text()
        dovecot.append(imap_user.name, message("Waiting for the next poll"))

        # Invalid: refused with its problem, nothing changes.
        config["mailboxes"][-1]["poll_interval"] = 0
        write_config(tmp_path, config)
        daemon.send_signal(signal.SIGHUP)
        refused = wait_for(lambda: _events(log, "config.reload_refused"), 20, "the refusal")
        assert any("poll_interval" in p for p in refused[0]["problems"]), refused

        # A shorter interval applies at once; a listener change waits for a restart.
        config["mailboxes"][-1]["poll_interval"] = 1
        config["smtp"]["max_connections"] = 77
        write_config(tmp_path, config)
        daemon.send_signal(signal.SIGHUP)
        reloaded = wait_for(lambda: _events(log, "config.reloaded"), 20, "the reload")
        assert reloaded[0]["mailboxes_changed"] == ["sales-nina (poll_interval)"]
        waiting = _events(log, "config.restart_needed")
        assert waiting and waiting[0]["keys"] == ["smtp"], waiting
        wait_for(lambda: _count(engine, INBOUND, INBOUND.c.source == "imap") == 1, 20,
                 "the mail imported at the new interval")
        assert not _events(log, "worker.replaced")  # the rules did not change
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        engine.dispose()
    assert daemon.returncode == 0, log.read_text()[-2000:]


def test_merged_settings_takes_only_what_a_reload_may_change(tmp_path: Path,
                                                             sqlite_url: str) -> None:
    from ingestd.config import load_settings
    from ingestd.reload import merged_settings
    from tests.processing_env import processing_config

    config = processing_config(sqlite_url)
    old = load_settings(write_config(tmp_path, config))
    config["mailboxes"][0]["addresses"] = ["other@example.com"]
    config["mailboxes"][1]["poll_interval"] = 30
    config["database"]["busy_timeout_ms"] = 300
    new = load_settings(write_config(tmp_path, config))
    merged, pulls, waiting = merged_settings(old, new)
    assert pulls == ["sales (poll_interval)"]
    assert merged.mailboxes[1].poll_interval == 30
    assert merged.mailboxes[0].addresses == old.mailboxes[0].addresses
    assert merged.database == old.database
    assert waiting == ["mailboxes.support", "database"]


def test_enabling_the_first_pulled_mailbox_is_named_as_needing_a_restart(
        tmp_path: Path, sqlite_url: str) -> None:
    """With no mailbox polled at start there is no poller to take it: the reload says so
    rather than claiming the change was applied. (Found by review.)"""
    import asyncio

    from structlog.testing import capture_logs

    from ingestd.config import load_settings
    from ingestd.reload import RulesReloader
    from tests.processing_env import processing_config

    secret = tmp_path / "imap.pass"
    secret.write_text("x")
    config = processing_config(sqlite_url)
    config["mailboxes"].append({
        "name": "later", "addresses": ["later@example.com"], "source": "imap",
        "enabled": False, "imap": {"host": "127.0.0.1", "username": "u",
                                   "password_file": str(secret), "tls": "none"}})
    old = load_settings(write_config(tmp_path, config))
    config["mailboxes"][-1]["enabled"] = True
    new = load_settings(write_config(tmp_path, config))
    reloader = RulesReloader(old, lambda: new, [], asyncio.Event(), pollers=None)
    with capture_logs() as logs:
        assert asyncio.run(reloader.reload("SIGHUP"))
    waiting = [e for e in logs if e["event"] == "config.restart_needed"]
    assert waiting and "mailboxes (the first pulled mailbox to poll)" in waiting[0]["keys"]
