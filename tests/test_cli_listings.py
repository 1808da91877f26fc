"""Listings and records through the service layer: totals, limits, ticket bodies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.db.engine import make_engine, read_only
from ingestd.errors import InvalidRequest, NotFound
from ingestd.services import messages, tickets
from tests.conftest import FIXTURES, write_config
from tests.processing_env import processing_config


def _config(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path, processing_config(db_url))


def _ingest(config: Path, *paths: Path, process: bool = True) -> None:
    flags = [] if process else ["--no-process"]
    assert main(["ingest", *flags, "--config", str(config), "--mailbox", "support",
                 *(str(p) for p in paths)]) == 0


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    capsys.readouterr()
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_services_count_every_matching_row(tmp_path: Path, db_url: str) -> None:
    """A listing returns at most its limit and the total the filter matched, on both back ends."""
    config = _config(tmp_path, db_url)
    _ingest(config, *(FIXTURES / n for n in ("simple-crlf.eml", "lf-endings.eml",
                                            "utf8-bom.eml")), process=False)
    _ingest(config, FIXTURES / "limit-too-deep.eml")
    engine = make_engine(load_settings(config).database)
    try:
        with read_only(engine) as conn:
            page = messages.list_messages(conn, limit=2)
            assert (len(page.records), page.total, page.truncated) == (2, 4, True)
            assert [r["id"] for r in page.records] == [4, 3]
            pending = messages.list_messages(conn, status="pending", limit=10)
            assert (len(pending.records), pending.total, pending.truncated) == (3, 3, False)
            held = messages.list_quarantined(conn, limit=0)
            assert (held.records, held.total) == ([], 1)
            assert messages.show_message(conn, 4)["status"] == "quarantined"
            assert messages.raw_message(conn, 1) == (FIXTURES / "simple-crlf.eml").read_bytes()
            with pytest.raises(NotFound):
                messages.show_message(conn, 99)
            with pytest.raises(NotFound):
                messages.raw_message(conn, 99)
            assert tickets.list_tickets(conn).total == 0
    finally:
        engine.dispose()


def test_set_status_refuses_unknown_status(tmp_path: Path, sqlite_url: str) -> None:
    """The service refuses a ticket status outside the contract, whatever its caller."""
    config = _config(tmp_path, sqlite_url)
    _ingest(config, FIXTURES / "new-ticket.eml")
    engine = make_engine(load_settings(config).database)
    try:
        with engine.begin() as conn, pytest.raises(InvalidRequest, match="open, closed"):
            tickets.set_status(conn, 1, "pending")
    finally:
        engine.dispose()


def test_listings_say_when_they_stop_at_their_limit(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """messages, tickets and quarantine lists note `showing N of M` on stderr only if truncated."""
    config = _config(tmp_path, sqlite_url)
    _ingest(config, FIXTURES / "new-ticket.eml", FIXTURES / "from-unknown.eml",
            FIXTURES / "limit-too-deep.eml", FIXTURES / "limit-too-many-parts.eml")
    c = ["--config", str(config)]
    cases: list[tuple[list[str], int, int]] = [
        (["messages", "list"], 4, 4),
        (["tickets", "list"], 2, 2),
        (["quarantine", "list"], 2, 2),
    ]
    for argv, shown, total in cases:
        out, err = _run(capsys, *argv, *c, "--limit", "1")
        assert f"showing 1 of {total}; use --limit" in err, argv
        _out, err = _run(capsys, *argv, *c, "--limit", str(shown))
        assert "showing" not in err, argv
        # --json stays a plain array of records on stdout; the note goes to stderr.
        out, err = _run(capsys, *argv, *c, "--limit", "1", "--json")
        assert isinstance(json.loads(out), list) and len(json.loads(out)) == 1, argv
        assert f"showing 1 of {total}" in err, argv
    out, _err = _run(capsys, "quarantine", "list", *c, "--limit", "1")
    assert out.splitlines()[-1] == "2 quarantined"


def test_thousands_are_grouped_in_the_note(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A long listing's note groups digits (`showing 50 of 1,200`)."""
    config = _config(tmp_path, sqlite_url)
    raw = (FIXTURES / "simple-crlf.eml").read_bytes()
    mbox = tmp_path / "many.mbox"
    mbox.write_bytes(b"".join(
        b"From x@example.com Tue Nov 24 10:00:00 2026\n"
        + raw.replace(b"Subject:", f"X-N: {i}\r\nSubject:".encode(), 1) + b"\n"
        for i in range(1200)
    ))
    _ingest(config, mbox, process=False)
    _out, err = _run(capsys, "messages", "list", "--config", str(config))
    assert err.strip() == "showing 50 of 1,200; use --limit"


def test_ticket_show_prints_each_action_body_indented(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tickets show` prints every action's text body, indented, after its subject."""
    config = _config(tmp_path, sqlite_url)
    hostile = tmp_path / "escape.eml"
    hostile.write_bytes(b"From: Bob <bob@example.org>\r\nTo: support@example.com\r\n"
                        b"Subject: Screen\x1b[2J wiped\r\nMessage-ID: <esc-1@example.org>\r\n"
                        b"\r\nFirst line\r\n\r\n\x1b]0;owned\x07Second line\r\n")
    _ingest(config, FIXTURES / "new-ticket.eml", hostile)
    out, _err = _run(capsys, "tickets", "show", "1", "--config", str(config))
    assert ("   subject: Printer on floor 2 is broken\n\n"
            "   The printer jams on every page.\n") in out
    out, _err = _run(capsys, "tickets", "show", "2", "--config", str(config))
    assert "\x1b" not in out and "\x07" not in out
    assert ("   subject: Screen\\x1b[2J wiped\n\n"
            "   First line\n\n   \\x1b]0;owned\\x07Second line") in out
    record: dict[str, Any] = json.loads(
        _run(capsys, "tickets", "show", "2", "--json", "--config", str(config))[0])
    assert "\x1b]0;owned" in record["actions"][0]["body_text"]  # JSON keeps the data as it is
