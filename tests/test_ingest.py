"""`ingestd ingest`: files, directories, mbox files and stdin through the intake."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from tests.conftest import FIXTURES, base_config, inbound_rows, write_config


def rows_of(config_file: Path) -> list[Any]:
    engine = make_engine(load_settings(config_file).database)
    try:
        return inbound_rows(engine)
    finally:
        engine.dispose()


def ingest(config_file: Path, *args: str) -> int:
    return main(["ingest", "--config", str(config_file), "--mailbox", "support", "--no-process",
                 *args])


def test_eml_file_is_stored_byte_exact(config_file: Path) -> None:
    """An .eml file becomes one pending row holding exactly the file's bytes."""
    path = FIXTURES / "simple-crlf.eml"
    assert ingest(config_file, str(path)) == 0
    rows = rows_of(config_file)
    assert len(rows) == 1
    assert bytes(rows[0].raw) == path.read_bytes()
    assert (rows[0].source, rows[0].mailbox, rows[0].status) == ("file", "support", "pending")
    assert rows[0].message_id == "<printer-1@acme.example>"


def test_lf_endings_are_kept_and_bom_removed(config_file: Path) -> None:
    """LF files are stored as they are; a leading UTF-8 BOM is not part of the message."""
    lf, bom = FIXTURES / "lf-endings.eml", FIXTURES / "utf8-bom.eml"
    assert ingest(config_file, str(lf), str(bom)) == 0
    rows = rows_of(config_file)
    assert bytes(rows[0].raw) == lf.read_bytes()
    assert rows[0].subject == "Café machine"
    assert bytes(rows[1].raw) == bom.read_bytes()[3:]
    assert rows[1].subject == "Saved by a Windows editor"


def test_mbox_splits_only_at_envelope_lines_after_blank_lines(config_file: Path) -> None:
    """An mbox yields one row per message; body lines starting 'From ' split nothing."""
    assert ingest(config_file, str(FIXTURES / "three-messages.mbox")) == 0
    rows = rows_of(config_file)
    assert [r.subject for r in rows] == ["first", "second", "third"]
    first = bytes(rows[0].raw)
    assert first.startswith(b"From: alice@acme.example\n")
    assert b"From the desk of Alice" in first
    assert first.endswith(b"From nobody here, says a body line after a blank line, "
                          b"but without an asctime date.\n")
    assert bytes(rows[1].raw).startswith(b"From  : bob@acme.example\n")
    assert b">From quoted line kept as it is." in bytes(rows[1].raw)
    assert bytes(rows[2].raw).endswith(b"Third body.\n")


def test_directories_are_read_recursively(config_file: Path, tmp_path: Path) -> None:
    """A directory argument takes every file under it, in sorted order."""
    tree = tmp_path / "mail"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.eml").write_bytes((FIXTURES / "simple-crlf.eml").read_bytes())
    (tree / "sub" / "b.eml").write_bytes((FIXTURES / "lf-endings.eml").read_bytes())
    assert ingest(config_file, str(tree)) == 0
    assert [r.message_id for r in rows_of(config_file)] == [
        "<printer-1@acme.example>", "<cafe-1@acme.example>"]


def test_not_mail_is_refused_and_the_rest_stored(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file without a header block is refused with a reason; exit 65; others stored."""
    code = ingest(config_file, str(FIXTURES / "not-mail.txt"), str(FIXTURES / "simple-crlf.eml"))
    assert code == 65
    captured = capsys.readouterr()
    assert "stored 1, refused 1 (not mail)" in captured.out
    assert "not-mail.txt: refused: no header block: first line is 'Hello,'" in captured.err
    assert [r.message_id for r in rows_of(config_file)] == ["<printer-1@acme.example>"]


def test_json_reports_each_input(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives per-input outcomes with ids and reasons."""
    code = ingest(config_file, "--json", str(FIXTURES / "three-messages.mbox"),
                  str(FIXTURES / "not-mail.txt"))
    assert code == 65
    report = json.loads(capsys.readouterr().out)
    assert (report["stored"], report["refused"]) == (3, 1)
    origins = [r["origin"] for r in report["results"]]
    assert origins[0].endswith("three-messages.mbox#1")
    assert all(r["id"] for r in report["results"][:3])
    assert report["results"][3]["outcome"] == "refused"


def test_stdin(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'-' reads one message from stdin, recorded with source 'stdin' and the envelope."""
    data = (FIXTURES / "simple-crlf.eml").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert ingest(config_file, "--envelope-from", "alice@acme.example",
                  "--envelope-to", "support@example.com", "-") == 0
    row = rows_of(config_file)[0]
    assert (row.source, bytes(row.raw)) == ("stdin", data)
    assert (row.envelope_from, row.envelope_to) == ("alice@acme.example", ["support@example.com"])


def test_unknown_mailbox_exits_75_so_the_mta_keeps_the_mail(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown --mailbox is the MTA's configuration, not the mail's fault: 75, nothing stored."""
    code = main(["ingest", "--config", str(config_file), "--mailbox", "nope",
                 str(FIXTURES / "simple-crlf.eml")])
    assert code == 75
    assert "known: support, sales" in capsys.readouterr().err


def test_unreadable_input_exits_66(config_file: Path, tmp_path: Path) -> None:
    """A path that does not exist is reported; exit 66."""
    assert ingest(config_file, str(tmp_path / "missing.eml")) == 66


def test_header_nul_never_reaches_the_log_fields(config_file: Path) -> None:
    """NUL bytes and folding in headers are cleaned from subject; raw is untouched."""
    path = FIXTURES / "header-nul.eml"
    assert ingest(config_file, str(path)) == 0
    row = rows_of(config_file)[0]
    assert "\x00" not in row.subject
    assert row.subject.startswith("nulinside and line")
    assert bytes(row.raw) == path.read_bytes()


def _cli(config: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ingestd", "--config", str(config), *args],
        input=stdin, capture_output=True, timeout=60, check=False,
    )


def test_pipe_exit_codes_for_an_mta(tmp_path: Path) -> None:
    """As an MTA pipe: 0 when stored, 75 when the database refuses, 65 for non-mail."""
    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["database"]["busy_timeout_ms"] = 100
    path = write_config(tmp_path, config)
    message = (FIXTURES / "simple-crlf.eml").read_bytes()
    ok = _cli(path, "ingest", "--mailbox", "support", "-", stdin=message)
    assert ok.returncode == 0, ok.stderr
    assert _cli(path, "ingest", "--mailbox", "support", "-", stdin=b"hello\n").returncode == 65
    blocker = sqlite3.connect(tmp_path / "ingestd.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        locked = _cli(path, "ingest", "--mailbox", "support", "-", stdin=message)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert locked.returncode == 75, locked.stderr
    assert b"database" in locked.stderr
    assert len(rows_of(path)) == 1


def test_odd_first_lines_are_taken_as_mail(config_file: Path, tmp_path: Path) -> None:
    """Real mail behind a dateless 'From ' line, blank padding, or old Mac CR endings is taken."""
    cases = {
        "dateless.eml": b"From someone@example.net\nFrom: a@b.example\nSubject: one\n\nx\n",
        "padded.eml": b"   \r\n\r\nFrom: a@b.example\r\nSubject: two\r\n\r\nx\r\n",
        "mac.eml": b"From MAILER-DAEMON  Sun Sep  7 21:40:07 2008\rFrom: a@b.example\r"
                   b"Subject: three\r\rx\r",
        "thunderbird.mbox": b"From - \nFrom: a@b.example\nSubject: four\n\nx\n\n"
                            b"From - \nFrom: c@d.example\nSubject: five\n\ny\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert ingest(config_file, *(str(tmp_path / n) for n in cases)) == 0
    rows = rows_of(config_file)
    assert [r.subject for r in rows] == ["one", "two", "three", "four", "five"]
    assert bytes(rows[0].raw).startswith(b"From: a@b.example\n")
    assert bytes(rows[1].raw).startswith(b"From: a@b.example\r\n")
    assert bytes(rows[3].raw) == b"From: a@b.example\nSubject: four\n\nx\n"


def test_8bit_subject_in_the_log_is_read_like_processing_reads_it(config_file: Path) -> None:
    """A raw Latin-1 subject is logged as 'Grüße', not with replacement characters."""
    import tempfile

    raw = b"From: a@b.example\r\nSubject: Gr\xfc\xdfe =?utf-8?q?aus_K=C3=B6ln?=\r\n\r\nx\r\n"
    with tempfile.NamedTemporaryFile(suffix=".eml") as handle:
        handle.write(raw)
        handle.flush()
        assert ingest(config_file, handle.name) == 0
    assert rows_of(config_file)[0].subject == "Grüße aus Köln"
