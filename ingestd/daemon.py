"""The daemon's lifecycle: start everything, signal readiness, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ingestd.config.settings import IngestdSettings
from ingestd.db.engine import make_engine
from ingestd.db.schema import ensure_schema
from ingestd.intake.recipients import MailboxAddresses
from ingestd.intake.smtp import start_smtp_server
from ingestd.intake.store import GroupCommitter
from ingestd.worker import Worker, abandon_claim, worker_identity
from ingestd.worker_pool import WorkerProcesses

log = structlog.get_logger("ingestd.daemon")


@dataclass(frozen=True)
class Services:
    """What a started daemon exposes to whoever started it (tests, benchmarks)."""

    smtp_port: int
    committer: GroupCommitter


async def run_until_stopped(
    settings: IngestdSettings,
    stop: asyncio.Event,
    on_ready: Callable[[Services], None] | None = None,
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` is called once SMTP listens."""
    engine = make_engine(settings.database)
    try:
        await asyncio.to_thread(ensure_schema, engine)
        count = settings.processing.worker_count
        wakeup = Wakeup()
        processes: WorkerProcesses | None = None
        tasks: list[asyncio.Task[None]] = []
        if count and settings.processing.isolation == "process":
            timeout = settings.processing.timeout_seconds

            def on_timeout(message_id: int, identity: str, seconds: float) -> None:
                abandon_claim(engine, message_id, identity,
                              f"timeout: processing took longer than {timeout:g} s")

            processes = WorkerProcesses(settings, count, on_timeout)
            on_commit = processes.notify
        else:
            tasks.extend(
                asyncio.create_task(
                    _work(Worker(engine, settings, worker_identity(i)), wakeup, stop,
                          settings.processing.poll_interval_seconds),
                    name=f"worker-{i}",
                )
                for i in range(count)
            )
            on_commit = wakeup.notify
        committer = GroupCommitter(engine, max_batch=settings.smtp.commit_batch_max,
                                   on_commit=on_commit)
        committer.start()
        server = await start_smtp_server(
            settings.smtp, MailboxAddresses.from_settings(settings), committer
        )
        port = server.sockets[0].getsockname()[1]
        if processes is not None:
            # Started once SMTP listens, so a busy port leaves no workers behind.
            processes.start()
            tasks.append(asyncio.create_task(processes.supervise(stop), name="supervisor"))
        log.info("daemon.ready", smtp_host=settings.smtp.host, smtp_port=port,
                 database=engine.dialect.name, mailboxes=len(settings.mailboxes),
                 workers=count, isolation=settings.processing.isolation)
        sd_notify("READY=1")
        if on_ready is not None:
            on_ready(Services(smtp_port=port, committer=committer))
        try:
            await stop.wait()
        finally:
            sd_notify("STOPPING=1")
            server.close()
            await server.wait_closed()
            await committer.stop()
            wakeup.notify()
            # Each worker finishes the message it holds, then stops.
            if processes is not None:
                await processes.stop(timeout=30.0)
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("daemon.stopped")
    finally:
        engine.dispose()


class Wakeup:
    """Tells idle workers that intake committed something."""

    def __init__(self) -> None:
        self._events: list[asyncio.Event] = []

    def event(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.append(event)
        return event

    def notify(self) -> None:
        for event in self._events:
            event.set()


async def _work(worker: Worker, wakeup: Wakeup, stop: asyncio.Event, poll: float) -> None:
    """Process messages until stopped; sleep until woken (or ``poll``) when idle."""
    woken = wakeup.event()
    failures = 0
    while not stop.is_set():
        woken.clear()
        try:
            outcome = await asyncio.to_thread(worker.run_once)
            failures = 0
        except Exception as exc:
            # Database trouble (already retried) or a bug outside any message;
            # back off, never die: the rows stay pending.
            failures += 1
            log.warning("worker.error", worker=worker.identity, error=type(exc).__name__,
                        detail=str(exc)[:300])
            outcome = None
            await asyncio.sleep(min(30.0, 0.5 * 2**min(failures, 6)))
        if outcome is None and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), poll)


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("daemon.notify_failed", error=str(exc))
