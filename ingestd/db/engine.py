"""Database connections with the durability settings intake relies on."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ingestd.config.settings import DatabaseSettings
from ingestd.errors import StorageUnavailable


def make_engine(settings: DatabaseSettings, pool_size: int = 5) -> Engine:
    """An engine for ``settings.url``.

    SQLite: WAL with ``synchronous=FULL`` (a commit survives power loss, which
    a 250 reply promises), a busy timeout, and ``BEGIN IMMEDIATE`` so a
    writer takes the write lock up front instead of failing half-way through
    a transaction. PostgreSQL: ordinary commits (``synchronous_commit`` on)
    and a pre-ping so a restarted server does not fail the first write.
    """
    if settings.is_sqlite:
        return _sqlite_engine(settings)
    engine = sa.create_engine(
        settings.url, pool_pre_ping=True, pool_size=pool_size, max_overflow=10,
        # Bounded waits, so an SMTP sender hears 451 in time when the server is
        # away (connect) or a statement is stuck behind a lock (statement).
        connect_args=settings.postgres_connect_args,
    )

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        if _relaxed(connection):
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")

    return engine


def processing_engine(engine: Engine) -> Engine:
    """The same database, for processing transactions that need not reach the disk at once.

    A processing commit lost to a power cut (or a database crash) leaves the
    message ``pending`` with everything it made rolled back together, and it
    is processed again: no mail is lost and nothing doubles. So these commits
    skip the fsync that intake's 250 needs (SQLite ``synchronous=NORMAL`` in
    WAL mode, PostgreSQL ``synchronous_commit=off``). A worker *process*
    crash loses nothing either way: its commits are already in the
    database's hands.
    """
    return engine.execution_options(ingestd_relaxed_durability=True)


def _relaxed(connection: sa.Connection) -> bool:
    return bool(connection.get_execution_options().get("ingestd_relaxed_durability"))


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def sqlite_file(settings: DatabaseSettings) -> Path:
    """The SQLite file of ``settings``, its directory made (StorageUnavailable if it cannot be)."""
    path = sqlite_path(settings.url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageUnavailable(
            f"cannot create the database directory {path.parent}: {exc.strerror or exc}"
        ) from exc
    return path


def prepare_sqlite_connection(connection: Any, busy_ms: int) -> None:
    """WAL, synchronous=FULL, the busy timeout and foreign keys on a new sqlite3 connection.

    Turning a new database file to WAL takes an exclusive lock and, unlike
    ordinary statements, answers "database is locked" at once instead of
    waiting while another connection (an instance starting at the same moment)
    does the same; so it is retried for up to the busy timeout.
    """
    connection.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    deadline = time.monotonic() + busy_ms / 1000
    while True:
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    if mode is None or str(mode[0]).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode})")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")


def _sqlite_engine(settings: DatabaseSettings) -> Engine:
    sqlite_file(settings)
    engine = sa.create_engine(
        settings.url,
        connect_args={"timeout": settings.busy_timeout_ms / 1000, "check_same_thread": False},
    )
    busy_ms = settings.busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE is ours to send.
        dbapi_connection.isolation_level = None
        prepare_sqlite_connection(dbapi_connection, busy_ms)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # The level applies to the commits that follow; it cannot change inside one.
        level = "NORMAL" if _relaxed(connection) else "FULL"
        connection.exec_driver_sql(f"PRAGMA synchronous={level}")
        # Readers (WAL) need no lock and must not queue behind writers.
        if connection.get_execution_options().get("ingestd_read_only"):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def read_only(engine: Engine) -> sa.Connection:
    """A connection for reads: on SQLite it takes no write lock."""
    return engine.connect().execution_options(ingestd_read_only=True)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
