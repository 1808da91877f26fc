"""Intake commits reach the disk before 250; processing commits may lag (and why that is safe)."""

from __future__ import annotations

import sqlalchemy as sa

from ingestd.config.settings import DatabaseSettings
from ingestd.db.engine import make_engine, processing_engine


def _setting(engine: sa.Engine) -> str:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
                conn.exec_driver_sql("PRAGMA synchronous").scalar_one()]
        return str(conn.exec_driver_sql("SHOW synchronous_commit").scalar_one())


def test_intake_is_synchronous_and_processing_is_relaxed(db_url: str) -> None:
    """Intake transactions use FULL / synchronous_commit on; processing NORMAL / off."""
    engine = make_engine(DatabaseSettings(url=db_url))
    try:
        relaxed = processing_engine(engine)
        first, second, again = _setting(engine), _setting(relaxed), _setting(engine)
    finally:
        engine.dispose()
    if db_url.startswith("sqlite"):
        # The pool hands the same connection back: the level is reset per transaction.
        assert (first, second, again) == ("FULL", "NORMAL", "FULL")
    else:
        assert (first, second, again) == ("on", "off", "on")
