"""Schema: migrations match the models, creation on demand, refusal of old schemas."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from ingestd.db.models import metadata
from ingestd.db.schema import head_revision

REPO = Path(__file__).resolve().parent.parent
CONTRACT_TABLES = {
    "tickets", "actions", "attachments", "inbound_messages", "inbox_items", "crm_notes",
    "clients", "sites", "users", "agents", "suppliers", "api_tokens",
}
# A configuration needs a mailbox (else every recipient would be refused).
ONE_MAILBOX = "mailboxes:\n  - name: support\n    addresses: [support@example.com]\n"


def test_upgrade_creates_every_table_and_matches_models(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`db upgrade` on an empty database creates exactly what the models declare."""
    assert main(["db", "upgrade", "--config", str(config_file)]) == 0
    engine = make_engine(load_settings(config_file).database)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert tables >= CONTRACT_TABLES
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"
    assert main(["db", "upgrade", "--config", str(config_file)]) == 0
    assert f"schema already at {head_revision()}" in capsys.readouterr().out


def test_commands_create_schema_on_empty_database(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command that needs the database creates the schema by itself when it is empty."""
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: {sqlite_url}\n" + ONE_MAILBOX)
    assert main(["db", "status", "--config", str(config)]) == 0
    assert "schema revision none" in capsys.readouterr().out
    assert main(["messages", "list", "--config", str(config)]) == 0
    assert main(["db", "status", "--config", str(config)]) == 0
    assert ": current" in capsys.readouterr().out


def test_outdated_schema_is_refused_until_upgrade(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database at another revision makes commands exit 78 and name `db upgrade`."""
    assert main(["db", "upgrade", "--config", str(config_file)]) == 0
    engine = make_engine(load_settings(config_file).database)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
    finally:
        engine.dispose()
    capsys.readouterr()
    assert main(["messages", "list", "--config", str(config_file)]) == 78
    assert "run `ingestd db upgrade`" in capsys.readouterr().err


def test_foreign_tables_without_migration_record_are_refused(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A database with an inbound_messages table ingestd did not make is not touched."""
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE inbound_messages (x INTEGER)"))
    engine.dispose()
    config = tmp_path / "c.yaml"
    config.write_text(f"database:\n  url: {sqlite_url}\n" + ONE_MAILBOX)
    assert main(["messages", "list", "--config", str(config)]) == 78
    assert "not made by ingestd" in capsys.readouterr().err


def test_wheel_ships_the_migrations(tmp_path: Path) -> None:
    """A built wheel contains the Alembic environment and every revision."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    wheel = next(tmp_path.glob("ingestd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {p.name for p in (REPO / "ingestd" / "migrations" / "versions").glob("0*.py")}
    assert "ingestd/migrations/env.py" in names
    assert "ingestd/migrations/script.py.mako" in names
    assert {f"ingestd/migrations/versions/{r}" for r in revisions} <= names


def test_the_revision_constant_is_the_newest_migration() -> None:
    """schema.HEAD (the fast check's revision) names the newest Alembic revision."""
    from ingestd.db.schema import HEAD

    assert head_revision() == HEAD


def test_the_core_inbound_table_matches_the_models_metadata() -> None:
    """The Core inbound_messages table and its copy in the models' metadata are one shape."""
    from ingestd.db.inbound import INBOUND
    from ingestd.db.models import INBOUND_MESSAGES

    def shape(table: sa.Table) -> list[tuple[str, str, bool]]:
        return [(c.name, repr(c.type), bool(c.nullable)) for c in table.columns]

    assert shape(INBOUND) == shape(INBOUND_MESSAGES)
    assert metadata.tables["inbound_messages"] is INBOUND_MESSAGES
