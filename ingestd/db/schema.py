"""Create and upgrade the schema with the Alembic migrations inside the package."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from ingestd.db.errors import translated
from ingestd.errors import SchemaOutdated

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


def _lock(conn: sa.Connection) -> None:
    """On PostgreSQL, instances starting together take turns (until commit)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        # A migration rewrites whole tables: no per-statement limit for it.
        conn.execute(sa.text("SET LOCAL statement_timeout = 0"))


def _upgrade_on(conn: sa.Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; return (before, after)."""
    with engine.begin() as conn:
        _lock(conn)
        before = MigrationContext.configure(conn).get_current_revision()
        _upgrade_on(conn)
    return before, head_revision()


def ensure_schema(engine: Engine) -> None:
    """Create the schema on an empty database; refuse an outdated one.

    Upgrading an existing database is left to ``ingestd db upgrade`` so that
    an operator decides when a shared database changes shape under other
    instances that may still run the older version. The revision is read
    under the same lock as the creation, so a second instance starting at
    the same moment waits and then sees the finished schema.
    """
    head = head_revision()
    with translated("schema check"):
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current is None:
            with engine.begin() as conn:
                _lock(conn)
                current = MigrationContext.configure(conn).get_current_revision()
                if current is None:
                    if sa.inspect(conn).has_table("inbound_messages"):
                        raise SchemaOutdated(
                            "the database has ingestd tables but no migration record; "
                            "it was not made by ingestd"
                        )
                    _upgrade_on(conn)
                    return
    if current != head:
        raise SchemaOutdated(
            f"database schema is at revision {current}, this ingestd needs {head}: "
            "run `ingestd db upgrade`"
        )
