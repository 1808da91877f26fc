"""Processing details: the no_user policy, racing duplicates, parser defects."""

from __future__ import annotations

import threading
from datetime import UTC
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from ingestd.services import tickets
from ingestd.workers.worker import Worker
from tests.conftest import FIXTURES, inbound_rows, write_config
from tests.processing_env import import_directory, processing_config


def _prepared(tmp_path: Path, db_url: str, *names: str, **config_extra: Any) -> Path:
    config = processing_config(db_url)
    config.update(config_extra)
    path = write_config(tmp_path, config)
    import_directory(path)
    paths = [str(FIXTURES / n) for n in names]
    assert main(["ingest", "--no-process", "--config", str(path), "--mailbox", "support",
                 *paths]) == 0
    return path


def test_no_user_policy_records_unknown_sender(tmp_path: Path, db_url: str) -> None:
    """unknown_senders.action no_user: sender_kind unknown and no user is created."""
    path = _prepared(tmp_path, db_url, "from-unknown.eml",
                     unknown_senders={"action": "no_user"})
    settings = load_settings(path)
    engine = make_engine(settings.database)
    try:
        with engine.connect() as conn:
            users_before = conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
        _row_id, outcome = Worker(engine, settings, "w").run_once()  # type: ignore[misc]
        assert outcome.result == "ticket_created"
        with engine.connect() as conn:
            ticket = tickets.show_ticket(conn, outcome.ticket_id)  # type: ignore[arg-type]
            users_after = conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
        assert ticket["user_email"] is None and ticket["client"] is None
        assert ticket["actions"][0]["sender_kind"] == "unknown"
        assert ticket["actions"][0]["user_created"] is False
        assert users_after == users_before
    finally:
        engine.dispose()


def test_racing_duplicates_make_one_ticket(tmp_path: Path, db_url: str) -> None:
    """Two workers processing the same message at once: one ticket, one duplicate."""
    path = _prepared(tmp_path, db_url, "new-ticket.eml", "new-ticket-resent.eml")
    settings = load_settings(path)
    engine = make_engine(settings.database)
    try:
        workers = [Worker(engine, settings, f"w{i}") for i in range(2)]
        claims = [w.claim() for w in workers]
        assert all(claims)
        barrier = threading.Barrier(2)
        results: list[Any] = []

        def run(worker: Worker, claim: Any) -> None:
            barrier.wait()
            results.append(worker.process(claim))

        threads = [threading.Thread(target=run, args=(w, c)) for w, c in zip(workers, claims,
                                                                               strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(r.result for r in results) == ["duplicate", "ticket_created"]
        rows = inbound_rows(engine)
        winner = next(r for r in rows if r.status == "processed")
        loser = next(r for r in rows if r.status == "duplicate")
        assert loser.duplicate_of == winner.id
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM tickets")).scalar_one() == 1
    finally:
        engine.dispose()


def test_parser_defects_are_recorded(tmp_path: Path, db_url: str) -> None:
    """Defects the parser finds are stored on the inbound row; the message is still processed."""
    broken = tmp_path / "broken.eml"
    broken.write_bytes(
        b"From: alice@acme.example\r\nSubject: no closing boundary\r\n"
        b"Message-ID: <defect-1@acme.example>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n"
        b"--zz\r\nContent-Type: text/plain\r\n\r\nbody without end\r\n"
    )
    path = write_config(tmp_path, processing_config(db_url))
    assert main(["ingest", "--config", str(path), "--mailbox", "support", str(broken)]) == 0
    engine = make_engine(load_settings(path).database)
    try:
        row = inbound_rows(engine)[0]
    finally:
        engine.dispose()
    assert row.status == "processed"
    assert row.defects and any("Boundary" in d for d in row.defects)


def test_persistent_database_errors_on_one_message_end_in_quarantine(
    tmp_path: Path, db_url: str
) -> None:
    """A message that keeps hitting database errors backs off, lets others by, then quarantines."""
    from datetime import datetime

    from ingestd.pipeline.order import PIPELINE
    from ingestd.pipeline.stages.classify import classify_sender

    path = _prepared(tmp_path, db_url, "from-unknown.eml", "new-ticket.eml")

    def flaky_classify(ctx: Any) -> Any:
        # Stands in for a database fault that only looks transient (no real one
        # can be summoned deterministically for one message).
        if ctx.message.from_address == "zed@newco.example":
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("disk I/O error"))
        return classify_sender(ctx)

    pipeline = PIPELINE.replacing("classify", flaky_classify)
    settings = load_settings(path)
    engine = make_engine(settings.database)
    try:
        worker = Worker(engine, settings, "w", pipeline=pipeline)
        first = worker.run_once()
        assert first is not None and first[1].result == "failed"
        troubled = inbound_rows(engine)[0]
        assert (troubled.status, troubled.attempts, troubled.claimed_by) == ("pending", 1, None)
        assert "StorageUnavailable" in troubled.last_error
        # Backing off: the next claim takes the other message, then finds nothing.
        not_before = troubled.not_before.replace(tzinfo=troubled.not_before.tzinfo or UTC)
        assert not_before > datetime.now(UTC)
        done = worker.run_once()
        assert done is not None and done[1].result == "ticket_created"
        assert worker.run_once() is None
        # With no back-off left to wait, it is retried until its attempts run out.
        fast = settings.model_copy(update={"processing": settings.processing.model_copy(
            update={"retry_delays_seconds": (0.0,), "max_attempts": 3})})
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE inbound_messages SET not_before = NULL"))
        hurried = Worker(engine, fast, "w2", pipeline=pipeline)
        results = [hurried.run_once() for _ in range(3)]
        assert [r[1].result for r in results if r] == ["failed", "quarantined"]
        row = inbound_rows(engine)[0]
    finally:
        engine.dispose()
    assert row.status == "quarantined"
    assert row.reason.startswith("attempts: classify: StorageUnavailable: database: ")
    assert "disk I/O error" in row.reason


def test_huge_hostile_html_is_not_rendered(tmp_path: Path) -> None:
    """2 MB of nested HTML keeps its text and skips the super-linear sanitiser (fast)."""
    import time

    from ingestd.config.settings import ProcessingLimits
    from ingestd.pipeline.stages.parse import parse_message

    html = "<div>" * 200_000 + "hello" + "</div>" * 200_000
    raw = ("From: a@b.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/html\r\n\r\n" + html).encode()
    started = time.perf_counter()
    parsed = parse_message(raw, ProcessingLimits())
    assert time.perf_counter() - started < 5
    assert parsed.text.strip() == "hello" and parsed.html is None
    assert parsed.defects == ("HTML body of 2200005 characters not rendered",)


def test_parser_edge_cases_found_in_review() -> None:
    """Non-text codecs decode with replacement; 8-bit Message-IDs stay distinct; limits hold."""
    import pytest

    from ingestd.config.settings import ProcessingLimits
    from ingestd.errors import LimitExceeded
    from ingestd.pipeline.stages.parse import parse_message

    limits = ProcessingLimits()
    for charset in ("idna", "punycode", "undefined"):
        raw = (f"From: a@b.example\r\nContent-Type: text/plain; charset={charset}\r\n\r\n"
               "hello \xe9\r\n").encode("latin-1")
        assert parse_message(raw, limits).text.startswith("hello ")
    ids = {parse_message(b"From: a@b.example\r\nMessage-ID: <order-" + c + b"@x>\r\n\r\nx\r\n",
                         limits).message_id for c in (b"\xe4", b"\xfc", "ä".encode())}
    assert ids == {"<order-ä@x>", "<order-ü@x>"}
    with pytest.raises(LimitExceeded, match="header-bytes"):
        parse_message(b"From: a@b.example\r\nX: " + b"a" * 300_000 + b"\r\n\r\nbody", limits)
    nested = b"Content-Type: text/plain\r\n\r\nx\r\n"
    for _ in range(40):
        nested = b"Content-Type: message/rfc822\r\n\r\n" + nested
    with pytest.raises(LimitExceeded, match="depth"):
        parse_message(b"From: a@b.example\r\n" + nested, limits)


def test_leases_use_the_database_clock_on_postgresql(tmp_path: Path, pg_server: Any) -> None:
    """A host whose clock runs an hour ahead cannot take over a live lease on PostgreSQL."""
    from datetime import timedelta

    from ingestd.db.models import utcnow
    from tests.conftest import new_pg_database

    path = _prepared(tmp_path, new_pg_database(pg_server), "new-ticket.eml")
    settings = load_settings(path)
    engine = make_engine(settings.database)
    try:
        honest = Worker(engine, settings, "honest")
        assert honest.claim() is not None
        ahead = Worker(engine, settings, "ahead", clock=lambda: utcnow() + timedelta(hours=1))
        assert ahead.claim() is None
        assert inbound_rows(engine)[0].claimed_by == "honest"
    finally:
        engine.dispose()


def test_an_outage_during_processing_does_not_cost_the_message_an_attempt(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Locked mid-attempt (not even the release writes): the attempt is returned afterwards."""
    import sqlite3

    path = _prepared(tmp_path, sqlite_url, "new-ticket.eml")
    settings = load_settings(path)
    settings = settings.model_copy(update={"database": settings.database.model_copy(
        update={"busy_timeout_ms": 50})})
    engine = make_engine(settings.database)
    try:
        worker = Worker(engine, settings, "w")
        claim = worker.claim()
        assert claim is not None and claim.attempts == 1
        blocker = sqlite3.connect(tmp_path / "ingestd.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            assert worker.process(claim).result == "failed"
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        held = inbound_rows(engine)[0]
        assert (held.attempts, held.claimed_by) == (1, "w")  # the release could not be written
        # Back: the attempt is returned and the message claimable again at once.
        done = worker.run_once()
        row = inbound_rows(engine)[0]
    finally:
        engine.dispose()
    assert done is not None and done[1].result == "ticket_created"
    assert (row.status, row.attempts) == ("processed", 1)
