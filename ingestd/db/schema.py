"""Create and upgrade the schema with the Alembic migrations inside the package."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from ingestd.db.engine import is_postgres
from ingestd.errors import SchemaOutdated, StorageUnavailable, first_line

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Any fixed number: instances starting together on one PostgreSQL take turns.
_SCHEMA_LOCK = 0x1D6E57D


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; return (before, after)."""
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        before = MigrationContext.configure(conn).get_current_revision()
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head_revision()


def ensure_schema(engine: Engine) -> None:
    """Create the schema on an empty database; refuse an outdated one.

    Upgrading an existing database is left to ``ingestd db upgrade`` so that
    an operator decides when a shared database changes shape under other
    instances that may still run the older version.
    """
    try:
        current = current_revision(engine)
        if current is None:
            with engine.connect() as conn:
                has_tables = sa.inspect(conn).has_table("inbound_messages")
            if has_tables:
                raise SchemaOutdated(
                    "the database has ingestd tables but no migration record; "
                    "it was not made by ingestd"
                )
            upgrade(engine)
            return
    except sa.exc.OperationalError as exc:
        raise StorageUnavailable(f"database unavailable: {first_line(exc)}") from exc
    head = head_revision()
    if current != head:
        raise SchemaOutdated(
            f"database schema is at revision {current}, this ingestd needs {head}: "
            "run `ingestd db upgrade`"
        )
