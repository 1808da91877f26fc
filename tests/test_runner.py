"""The stage runner and the worker's busy marker: small pieces the workers rely on."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.order import PIPELINE
from tests.conftest import FIXTURES, inbound_rows, write_config
from tests.processing_env import import_directory, processing_config
from tests.support.waiting import wait_for


def ignore_everything(ctx: MessageContext) -> Outcome | None:
    """A protection-like stage before the database: it decides on its own."""
    return Outcome("ignored", "ignored", "rule:test-ignore")


def test_an_outcome_from_a_stage_before_the_database_is_committed(
    tmp_path: Path, db_url: str
) -> None:
    """A prepare stage returning `ignored` ends processing there, and the row says so."""
    from ingestd.cli.main import main
    from ingestd.config import load_settings
    from ingestd.db.engine import make_engine
    from ingestd.workers.worker import Worker

    path = write_config(tmp_path, processing_config(db_url))
    import_directory(path)
    assert main(["ingest", "--no-process", "--config", str(path), "--mailbox", "support",
                 str(FIXTURES / "new-ticket.eml")]) == 0
    settings = load_settings(path)
    engine = make_engine(settings.database)
    try:
        worker = Worker(engine, settings, "w", pipeline=PIPELINE.replacing("tag",
                                                                            ignore_everything))
        done = worker.run_once()
        row = inbound_rows(engine)[0]
        with engine.connect() as conn:
            tickets = conn.exec_driver_sql("SELECT count(*) FROM tickets").scalar()
    finally:
        engine.dispose()
    assert done is not None and done[1].result == "ignored"
    assert (row.status, row.reason, row.claimed_by) == ("ignored", "rule:test-ignore", None)
    assert row.stage_timings is not None and "tag" in row.stage_timings
    assert tickets == 0


def _flip(word: Any, stop: Any) -> None:
    from ingestd.workers.processes import SharedBusy

    marker = SharedBusy(word)
    message = 1
    while not stop.is_set():
        with marker.busy(message):
            pass
        message = message % 1000 + 1


def test_the_busy_marker_is_never_read_half_written() -> None:
    """A worker switching messages fast: every read is a whole (id, start) pair, never torn."""
    import ctypes

    from ingestd.workers.processes import SharedBusy

    context = multiprocessing.get_context("spawn")
    word = context.RawValue(ctypes.c_int64, 0)
    stop = context.Event()
    worker = context.Process(target=_flip, args=(word, stop), daemon=True)
    worker.start()
    reader = SharedBusy(word)
    seen = 0
    try:
        # A spawned interpreter can take seconds to start on a loaded machine:
        # the two seconds of reading count from its first write.
        wait_for(lambda: reader.read()[0] or None, timeout=60, what="the worker's first write")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            message_id, busy_for = reader.read()
            if message_id:
                seen += 1
                # A torn read pairs an id with another message's start (or none):
                # it would show up as an impossible age.
                assert 1 <= message_id <= 1000 and 0 <= busy_for < 5, (message_id, busy_for)
    finally:
        stop.set()
        worker.join(10)
    assert seen > 0
