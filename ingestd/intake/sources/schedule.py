"""The daemon's pollers: one APScheduler interval job per pulled mailbox, polls in threads.

APScheduler 3.11 (``AsyncIOScheduler``) runs in the daemon's event loop; a
job hands its poll to a small thread pool (imaplib and the database driver
block), so one slow or failing mailbox never delays another's poll beyond
the pool's size. ``max_instances=1`` keeps a mailbox's polls from
overlapping in this process; the lease keeps them from overlapping across
processes and hosts. Jitter spreads polls of many mailboxes (and of several
instances) over time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import Engine

from ingestd.config.settings import IngestdSettings, Mailbox
from ingestd.db.engine import make_engine
from ingestd.intake.sources.lease import poller_identity
from ingestd.intake.sources.poll import Poller, PollReport
from ingestd.intake.sources.registry import batch_size, source_for
from ingestd.intake.sources.retry import RetryPolicy

log = structlog.get_logger("ingestd.pull")

# Polls of different mailboxes at once, at most.
_MAX_PARALLEL = 8
# How long stop() lets a running poll reach its next batch boundary before it
# drops the poll's connection, and then how long it waits for the thread.
_STOP_GRACE_SECONDS = 3.0
_STOP_WAIT_SECONDS = 10.0


def pulled_mailboxes(settings: IngestdSettings) -> list[Mailbox]:
    return [m for m in settings.mailboxes if m.pulled and m.enabled]


def jitter_seconds(mailbox: Mailbox) -> float:
    return min(mailbox.poll_interval * 0.1, 30.0)


class MailboxPollers:
    name = "pollers"

    def __init__(self, settings: IngestdSettings, on_stored: Callable[[], None] | None = None,
                 *, retry: RetryPolicy | None = None, identity: str | None = None) -> None:
        self._settings = settings
        self._on_stored = on_stored
        self._retry = retry or RetryPolicy()
        self._identity = identity or poller_identity()
        self._stop = threading.Event()
        self._running: dict[concurrent.futures.Future[PollReport], Poller] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._engine: Engine | None = None

    async def start(self) -> None:
        mailboxes = pulled_mailboxes(self._settings)
        for mailbox in self._settings.mailboxes:
            if mailbox.pulled and not mailbox.enabled:
                log.info("mailbox.disabled", mailbox=mailbox.name, source=mailbox.source)
        if not mailboxes:
            return
        # Sized for every pulled mailbox, enabled or not: SIGHUP may enable one.
        parallel = min(len([m for m in self._settings.mailboxes if m.pulled]), _MAX_PARALLEL)
        self._engine = make_engine(self._settings.database, pool_size=parallel + 1)
        self._executor = concurrent.futures.ThreadPoolExecutor(parallel,
                                                               thread_name_prefix="poll")
        # Our own events report every poll; APScheduler's "skipped: maximum number
        # of running instances" would repeat that a poll outlasted its interval.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        for mailbox in mailboxes:
            self._schedule(mailbox)
        self._scheduler.start()
        log.info("pollers.started", mailboxes=[m.name for m in mailboxes], parallel=parallel,
                 identity=self._identity)

    def _schedule(self, mailbox: Mailbox) -> None:
        assert self._scheduler is not None and self._engine is not None
        poller = Poller(self._engine, mailbox, source_for(mailbox),
                        batch_size=batch_size(mailbox), identity=self._identity,
                        retry=self._retry, stop=self._stop, on_stored=self._on_stored,
                        max_message_bytes=self._settings.smtp.max_message_size)
        first = datetime.now(UTC) + timedelta(
            seconds=random.uniform(0, min(mailbox.poll_interval, 5.0)))
        self._scheduler.add_job(
            self._poll, "interval", args=[poller], id=f"poll:{mailbox.name}",
            seconds=mailbox.poll_interval, jitter=jitter_seconds(mailbox),
            next_run_time=first, max_instances=1, coalesce=True, replace_existing=True,
            misfire_grace_time=max(1, int(mailbox.poll_interval)))

    def reload(self, settings: IngestdSettings) -> None:
        """New pull settings from each mailbox's next poll (a poll under way keeps its own).

        A mailbox that changed is scheduled anew (its interval, credentials, folders);
        one disabled stops being polled. Pulls that began with none at start-up need
        a restart (no scheduler, no connection pool for them).
        """
        old = {m.name: m for m in self._settings.mailboxes}
        self._settings = settings
        if self._scheduler is None:
            if pulled_mailboxes(settings):
                log.warning("config.restart_needed", keys=["mailboxes"],
                            detail="the first pulled mailbox starts polling after a restart")
            return
        for mailbox in settings.mailboxes:
            if old.get(mailbox.name) == mailbox:
                continue
            job = f"poll:{mailbox.name}"
            if mailbox.pulled and mailbox.enabled:
                self._schedule(mailbox)
                log.info("mailbox.rescheduled", mailbox=mailbox.name,
                         poll_interval=mailbox.poll_interval)
            elif self._scheduler.get_job(job) is not None:
                self._scheduler.remove_job(job)
                log.info("mailbox.disabled", mailbox=mailbox.name, source=mailbox.source)

    async def _poll(self, poller: Poller) -> None:
        if self._executor is None or self._stop.is_set():
            return
        future = self._executor.submit(poller.poll)
        self._running[future] = poller
        try:
            await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # The scheduler is shutting down; stop() waits for (or drops) the poll itself.
            return
        except Exception:
            log.exception("mailbox.poll_crashed", mailbox=poller.mailbox.name)
        finally:
            self._running.pop(future, None)

    async def stop(self) -> None:
        self._stop.set()
        # Taken first: shutting the scheduler down cancels the jobs that track them.
        running = dict(self._running)
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if running:
            # Polls stop at their next batch boundary; what they committed stays. One
            # waiting on a silent server has its connection dropped instead.
            _, late = await asyncio.to_thread(concurrent.futures.wait, list(running),
                                              timeout=_STOP_GRACE_SECONDS)
            for future in late:
                running[future].abort()
            if late:
                await asyncio.to_thread(concurrent.futures.wait, late,
                                        timeout=_STOP_WAIT_SECONDS)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._engine is not None:
            self._engine.dispose()
        log.info("pollers.stopped")
