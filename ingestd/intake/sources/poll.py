"""One poll of one pulled mailbox: take the lease, list what is new, fetch it, commit it with
its checkpoint, record how it went.

The order that loses nothing and doubles nothing:

* the first connection stores a cursor at "now" and imports nothing that was
  already there (``import_since`` backfills from a date instead);
* messages are fetched in batches; each batch commits together with the
  checkpoint that covers it, guarded by the lease, so a crash anywhere
  re-fetches at most one batch, which the provider id then recognises;
* ids already stored for the mailbox are not fetched again; after a lost
  cursor the folder is listed again from max(now - resync_lookback_days,
  the first connection or import_since), and where the ids are new names
  (IMAP UIDVALIDITY) the Message-ID and From decide before any fetch.
  Whatever slips through is a ``duplicate`` row for the dedupe stage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Engine

from ingestd.config.settings import Mailbox
from ingestd.db.errors import translated
from ingestd.db.inbound import utcnow
from ingestd.errors import (
    CredentialsRejected,
    CursorLost,
    IngestdError,
    LeaseLost,
    SourceRefused,
    SourceUnavailable,
    first_line,
)
from ingestd.intake.source import NewMessage, commit_messages
from ingestd.intake.sources import checkpoints
from ingestd.intake.sources.checkpoints import FolderCheckpoint
from ingestd.intake.sources.known import not_known_by_headers, not_stored
from ingestd.intake.sources.lease import Clock, MailboxLease, Outcome, poller_identity
from ingestd.intake.sources.poll_report import PollReport, log_outcome
from ingestd.intake.sources.pull import Listing, PullConnection, PullSource
from ingestd.intake.sources.retry import PollStopped, RetryPolicy, retrying
from ingestd.message_keys import provider_key

__all__ = ["PollReport", "Poller"]  # PollReport lives in poll_report.py

log = structlog.get_logger("ingestd.pull")

# Polls in a row that fail to fetch one message before it is passed by.
_UNFETCHABLE_AFTER = 5


@dataclass
class Poller:
    engine: Engine
    mailbox: Mailbox
    source: PullSource
    batch_size: int = 25
    identity: str = field(default_factory=poller_identity)
    clock: Clock = utcnow
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stop: threading.Event = field(default_factory=threading.Event)
    # Called after each commit that stored messages (wakes idle workers).
    on_stored: Callable[[], None] | None = None
    # What SMTP would refuse (smtp.max_message_size) is not downloaded either.
    max_message_bytes: int = 26_214_400

    _counted: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False)

    def abort(self) -> None:
        """Stop now (another thread): set the stop flag and drop the open connection."""
        self.stop.set()
        self.source.abort()

    def poll(self) -> PollReport:
        """Poll once; every failure is in the report (and the mailbox's state), never raised."""
        name = self.mailbox.name
        self._counted = set()
        report = PollReport(name)
        lease = MailboxLease(self.engine, name, self.source.kind, self.identity,
                             seconds=2 * self.mailbox.poll_interval, clock=self.clock)
        try:
            holder = lease.acquire()
        except IngestdError as exc:
            report.status, report.error = "error", f"database: {first_line(exc)}"
            log.warning("mailbox.poll_failed", mailbox=name, error=report.error)
            return report
        if holder is not None:
            report.status, report.held_by = "held", holder
            log.debug("mailbox.held_elsewhere", mailbox=name, held_by=holder)
            return report
        outcome: Outcome | None
        try:
            retrying(self.retry, lambda: self._poll_all(lease, report), mailbox=name,
                     before_wait=lease.renew, stop=self.stop,
                     max_wait=self.mailbox.poll_interval / 2)
            outcome = Outcome("ok")
        except PollStopped:
            report.status, outcome = "stopped", None
        except IngestdError as exc:
            outcome = self._failure(exc, report)
        except Exception as exc:  # a bug, or a failure we did not classify: next poll retries
            log.exception("mailbox.poll_crashed", mailbox=name)
            outcome = Outcome("error", f"{type(exc).__name__}: {first_line(exc)}")
        if outcome is not None:
            report.status, report.error = outcome.status, outcome.error
        self._finish(lease, outcome, report)
        return report

    def _failure(self, exc: IngestdError, report: PollReport) -> Outcome | None:
        """What a failed poll records (None: nothing, the mailbox is not in trouble)."""
        if self.stop.is_set():
            # Dropped by abort(): the daemon is stopping.
            report.status, report.error = "stopped", first_line(exc)
            return None
        if isinstance(exc, LeaseLost):
            report.status, report.error = "held", str(exc)
            log.warning("mailbox.lease_lost", mailbox=self.mailbox.name, error=str(exc))
            return None
        if isinstance(exc, CredentialsRejected):
            return Outcome("needs_reauth", first_line(exc))
        return Outcome("error", first_line(exc))

    def _finish(self, lease: MailboxLease, outcome: Outcome | None, report: PollReport) -> None:
        name = self.mailbox.name
        try:
            before = lease.release(outcome)
        except IngestdError as exc:
            log.warning("mailbox.state_not_saved", mailbox=name, error=first_line(exc))
            before = None
        if outcome is not None:
            log_outcome(name, before, outcome, report)

    # --- the work ---------------------------------------------------------------------

    def _poll_all(self, lease: MailboxLease, report: PollReport) -> None:
        connection = self.source.connect()
        refused: list[str] = []
        try:
            for folder in connection.folders():
                if self.stop.is_set():
                    raise PollStopped()
                try:
                    self._poll_folder(connection, folder, lease, report)
                except SourceRefused as exc:
                    # One folder's trouble (it does not exist) must not stop the others.
                    refused.append(first_line(exc))
            if refused:
                raise SourceRefused("; ".join(refused))
        finally:
            if self.stop.is_set():
                self.source.abort()
            connection.close()

    def _poll_folder(self, connection: PullConnection, folder: str, lease: MailboxLease,
                     report: PollReport) -> None:
        name = self.mailbox.name
        stored = checkpoints.load(self.engine, name, folder)
        now = self.clock()
        if stored is None:
            since_date = self.mailbox.import_since
            if since_date is None:
                # First connection: what is there now stays there.
                cursor = connection.baseline(folder)
                self._commit([], lease, folder, FolderCheckpoint(cursor, now))
                log.info("mailbox.first_connection", mailbox=name, folder=folder)
                return
            since = datetime.combine(since_date, time(), UTC)
            listing = connection.list_since(folder, since)
            if folder not in report.backfilled:
                report.backfilled.append(folder)
            log.info("mailbox.backfill", mailbox=name, folder=folder, since=since.isoformat(),
                     listed=len(listing.items))
        else:
            since = stored.since
            try:
                listing = connection.list_new(folder, stored.cursor)
            except CursorLost as exc:
                # Back to the lookback, or further to the last poll that saw the cursor
                # valid (a mailbox out of service longer than the lookback loses nothing),
                # never before the first connection or import_since.
                lookback = now - timedelta(days=self.mailbox.resync_lookback_days)
                seen = stored.checked_at or lookback
                floor = max(min(lookback, seen), since)
                log.warning("mailbox.cursor_lost", mailbox=name, folder=folder,
                            error=first_line(exc), relisting_since=floor.isoformat())
                listing = connection.list_since(folder, floor)
                if folder not in report.resynced:
                    report.resynced.append(folder)
        self._store(connection, folder, listing, since, lease, report)

    def _store(self, connection: PullConnection, folder: str, listing: Listing,
               since: datetime, lease: MailboxLease, report: PollReport) -> None:
        # A long listing must not let the lease run out before the first commit.
        lease.renew()
        items = list(listing.items)
        if not items:
            self._commit([], lease, folder, FolderCheckpoint(listing.cursor_after, since))
            return
        for start in range(0, len(items), self.batch_size):
            if self.stop.is_set():
                raise PollStopped()
            chunk = items[start:start + self.batch_size]
            last = start + self.batch_size >= len(items)
            wanted = not_stored(self.engine, self.source.kind, self.mailbox.name,
                                [i.provider_id for i in chunk])
            if wanted and listing.renamed:
                wanted = not_known_by_headers(self.engine, connection, folder, wanted)
            report.known += len(chunk) - len(wanted)
            messages = (self._fetch(connection, folder, wanted, lease, report)
                        if wanted else [])
            cursor = listing.cursor_after if last else chunk[-1].cursor
            checkpoint = FolderCheckpoint(cursor, since) if cursor is not None else None
            self._commit(messages, lease, folder, checkpoint)
            report.imported += len(messages)

    def _fetch(self, connection: PullConnection, folder: str, wanted: list[str],
               lease: MailboxLease, report: PollReport) -> list[NewMessage]:
        """The batch's messages. When the batch fails, each message is tried alone; one that
        fails alone in _UNFETCHABLE_AFTER polls in a row is passed by (logged, left at the
        source) instead of holding up every message after it for ever."""
        try:
            return self._fetched(connection, folder, wanted, report)
        except (SourceUnavailable, SourceRefused):
            if self.stop.is_set():
                raise
            if len(wanted) == 1:
                if self._count_failure(folder, wanted[0], lease, report):
                    return []
                raise
        messages = []
        for provider_id in wanted:
            messages.extend(self._fetch(connection, folder, [provider_id], lease, report))
        return messages

    def _count_failure(self, folder: str, provider_id: str, lease: MailboxLease,
                       report: PollReport) -> bool:
        """Count this poll's failure to fetch ``provider_id``; True: give up on it."""
        if (folder, provider_id) in self._counted:
            return False  # once per poll, however many retries it takes
        self._counted.add((folder, provider_id))
        with translated("count a failed fetch"), self.engine.begin() as conn:
            lease.renew(conn)
            failures = checkpoints.count_fetch_failure(conn, self.mailbox.name, folder,
                                                       provider_id)
        if failures < _UNFETCHABLE_AFTER:
            return False
        report.unfetchable += 1
        log.error("mailbox.message_unfetchable", mailbox=self.mailbox.name, folder=folder,
                  provider_id=provider_id, polls=failures,
                  detail="passed by; it stays at the source")
        return True

    def _fetched(self, connection: PullConnection, folder: str, wanted: list[str],
                 report: PollReport) -> list[NewMessage]:
        messages = []
        for fetched in connection.fetch(folder, wanted, self.max_message_bytes):
            if fetched.too_large is None:
                messages.append(self._message(fetched.provider_id, fetched.raw))
                continue
            # Left at the source (a copy, nothing is lost there); said once, loudly,
            # since the cursor moves past it.
            report.too_large += 1
            log.error("mailbox.message_too_large", mailbox=self.mailbox.name,
                      folder=folder, provider_id=fetched.provider_id,
                      size=fetched.too_large, limit=self.max_message_bytes)
        return messages

    def _message(self, provider_id: str, raw: bytes) -> NewMessage:
        kind, name = self.source.kind, self.mailbox.name
        return NewMessage(source=kind, source_key=provider_key(kind, name, provider_id),
                          mailbox=name, raw=raw)

    def _commit(self, messages: Sequence[NewMessage], lease: MailboxLease, folder: str,
                checkpoint: FolderCheckpoint | None) -> None:
        name = self.mailbox.name

        def write(conn: sa.Connection) -> None:
            # The guard: no lease, no commit (and the messages roll back with it).
            lease.renew(conn, imported=len(messages))
            if checkpoint is not None:
                checkpoints.save(conn, name, folder, checkpoint, lease.now(conn))

        commit_messages(self.engine, messages, write)
        if messages and self.on_stored is not None:
            self.on_stored()
