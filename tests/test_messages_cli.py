"""`ingestd messages list/show`: the inbound log and the raw bytes."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ingestd.cli.main import main
from tests.conftest import FIXTURES
from tests.test_smtp_intake import send

LOG_KEYS = {
    "id", "source", "mailbox", "envelope_from", "envelope_to", "message_id", "subject",
    "received_at", "status", "reason", "attempts", "ticket_id", "action_id", "inbox_item_id",
    "duplicate_of",
}


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_list_and_show_over_smtp_and_files(
    daemon: Any, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Messages from SMTP and ingest appear in the log with the contract's keys."""
    send(daemon.port, ["sales@example.com"], (FIXTURES / "simple-crlf.eml").read_bytes())
    main(["ingest", "--no-process", "--config", str(config_file), "--mailbox", "support",
          str(FIXTURES / "lf-endings.eml")])
    capsys.readouterr()
    records = _json(capsys, "messages", "list", "--json", "--config", str(config_file))
    assert [r["source"] for r in records] == ["file", "smtp"]  # newest first
    assert all(set(r) >= LOG_KEYS for r in records)
    smtp = records[1]
    assert smtp["mailbox"] == "sales"
    assert smtp["envelope_to"] == ["sales@example.com"]
    assert smtp["status"] == "pending" and smtp["attempts"] == 0
    assert smtp["subject"] == "Printer on floor 2 is broken"
    one = _json(capsys, "messages", "show", str(smtp["id"]), "--json", "--config",
                str(config_file))
    assert one["id"] == smtp["id"] and set(one) >= LOG_KEYS


def test_list_filters(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--mailbox, --status and --limit narrow the listing."""
    for mailbox in ("support", "sales", "support"):
        main(["ingest", "--no-process", "--config", str(config_file), "--mailbox", mailbox,
              str(FIXTURES / "simple-crlf.eml")])
    capsys.readouterr()
    base = ["messages", "list", "--json", "--config", str(config_file)]
    assert len(_json(capsys, *base, "--mailbox", "support")) == 2
    assert len(_json(capsys, *base, "--limit", "1")) == 1
    assert len(_json(capsys, *base, "--status", "pending")) == 3
    assert _json(capsys, *base, "--status", "quarantined") == []


def test_show_raw_is_byte_exact(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--raw writes exactly the stored bytes (CRLF, 8-bit, NUL included)."""
    raw = (FIXTURES / "header-nul.eml").read_bytes() + "é\r\n".encode("latin-1")
    path = config_file.parent / "odd.eml"
    path.write_bytes(raw)
    main(["ingest", "--no-process", "--config", str(config_file), "--mailbox", "support",
          str(path)])
    capsys.readouterr()
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    assert main(["messages", "show", "1", "--raw", "--config", str(config_file)]) == 0
    assert out.getvalue() == raw


def test_show_unknown_id(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Showing an id that does not exist is a clear error, exit 65."""
    assert main(["messages", "show", "999", "--config", str(config_file)]) == 65
    assert "no inbound message with id 999" in capsys.readouterr().err
