"""Quarantine, retries, attachments and ticket listings from the command line."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from ingestd.workers.worker import Worker
from tests.conftest import FIXTURES, inbound_rows, write_config
from tests.processing_env import import_directory, processing_config


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    path = write_config(tmp_path, processing_config(db_url, max_attempts=3,
                                                       retry_delays_seconds=[0]))
    import_directory(path)
    return path


def _ingest(config: Path, *names: str, mailbox: str = "support", process: bool = True) -> None:
    flags = [] if process else ["--no-process"]
    paths = [str(FIXTURES / n) for n in names]
    assert main(["ingest", *flags, "--config", str(config), "--mailbox", mailbox, *paths]) in (0,)


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_failing_stage_is_retried_then_quarantined_with_reason(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message failing every attempt is quarantined as `attempts: <stage>: <error>`."""
    _ingest(config, "new-ticket.eml", mailbox="sales", process=False)
    # The sales mailbox is removed from the configuration while its mail waits.
    data = yaml.safe_load(config.read_text())
    data["mailboxes"] = [m for m in data["mailboxes"] if m["name"] != "sales"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data))
    settings = load_settings(broken)
    engine = make_engine(settings.database)
    try:
        worker = Worker(engine, settings, "test-worker")
        results = [worker.run_once() for _ in range(4)]
        assert [r[1].result for r in results if r] == ["failed", "failed", "quarantined"]
        assert results[3] is None
        row = inbound_rows(engine)[0]
        assert row.status == "quarantined"
        assert row.reason == ("attempts: load: LookupError: mailbox 'sales' is not "
                              "configured any more")
        listed = _json(capsys, "quarantine", "list", "--json", "--config", str(config))
        assert [r["id"] for r in listed] == [row.id]
        assert main(["quarantine", "retry", str(row.id), "--config", str(config)]) == 0
        row = inbound_rows(engine)[0]
        assert (row.status, row.attempts, row.reason) == ("pending", 0, None)
        # With the mailbox configured again, the message is processed.
        worker = Worker(engine, load_settings(config), "test-worker")
        assert worker.run_once()[1].result == "ticket_created"
    finally:
        engine.dispose()


def test_quarantine_retry_all(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`quarantine retry --all` sends every quarantined message back to pending."""
    _ingest(config, "limit-too-deep.eml", "limit-too-many-parts.eml")
    assert len(_json(capsys, "quarantine", "list", "--json", "--config", str(config))) == 2
    capsys.readouterr()
    assert main(["quarantine", "retry", "--all", "--config", str(config)]) == 0
    assert "2 message(s) back to pending" in capsys.readouterr().out
    statuses = _json(capsys, "messages", "list", "--json", "--config", str(config))
    assert {r["status"] for r in statuses} == {"pending"}


def test_retry_of_a_message_not_quarantined_is_an_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retrying an id that is not quarantined exits 65 and changes nothing."""
    _ingest(config, "new-ticket.eml")
    assert main(["quarantine", "retry", "1", "--config", str(config)]) == 65
    assert "not quarantined" in capsys.readouterr().err


def test_tickets_json_contract_and_attachment_bytes(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """tickets list/show --json carry the contract's keys; attachments get is byte-exact."""
    _ingest(config, "hostile-attachment-names.eml", "new-ticket.eml")
    listed = _json(capsys, "tickets", "list", "--json", "--config", str(config))
    keys = {"id", "type", "status", "summary", "mailbox", "user_email", "client", "site",
            "agent_email", "priority", "category", "team", "tags", "fields", "vip",
            "linked_ticket_id", "created_at", "updated_at"}
    assert [set(t) for t in listed] == [keys, keys]
    assert _json(capsys, "tickets", "list", "--json", "--status", "closed",
                 "--config", str(config)) == []
    shown = _json(capsys, "tickets", "show", "1", "--json", "--config", str(config))
    action = shown["actions"][0]
    assert set(action) == {"id", "kind", "sender_kind", "user_created", "from", "from_name",
                           "to", "cc", "reply_to", "subject", "body_text", "message_id",
                           "created_at", "sender_verified", "attachments"}
    attachment = action["attachments"][0]
    assert set(attachment) == {"id", "filename", "content_type", "size", "sha256",
                               "content_id", "inline"}
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    assert main(["attachments", "get", str(attachment["id"]), "--config", str(config)]) == 0
    assert out.getvalue() == b"evil cron line\n"


def test_unknown_ticket_is_a_clear_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """show / set-status / add-outgoing on a missing ticket exit 65 with a reason."""
    for argv in (["tickets", "show", "42"], ["tickets", "set-status", "42", "closed"],
                 ["tickets", "add-outgoing", "42", "--message-id", "x@y", "--to", "a@b"]):
        assert main([*argv, "--config", str(config)]) == 65
        assert "no ticket with id 42" in capsys.readouterr().err


def test_processed_message_cannot_be_reprocessed(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reprocessing a processed message is refused: it would double the ticket."""
    _ingest(config, "new-ticket.eml")
    assert main(["messages", "reprocess", "1", "--config", str(config)]) == 65
    assert "only duplicate, ignored or quarantined" in capsys.readouterr().err


def test_database_lock_is_retried_and_not_the_messages_fault(tmp_path: Path) -> None:
    """A locked database during processing is retried with back-off; attempts stay at 1."""
    import sqlite3
    import threading

    import structlog

    from tests.support.waiting import wait_for

    config = processing_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["database"]["busy_timeout_ms"] = 50
    path = write_config(tmp_path, config)
    _ingest(path, "new-ticket.eml", process=False)
    settings = load_settings(path)
    engine = make_engine(settings.database)
    worker = Worker(engine, settings, "test-worker")
    claim = worker.claim()
    assert claim is not None and claim.attempts == 1
    blocker = sqlite3.connect(tmp_path / "ingestd.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    results: list[Any] = []
    try:
        with structlog.testing.capture_logs() as events:
            thread = threading.Thread(target=lambda: results.append(worker.process(claim)))
            thread.start()
            wait_for(lambda: any(e["event"] == "message.retrying" for e in events),
                     what="a retry after the lock")
            blocker.execute("ROLLBACK")
            thread.join(30)
    finally:
        blocker.close()
    assert results and results[0].result == "ticket_created"
    row = inbound_rows(engine)[0]
    assert (row.status, row.attempts) == ("processed", 1)
    engine.dispose()
