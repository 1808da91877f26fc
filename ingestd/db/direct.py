"""Storing inbound messages through the database driver alone, for short-lived commands.

An MTA's pipe transport runs ``ingestd ingest -`` once per message, so what
that command loads before the mail is durable is paid for every message.
SQLAlchemy's engine and SQLite dialect cost more to import than the store
itself takes; this module talks to ``sqlite3`` or ``psycopg`` directly,
with the same durability settings as ``db/engine.py`` (SQLite: WAL,
``synchronous=FULL``, busy timeout, ``BEGIN IMMEDIATE``; PostgreSQL:
connect and statement timeouts) and the same stored formats as SQLAlchemy's
types (tests/test_direct_store.py reads rows written here back through
SQLAlchemy and compares them with rows written by ``queue.insert``).

Only the schema check's fast case lives here: a database at the expected
revision. Anything else (an empty database to create, an outdated one to
refuse) goes through ``db/schema.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, Protocol

from ingestd.config.settings import DatabaseSettings
from ingestd.errors import (
    IngestdError,
    StorageRejected,
    StorageUnavailable,
    first_line,
)

# The columns intake writes, in this order; status and attempts are set here.
COLUMNS = ("source", "source_key", "mailbox", "also_mailboxes", "envelope_from", "envelope_to",
           "peer", "message_id", "subject", "size", "received_at", "raw")
_JSON = ("also_mailboxes", "envelope_to")


class _Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


def driver_error(exc: BaseException, doing: str) -> IngestdError:
    """A DB-API error as an ingestd storage error (sqlite3 and psycopg name them alike)."""
    text = f"{doing}: {first_line(exc)}"
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    # Intake inserts into a table with no unique key to race on: a violated
    # constraint names a value of these messages, like a refused value does.
    if kinds & {"IntegrityError", "DataError"} or isinstance(exc, ValueError):
        return StorageRejected(text)
    return StorageUnavailable(text)


class DirectStore:
    """One driver connection that inserts pending messages, one transaction per batch."""

    def __init__(self, settings: DatabaseSettings, connection: _Connection) -> None:
        self._settings = settings
        self._conn = connection
        self._sqlite = settings.is_sqlite

    def revision(self) -> str | None:
        """The schema revision recorded in the database; None if it records none."""
        try:
            row = self._conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except Exception:
            self._conn.rollback()
            return None
        self._conn.rollback()
        return str(row[0]) if row else None

    def insert(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Store ``rows`` (``NewMessage.row()`` dicts) as pending, all or none; their ids."""
        if not rows:
            return []
        placeholder = "?" if self._sqlite else "%s"
        sql = (f"INSERT INTO inbound_messages ({', '.join(COLUMNS)}, status, attempts) "
               f"VALUES ({', '.join([placeholder] * len(COLUMNS))}, 'pending', 0) RETURNING id")
        try:
            if self._sqlite:
                self._conn.execute("BEGIN IMMEDIATE")
            ids = [int(self._conn.execute(sql, self._values(row)).fetchone()[0])
                   for row in rows]
            self._conn.commit()
        except Exception as exc:
            with suppress(Exception):
                self._conn.rollback()
            raise driver_error(exc, "intake commit") from exc
        return ids

    def _values(self, row: Mapping[str, Any]) -> list[Any]:
        values = []
        for name in COLUMNS:
            value = row[name]
            if name in _JSON:
                value = json.dumps(value) if self._sqlite else _pg_json(value)
            elif isinstance(value, datetime) and self._sqlite:
                # SQLAlchemy's SQLite DateTime: naive ISO text (intake's times are UTC).
                value = value.strftime("%Y-%m-%d %H:%M:%S.%f")
            values.append(value)
        return values


def _pg_json(value: Any) -> Any:
    from psycopg.types.json import Json

    return Json(value)


@contextmanager
def direct_store(settings: DatabaseSettings) -> Iterator[DirectStore]:
    """A ``DirectStore`` on the configured database; storage errors arrive translated."""
    try:
        connection = _sqlite_connection(settings) if settings.is_sqlite else _pg_connection(
            settings)
    except IngestdError:
        raise
    except Exception as exc:
        raise driver_error(exc, "database connection") from exc
    try:
        yield DirectStore(settings, connection)
    finally:
        connection.close()


def _sqlite_connection(settings: DatabaseSettings) -> _Connection:
    import sqlite3

    from ingestd.db.engine import prepare_sqlite_connection, sqlite_file

    path = sqlite_file(settings)
    # isolation_level=None: transactions are ours to begin (BEGIN IMMEDIATE).
    conn = sqlite3.connect(path, timeout=settings.busy_timeout_ms / 1000, isolation_level=None)
    prepare_sqlite_connection(conn, settings.busy_timeout_ms)
    return conn


def _pg_connection(settings: DatabaseSettings) -> _Connection:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(settings.url)
    params: dict[str, Any] = {
        "host": url.host, "port": url.port, "user": url.username, "password": url.password,
        "dbname": url.database, **settings.postgres_connect_args,
        **{k: v for k, v in url.query.items() if isinstance(v, str)},
    }
    return psycopg.connect(**{k: v for k, v in params.items() if v is not None})
