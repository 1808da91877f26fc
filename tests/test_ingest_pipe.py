"""`ingestd ingest -` as an MTA pipe transport: exit codes an MTA reads right, bounded memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, REPO, base_config, inbound_rows, write_config

MESSAGE = (FIXTURES / "simple-crlf.eml").read_bytes()
# Runs argv, passes its output on, and prints its peak RSS in KiB as the last line.
_PEAK = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stderr=subprocess.DEVNULL, stdout=subprocess.PIPE)
out = child.stdout.read()
_, status, usage = os.wait4(child.pid, 0)
sys.stdout.buffer.write(out + b"\\n" + str(usage.ru_maxrss).encode() + b"\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _split_peak(output: bytes) -> tuple[bytes, int]:
    """(the command's own output, its peak RSS in KiB) from what _PEAK printed."""
    body, peak = output.rstrip(b"\n").rsplit(b"\n", 1)
    return body, int(peak)
# Run like `ingestd ingest`, with one function swapped for a failure first.
_INJECT = """
import sys
import ingestd.db.direct as target
def broken(*args, **kwargs):
    raise {error}
target.DirectStore.{name} = broken
from ingestd.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _pipe(config: Path, *args: str, stdin: bytes = MESSAGE, inject: tuple[str, str] | None = None
          ) -> subprocess.CompletedProcess[bytes]:
    prefix = ([sys.executable, "-c", _INJECT.format(name=inject[0], error=inject[1])]
              if inject else [sys.executable, "-m", "ingestd"])
    return subprocess.run(
        [*prefix, "ingest", "--config", str(config), *args],
        input=stdin, capture_output=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, base_config(f"sqlite:///{tmp_path}/ingestd.db"))


def test_a_bug_exits_75_so_the_mta_keeps_the_mail(config: Path) -> None:
    """An unexpected exception while storing (an injected bug) exits 75, not 1."""
    result = _pipe(config, "--mailbox", "support", "-",
                   inject=("insert", "RuntimeError('injected bug')"))
    assert result.returncode == 75, result.stderr
    assert b"injected bug" in result.stderr


def test_a_storage_failure_exits_75(config: Path) -> None:
    """The database refusing the write (an injected outage) exits 75."""
    result = _pipe(config, "--mailbox", "support", "-", inject=(
        "insert",
        "__import__('ingestd.errors').errors.StorageUnavailable('database is locked')"))
    assert result.returncode == 75, result.stderr
    assert b"not_stored: database is locked" in result.stderr


def test_configuration_and_schema_trouble_exit_75(config: Path, tmp_path: Path) -> None:
    """Invalid configuration, an outdated schema and an unknown mailbox exit 75, not 78 or 64."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("smtp: [unclosed\n")
    assert _pipe(broken, "--mailbox", "support", "-").returncode == 75
    assert _pipe(config, "--mailbox", "nope", "-").returncode == 75
    assert _pipe(config, "--mailbox", "support", "-").returncode == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "ingestd.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0000'")
    outdated = _pipe(config, "--mailbox", "support", "-")
    assert outdated.returncode == 75, outdated.stderr
    assert b"ingestd db upgrade" in outdated.stderr


def test_the_input_own_faults_stay_permanent(config: Path, tmp_path: Path) -> None:
    """Input that is not mail exits 65; a file argument that cannot be read exits 66."""
    assert _pipe(config, "--mailbox", "support", "-", stdin=b"hello\n").returncode == 65
    missing = _pipe(config, "--mailbox", "support", str(tmp_path / "missing.eml"), stdin=b"")
    assert missing.returncode == 66


def test_a_300_mb_mbox_is_stored_in_bounded_memory(config: Path, tmp_path: Path) -> None:
    """3,000 messages of 100 KB in one mbox: all stored, peak RSS under 200 MB."""
    mbox = tmp_path / "big.mbox"
    filler = (b"x" * 76 + b"\n") * 1300  # ~100 KB of body per message
    count = 3000
    with mbox.open("wb") as out:
        for i in range(count):
            out.write(b"From sender@example.net Thu Nov 24 10:00:00 2026\n")
            out.write(f"From: a@b.example\nSubject: big {i}\nMessage-ID: <big{i}@b>\n\n"
                      .encode())
            out.write(filler)
            out.write(b"\n")
    assert mbox.stat().st_size > 300_000_000
    # Measured by a small go-between: a child forked from this (large) test
    # process would report this process's peak as its own (Linux keeps the
    # high-water mark across exec).
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, sys.executable, "-m", "ingestd", "ingest", "--config",
         str(config), "--mailbox", "support", "--no-process", str(mbox)],
        capture_output=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    out, peak = _split_peak(done.stdout)
    assert out.startswith(f"stored {count},".encode())
    peak_mb = peak / 1024
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB"
    engine: Any = None
    from ingestd.config import load_settings
    from ingestd.db.engine import make_engine

    engine = make_engine(load_settings(config).database)
    try:
        rows = inbound_rows(engine)
    finally:
        engine.dispose()
    assert len(rows) == count
    assert bytes(rows[-1].raw).startswith(b"From: a@b.example\nSubject: big 2999\n")
