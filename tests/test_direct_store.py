"""The driver-level store (`ingest`'s light path) writes rows SQLAlchemy reads as its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingestd import queue
from ingestd.config.settings import DatabaseSettings
from ingestd.db.direct import direct_store
from ingestd.db.engine import make_engine
from ingestd.db.schema import HEAD, ensure_schema
from ingestd.db.tables import INBOUND
from ingestd.errors import StorageRejected, StorageUnavailable
from ingestd.intake.file_source import FileSource
from tests.test_smtp_intake import SIMPLE


def test_rows_match_those_written_through_sqlalchemy(db_url: str) -> None:
    """Every column of a directly stored row reads back equal to the same row via queue.insert."""
    settings = DatabaseSettings(url=db_url)
    engine = make_engine(settings)
    ensure_schema(engine)
    row = FileSource().message(
        SIMPLE, "support", envelope_from="jürg@x.example", envelope_to=["a@b", "c@d"],
        also_mailboxes=["sales"], peer="127.0.0.1:25").row()
    try:
        with engine.begin() as conn:
            (by_sqlalchemy,) = queue.insert(conn, [row])
        with direct_store(settings) as store:
            assert store.revision() == HEAD
            (by_driver,) = store.insert([row])
        with engine.connect() as conn:
            rows = {r.id: r._asdict() for r in conn.execute(sa.select(INBOUND))}
    finally:
        engine.dispose()
    first, second = rows.pop(by_sqlalchemy), rows.pop(by_driver)
    assert first.pop("id") != second.pop("id")
    assert first == second
    assert second["status"] == "pending" and second["attempts"] == 0
    assert second["also_mailboxes"] == ["sales"] and second["envelope_to"] == ["a@b", "c@d"]


def test_a_refused_value_and_a_locked_database_are_told_apart(tmp_path: Path) -> None:
    """A value the driver refuses is StorageRejected; a lock past busy_timeout is unavailable."""
    settings = DatabaseSettings(url=f"sqlite:///{tmp_path}/d.db", busy_timeout_ms=100)
    engine = make_engine(settings)
    ensure_schema(engine)
    engine.dispose()
    bad = FileSource().message(SIMPLE, "support", peer="\udcff").row()
    good = FileSource().message(SIMPLE, "support").row()
    with direct_store(settings) as store:
        with pytest.raises(StorageRejected):
            store.insert([good, bad])
        blocker = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StorageUnavailable):
                store.insert([good])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert len(store.insert([good])) == 1
