"""`ingestd` starts light: each command imports only what it needs, when it runs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingestd.cli.main import COMMAND_GROUPS, build_parser, main

REPO = Path(__file__).resolve().parent.parent

# Libraries a command that touches no database and parses no mail must not load.
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "aiosmtpd", "mailparser", "psycopg", "structlog",
         "inscriptis", "nh3", "pydantic", "yaml", "apscheduler")

# In a fresh interpreter: run main(argv) with stdout swallowed, then report what was imported.
PROBE = """
import contextlib, io, json, sys
from ingestd.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _loaded(*argv: str) -> tuple[int, set[str]]:
    """Exit code of ``ingestd ARGV`` in a new interpreter, and every module it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True,
        check=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    report = json.loads(done.stdout)
    return report["code"], set(report["modules"])


def _imported(*argv: str) -> tuple[int, set[str]]:
    """Exit code of ``ingestd ARGV`` in a new interpreter, and the top-level packages it loaded."""
    code, modules = _loaded(*argv)
    return code, {name.partition(".")[0] for name in modules}


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []], ids=["version", "help", "none"])
def test_version_and_help_import_no_library(argv: list[str]) -> None:
    """`ingestd --version` / `--help` (and a usage error) load none of the heavy libraries."""
    code, modules = _imported(*argv)
    assert code == (64 if not argv else 0)
    assert sorted(modules.intersection(HEAVY)) == []


@pytest.mark.parametrize("group", list(COMMAND_GROUPS))
def test_group_help_imports_no_library(group: str) -> None:
    """A command group's parser is built without loading SQLAlchemy, pydantic or the parser."""
    code, modules = _imported(group, "--help")
    assert code == 0
    assert sorted(modules.intersection(HEAVY)) == []


def test_check_loads_configuration_but_no_database(tmp_path: Path) -> None:
    """`ingestd check` loads pydantic and YAML but no database, SMTP or mail library."""
    config = tmp_path / "c.yaml"
    config.write_text("mailboxes:\n  - name: support\n    addresses: [support@example.com]\n")
    code, modules = _imported("check", "--config", str(config))
    assert code == 0
    assert {"pydantic", "yaml"} <= modules
    assert sorted(modules.intersection({"sqlalchemy", "sqlmodel", "alembic", "aiosmtpd",
                                        "mailparser", "psycopg"})) == []


def test_store_only_ingest_loads_no_orm_migrations_or_parser(tmp_path: Path) -> None:
    """`ingest --no-process` stores through the driver: no dialect, Alembic, ORM, parser, logs."""
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: sqlite:///{tmp_path}/i.db\n"
                      "mailboxes:\n  - name: support\n    addresses: [support@example.com]\n")
    message = tmp_path / "m.eml"
    message.write_bytes(b"From: a@b.example\r\nSubject: hi\r\n\r\nbody\r\n")
    argv = ("ingest", "--config", str(config), "--mailbox", "support", "--no-process",
            str(message))
    assert _loaded(*argv)[0] == 0  # the first run creates the schema (Alembic, once)
    code, modules = _loaded(*argv)
    assert code == 0
    top = {name.partition(".")[0] for name in modules}
    assert sorted(top.intersection({"sqlmodel", "alembic", "aiosmtpd", "mailparser",
                                    "inscriptis", "nh3", "psycopg", "structlog"})) == []
    assert "sqlalchemy.dialects.sqlite" not in modules


def test_root_help_is_the_same_whichever_group_is_loaded() -> None:
    """The help listed for each group in cli/main.py is what its module registers."""
    listed = build_parser().format_help()
    for group in COMMAND_GROUPS:
        assert build_parser(group).format_help() == listed, group


@pytest.mark.parametrize("group", list(COMMAND_GROUPS))
def test_every_group_still_parses(group: str) -> None:
    """Each command group loads on demand and answers `--help` with its own usage, exit 0."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([group, "--help"]) == 0
    assert out.getvalue().startswith(f"usage: ingestd {group} ")


def test_root_options_before_the_command_still_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--config` (even abbreviated) before the command reaches it; unknown commands exit 64."""
    config = tmp_path / "c.yaml"
    config.write_text("mailboxes:\n  - name: support\n    addresses: [support@example.com]\n")
    assert main(["--conf", str(config), "check"]) == 0
    assert "1 mailbox(es)" in capsys.readouterr().out
    assert main(["nonsense"]) == 64
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err
