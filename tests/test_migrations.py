"""Upgrading a database that holds mail: every row and reference survives, on both back ends."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from ingestd.config.settings import DatabaseSettings
from ingestd.db.engine import make_engine
from ingestd.db.schema import HEAD, current_revision, upgrade

_names = itertools.count(1)

_POPULATE = [
    "INSERT INTO inbound_messages (id, source, source_key, mailbox, also_mailboxes, "
    "envelope_to, size, received_at, status, attempts, raw, skip_dedupe) VALUES "
    "(1, 'smtp', 'sha256:aa', 'support', '[]', '[]', 3, '2026-11-30 10:00:00', 'processed', 1, "
    ":raw, false), "
    "(2, 'smtp', 'sha256:aa', 'support', '[]', '[]', 3, '2026-11-30 10:01:00', 'duplicate', 1, "
    ":raw, false)",
    "UPDATE inbound_messages SET duplicate_of = 1 WHERE id = 2",
    "INSERT INTO dedupe_keys (key, inbound_message_id) VALUES ('sha256:aa', 1)",
    "INSERT INTO tickets (id, type, status, summary, created_at, updated_at) VALUES "
    "(7, 'incident', 'open', 'Printer', '2026-11-30 10:00:00', '2026-11-30 10:00:00')",
    "INSERT INTO actions (id, ticket_id, kind, user_created, inbound_message_id, created_at) "
    "VALUES (9, 7, 'email', false, 1, '2026-11-30 10:00:00')",
]


def _database_at_0002(db_url: str, request: pytest.FixtureRequest) -> str:
    """A database at revision 0002 (not the migrated template) for this back end."""
    if db_url.startswith("sqlite"):
        return db_url
    server = request.getfixturevalue("pg_server")
    name = f"mig_{next(_names)}"
    admin = sa.create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return str(server.url(name))


def test_upgrade_from_0002_keeps_mail_and_references(
    db_url: str, request: pytest.FixtureRequest
) -> None:
    """0002 with processed mail, a duplicate, dedupe keys and actions upgrades to head intact."""
    from alembic import command

    from ingestd.db.schema import alembic_config

    url = _database_at_0002(db_url, request)
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
            for statement in _POPULATE:
                conn.execute(sa.text(statement), {"raw": b"abc"})
        assert current_revision(engine) == "0002"
        before, after = upgrade(engine)
        assert (before, after) == ("0002", HEAD)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT id, status, duplicate_of, not_before, raw FROM inbound_messages "
                "ORDER BY id")).all()
            keys = conn.execute(sa.text("SELECT key, inbound_message_id FROM dedupe_keys")).all()
            action = conn.execute(sa.text("SELECT inbound_message_id FROM actions")).scalar()
            # The widened key takes what a Graph id in a long mailbox name needs.
            conn.execute(sa.text("UPDATE inbound_messages SET source_key = :k WHERE id = 2"),
                         {"k": "graph:" + "m" * 255 + ":" + "A" * 300})
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
    assert [(r.id, r.status, r.duplicate_of, r.not_before, bytes(r.raw)) for r in rows] == [
        (1, "processed", None, None, b"abc"), (2, "duplicate", 1, None, b"abc")]
    assert [tuple(k) for k in keys] == [("sha256:aa", 1)]
    assert action == 1
