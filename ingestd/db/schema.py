"""Create and upgrade the schema with the Alembic migrations inside the package.

Alembic is imported only when the schema has to be read by it or changed: a
command that finds the schema current (every run of ``ingestd ingest -`` by
an MTA) checks the revision with one query.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestd.db.errors import translated
from ingestd.errors import SchemaOutdated

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The newest revision in MIGRATIONS (tests/test_schema.py checks they agree).
HEAD = "0011"
# Any fixed number: instances starting together on one PostgreSQL take turns.
_SCHEMA_LOCK = 0x1D6E57D
_VERSION = sa.table("alembic_version", sa.column("version_num"))


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _stored_revision(conn: sa.Connection) -> str | None:
    """The revision recorded in the database; None when it records none."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    value = conn.execute(sa.select(_VERSION.c.version_num)).scalar()
    return str(value) if value is not None else None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _stored_revision(conn)


def _lock(conn: sa.Connection) -> None:
    """On PostgreSQL, instances starting together take turns (until commit)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        # A migration rewrites whole tables: no per-statement limit for it.
        conn.execute(sa.text("SET LOCAL statement_timeout = 0"))


def _upgrade_on(conn: sa.Connection) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


@contextmanager
def _migrating(engine: Engine) -> Iterator[sa.Connection]:
    """A transaction for migrations, taken in turns with other instances.

    SQLite: a batch migration copies a table, drops the original and renames
    the copy; with foreign keys enforced, the drop fails as soon as any row
    refers to the table (dedupe keys, actions). SQLite ignores the pragma
    inside a transaction, so enforcement is turned off before it begins and
    the whole database is checked before the commit instead.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                _lock(conn)
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise SchemaOutdated(
                            f"the migration would break {len(broken)} foreign key reference(s) "
                            f"(first: {tuple(broken[0])}); nothing was changed")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA foreign_keys=ON")


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; return (before, after)."""
    with _migrating(engine) as conn:
        before = _stored_revision(conn)
        _upgrade_on(conn)
    return before, HEAD


def ensure_schema(engine: Engine) -> None:
    """Create the schema on an empty database; refuse an outdated one.

    Upgrading an existing database is left to ``ingestd db upgrade`` so that
    an operator decides when a shared database changes shape under other
    instances that may still run the older version. The revision is read
    again under the lock that creation holds, so a second instance starting
    at the same moment waits and then sees the finished schema.
    """
    with translated("schema check"):
        with engine.connect() as conn:
            current = _stored_revision(conn)
        if current is None:
            with _migrating(engine) as conn:
                current = _stored_revision(conn)
                if current is None:
                    if sa.inspect(conn).has_table("inbound_messages"):
                        raise SchemaOutdated(
                            "the database has ingestd tables but no migration record; "
                            "it was not made by ingestd"
                        )
                    _upgrade_on(conn)
                    return
    if current != HEAD:
        raise SchemaOutdated(
            f"database schema is at revision {current}, this ingestd needs {HEAD}: "
            "run `ingestd db upgrade`"
        )
