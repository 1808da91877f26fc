"""The contract every pull source passes (IMAP here; Gmail and Graph run it too).

A test module subclasses ``PullSourceContract`` and provides a ``provider``
fixture: a ``Provider`` around a real server (Dovecot) or a fake one on
127.0.0.1. The tests drive the real ``Poller`` against it on both database
back ends and check the promises of a pull: the first connection imports
nothing that was already there, new mail is imported once and byte-exact,
a lost cursor re-imports nothing, ``import_since`` backfills, nothing at
the source is ever changed, and a checkpoint never runs ahead of its mail.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestd.config.settings import DatabaseSettings, IngestdSettings, Mailbox
from ingestd.db.engine import make_engine
from ingestd.db.schema import ensure_schema
from ingestd.db.tables import INBOUND, MAILBOX_CHECKPOINTS, MAILBOX_STATES
from ingestd.intake.sources.poll import Poller, PollReport
from ingestd.intake.sources.pull import PullSource
from ingestd.intake.sources.retry import RetryPolicy
from ingestd.workers.worker import Worker

FAST_RETRY = RetryPolicy(attempts=2, first_wait=0.01, max_wait=0.05)
_numbers = itertools.count(1)


class Provider(Protocol):
    """A mailbox at a provider, as the contract tests need to handle it."""

    def mailbox(self, **settings: Any) -> Mailbox:
        """Settings of a pulled mailbox on this provider (``settings`` override keys)."""

    def source(self, mailbox: Mailbox) -> PullSource: ...

    def deliver(self, raw: bytes, received_at: datetime | None = None) -> None:
        """Put a message into the polled folder, as mail arriving there would."""

    def state(self) -> object:
        """Everything a poll must not change (flags, message count), comparable with ==."""

    def lose_cursor(self) -> None:
        """Make the provider refuse the stored cursor (IMAP: a new UIDVALIDITY)."""


def message(subject: str | None = None, *, sender: str = "carol@customer.example") -> bytes:
    n = next(_numbers)
    subject = subject or f"Pulled message {n}"
    return (f"From: Carol <{sender}>\r\nTo: nina@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <pull-{n}-{id(subject)}@customer.example>\r\n"
            f"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n\r\nBody {n}, caf\xc3\xa9.\r\n"
            ).encode("latin-1")


def stored(engine: Engine, mailbox: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(INBOUND).where(INBOUND.c.mailbox == mailbox)
                                 .order_by(INBOUND.c.id)))


def state_row(engine: Engine, mailbox: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(MAILBOX_STATES).where(
            MAILBOX_STATES.c.mailbox == mailbox)).first()


def process_all(engine: Engine, settings: IngestdSettings) -> None:
    worker = Worker(engine, settings, "contract-worker")
    while worker.run_once() is not None:
        pass


@pytest.fixture(name="engine")
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite database, for a source's own tests (the contract runs on both)."""
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    ensure_schema(engine)
    yield engine
    engine.dispose()


class PullSourceContract:
    """Subclass with a ``provider`` fixture; every test runs on SQLite and PostgreSQL."""

    @pytest.fixture
    def engine(self, db_url: str) -> Iterator[Engine]:
        engine = make_engine(DatabaseSettings(url=db_url))
        ensure_schema(engine)
        yield engine
        engine.dispose()

    def poller(self, engine: Engine, provider: Provider, mailbox: Mailbox,
               **kwargs: Any) -> Poller:
        return Poller(engine, mailbox, provider.source(mailbox), batch_size=2,
                      retry=FAST_RETRY, **kwargs)

    def poll(self, engine: Engine, provider: Provider, mailbox: Mailbox) -> PollReport:
        report = self.poller(engine, provider, mailbox).poll()
        assert report.status == "ok", report
        return report

    def test_first_connection_imports_nothing_already_there(
            self, engine: Engine, provider: Provider) -> None:
        """Mail in the mailbox before the first poll stays out; a cursor is stored."""
        provider.deliver(message())
        provider.deliver(message())
        mailbox = provider.mailbox()
        report = self.poll(engine, provider, mailbox)
        assert report.imported == 0
        assert stored(engine, mailbox.name) == []
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(MAILBOX_CHECKPOINTS)
                                ).scalar_one() >= 1
        assert state_row(engine, mailbox.name).status == "ok"

    def test_new_mail_is_imported_once_and_byte_exact(
            self, engine: Engine, provider: Provider) -> None:
        """Mail arriving after the first poll is stored once, with the bytes the provider holds."""
        mailbox = provider.mailbox()
        self.poll(engine, provider, mailbox)
        raws = [message() for _ in range(5)]
        for raw in raws:
            provider.deliver(raw)
        report = self.poll(engine, provider, mailbox)
        assert report.imported == 5
        again = self.poll(engine, provider, mailbox)
        assert again.imported == 0
        rows = stored(engine, mailbox.name)
        assert sorted(bytes(r.raw) for r in rows) == sorted(raws)
        assert {r.source for r in rows} == {mailbox.source}
        assert len({r.source_key for r in rows}) == 5
        assert state_row(engine, mailbox.name).imported == 5

    def test_a_lost_cursor_reimports_nothing(self, engine: Engine, provider: Provider) -> None:
        """After the provider drops our cursor, old mail makes no new row that is not a
        duplicate, and mail arriving afterwards is still imported."""
        mailbox = provider.mailbox()
        self.poll(engine, provider, mailbox)
        for _ in range(3):
            provider.deliver(message())
        assert self.poll(engine, provider, mailbox).imported == 3
        settings = IngestdSettings(mailboxes=(mailbox,), database=DatabaseSettings(
            url=str(engine.url.render_as_string(hide_password=False))))
        process_all(engine, settings)
        provider.lose_cursor()
        report = self.poll(engine, provider, mailbox)
        assert report.resynced, report
        provider.deliver(message("after the resync"))
        self.poll(engine, provider, mailbox)
        process_all(engine, settings)
        rows = stored(engine, mailbox.name)
        made = [r for r in rows if r.status == "processed"]
        assert len(made) == 4, [(r.status, r.reason) for r in rows]
        assert {r.status for r in rows} <= {"processed", "duplicate"}

    def test_import_since_backfills_from_that_date_only(
            self, engine: Engine, provider: Provider) -> None:
        """``import_since`` imports what arrived from that date on, and nothing older."""
        now = datetime.now(UTC)
        provider.deliver(message("old"), received_at=now - timedelta(days=40))
        provider.deliver(message("recent 1"), received_at=now - timedelta(days=5))
        provider.deliver(message("recent 2"), received_at=now - timedelta(days=1))
        since = (now - timedelta(days=10)).date()
        mailbox = provider.mailbox(import_since=since.isoformat())
        assert mailbox.import_since == since
        report = self.poll(engine, provider, mailbox)
        assert report.imported == 2 and report.backfilled
        assert sorted(r.subject for r in stored(engine, mailbox.name)) == ["recent 1",
                                                                          "recent 2"]
        assert self.poll(engine, provider, mailbox).imported == 0

    def test_nothing_at_the_source_changes(self, engine: Engine, provider: Provider) -> None:
        """Polls read only: flags, counts and messages at the provider are as before."""
        mailbox = provider.mailbox()
        provider.deliver(message())
        self.poll(engine, provider, mailbox)
        provider.deliver(message())
        provider.deliver(message())
        before = provider.state()
        assert self.poll(engine, provider, mailbox).imported == 2
        assert provider.state() == before

    def test_a_checkpoint_never_runs_ahead_of_its_mail(
            self, engine: Engine, provider: Provider, tmp_path: Path) -> None:
        """A poll that dies while storing a batch leaves a checkpoint that still covers the
        lost batch: the next poll imports every message exactly once."""
        mailbox = provider.mailbox()
        self.poll(engine, provider, mailbox)
        raws = [message() for _ in range(5)]
        for raw in raws:
            provider.deliver(raw)
        poller = self.poller(engine, provider, mailbox)
        commits = 0
        real_commit = poller._commit

        def dying_commit(*args: Any, **kwargs: Any) -> None:
            nonlocal commits
            commits += 1
            if commits == 2:  # the second batch: its messages and checkpoint never land
                raise RuntimeError("the process died here")
            real_commit(*args, **kwargs)

        poller._commit = dying_commit  # type: ignore[method-assign]
        report = poller.poll()
        assert report.status == "error"
        assert len(stored(engine, mailbox.name)) == 2
        assert self.poll(engine, provider, mailbox).imported == 3
        rows = stored(engine, mailbox.name)
        assert sorted(bytes(r.raw) for r in rows) == sorted(raws)

    def test_a_poll_without_the_lease_stores_nothing(
            self, engine: Engine, provider: Provider) -> None:
        """While another poller holds the mailbox's lease, a poll stores nothing and says who."""
        mailbox = provider.mailbox()
        self.poll(engine, provider, mailbox)
        provider.deliver(message())
        other = self.poller(engine, provider, mailbox, identity="elsewhere:1")
        from ingestd.intake.sources.lease import MailboxLease

        lease = MailboxLease(engine, mailbox.name, mailbox.source, "elsewhere:1",
                             seconds=60, clock=lambda: datetime.now(UTC))
        assert lease.acquire() is None
        report = self.poller(engine, provider, mailbox).poll()
        assert report.status == "held" and report.held_by == "elsewhere:1"
        assert stored(engine, mailbox.name) == []
        lease.release(None)
        assert other.poll().imported == 1

