"""The daemon's lifecycle: start a list of services, signal readiness, stop cleanly.

A service is anything with ``name``, ``start()``, ``stop()`` and ``ready``:
the intake committer, the SMTP listener, the workers (threads or
processes), and next the mailbox pollers and the HTTP API. They start in
order; if one fails to start, those already started are stopped again. They
stop in the order that loses nothing: SMTP first (its sessions drain into
the committer), then the committer (it finishes what was submitted), then
the workers (each finishes its message). The mailbox pollers start after the
workers and stop before SMTP; the HTTP API starts last and stops first.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog
from sqlalchemy.engine import Engine

from ingestd import queue
from ingestd.config.settings import IngestdSettings
from ingestd.db.engine import make_engine
from ingestd.db.errors import translated
from ingestd.db.schema import ensure_schema
from ingestd.intake.commit import GroupCommitter
from ingestd.intake.recipients import MailboxAddresses
from ingestd.intake.smtp import SmtpService
from ingestd.intake.sources.schedule import MailboxPollers, pulled_mailboxes
from ingestd.metrics.exposition import Metrics
from ingestd.metrics.state import StateCollector
from ingestd.pids import pid_running
from ingestd.pipeline.runner import Pipeline
from ingestd.reload import RulesReloader
from ingestd.systemd import Watchdog, sd_notify
from ingestd.workers.processes import WorkerProcesses
from ingestd.workers.threads import WorkerThreads
from ingestd.workers.worker import abandon_claim

if TYPE_CHECKING:
    from ingestd.http.server import HttpService

log = structlog.get_logger("ingestd.daemon")


class Service(Protocol):
    name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Services:
    """What a started daemon exposes to whoever started it (tests, benchmarks)."""

    smtp_port: int
    committer: GroupCommitter
    http_port: int | None = None  # None: the HTTP API is turned off
    health_port: int | None = None  # set with http.health_listen


async def run_until_stopped(
    settings: IngestdSettings,
    stop: asyncio.Event,
    on_ready: Callable[[Services], None] | None = None,
    pipeline: Pipeline | None = None,
    load: Callable[[], IngestdSettings] | None = None,
    reload_requested: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` is called once every service runs.

    With ``load`` (how to read the configuration again), the rules are reloaded when
    ``reload_requested`` is set (SIGHUP) and when a rule file changes.
    """
    engine = make_engine(settings.database)
    try:
        await asyncio.to_thread(ensure_schema, engine)
        await asyncio.to_thread(warn_unknown_references, engine, settings)
        released = await asyncio.to_thread(release_claims_of_dead_processes, engine)
        if released:
            log.warning("daemon.released_dead_claims", messages=released)
        metrics = Metrics(worker_processes=settings.processing.isolation == "process"
                          and settings.processing.worker_count > 0)
        workers = _workers(engine, settings, pipeline, metrics)
        committer = GroupCommitter(
            engine, max_batch=settings.smtp.commit_batch_max,
            max_queued=settings.smtp.max_queued_messages,
            reply_within=settings.database.reply_within_seconds,
            attempt_seconds=settings.database.attempt_seconds,
            on_commit=workers.notify if workers is not None else None,
        )
        smtp = SmtpService(settings.smtp, MailboxAddresses.from_settings(settings), committer)
        # Its own connection: /metrics needs no token and must never hold intake's.
        metrics_engine = make_engine(settings.database, pool_size=1)
        metrics.add_state(StateCollector(
            metrics_engine, lambda: reloader.settings if reloader is not None else settings,
            lambda: (smtp.budget.used, smtp.budget.limit)))
        http, health = _http(settings, smtp, metrics) if settings.http.enabled else (None, None)
        listeners = [s for s in (http, health) if s is not None]
        pollers = (MailboxPollers(settings, on_stored=workers.notify if workers else None)
                   if pulled_mailboxes(settings) else None)
        # SMTP before the workers: a busy port fails start-up before processes spawn.
        # Pollers once the workers run (what they store is processed at once), and
        # stopped before SMTP: a poll ends at its next batch, all of it committed.
        # HTTP is bound before all of them, started last (its readiness reports SMTP)
        # and stopped first: no action starts while the rest shuts down.
        reloader = (RulesReloader(settings, load, [workers] if workers else [],
                                  reload_requested or asyncio.Event(), pollers=pollers,
                                  smtp=smtp)
                    if load is not None else None)
        starting: list[Service] = [committer, smtp, *([workers] if workers else []),
                                   *([pollers] if pollers else []), *listeners,
                                   *([reloader] if reloader else [])]
        stopping: list[Service] = [*([reloader] if reloader else []),
                                   *listeners, *([pollers] if pollers else []),
                                   smtp, committer, *([workers] if workers else [])]
        started: list[Service] = []
        # Pinging from the first service started to the last one stopped: a
        # start-up or a drain that hangs is a hang too (TimeoutStopSec ends a drain).
        watchdog = Watchdog()
        try:
            await watchdog.start()
            for listener in listeners:
                # Its port taken before anything starts: a busy one fails start-up
                # before worker processes spawn, like SMTP's.
                listener.bind()
            for service in starting:
                await service.start()
                started.append(service)
            log.info("daemon.ready", smtp_host=settings.smtp.host, smtp_port=smtp.port,
                     http_port=http.port if http else None,
                     health_port=health.port if health else None,
                     database=engine.dialect.name, mailboxes=len(settings.mailboxes),
                     workers=settings.processing.worker_count,
                     isolation=settings.processing.isolation)
            sd_notify("READY=1")
            if on_ready is not None:
                on_ready(Services(smtp_port=smtp.port, committer=committer,
                                  http_port=http.port if http else None,
                                  health_port=health.port if health else None))
            await stop.wait()
            sd_notify("STOPPING=1")
        finally:
            for service in stopping:
                if service in started:
                    try:
                        await service.stop()
                    except Exception as exc:
                        log.error("daemon.stop_failed", service=service.name,
                                  error=type(exc).__name__, detail=str(exc)[:300])
            for listener in listeners:
                if listener not in started:
                    listener.close()  # its socket (and the API's engine)
            await watchdog.stop()
            metrics.close()
            metrics_engine.dispose()
            log.info("daemon.stopped")
    finally:
        engine.dispose()


def _http(settings: IngestdSettings, smtp: SmtpService, metrics: Metrics
          ) -> tuple[HttpService, HttpService | None]:
    """The API's listener, and health's own when ``http.health_listen`` is set."""
    # Imported here: FastAPI and uvicorn load only when the API is on.
    from ingestd.http.context import ApiContext
    from ingestd.http.readiness import readiness_checks
    from ingestd.http.server import HttpService

    # Its own small pool: API calls must never hold the connections intake
    # needs to answer SMTP senders in time.
    api_engine = make_engine(settings.database, pool_size=4)
    context = ApiContext(api_engine, settings, readiness_checks(api_engine, smtp), metrics)
    health = (HttpService(settings.http, context, health_only=True, dispose_engine=False)
              if settings.http.health_listen is not None else None)
    return HttpService(settings.http, context), health


def _workers(engine: Engine, settings: IngestdSettings, pipeline: Pipeline | None,
             metrics: Metrics) -> WorkerThreads | WorkerProcesses | None:
    count = settings.processing.worker_count
    if not count:
        return None
    if settings.processing.isolation == "thread":
        # Their own engine (its pool sized for them): worker threads must never
        # take the connection intake needs to answer its senders in time.
        return WorkerThreads(make_engine(settings.database, pool_size=count + 1), settings,
                             count, pipeline)
    timeout = settings.processing.timeout_seconds

    def on_timeout(message_id: int, identity: str, seconds: float) -> None:
        # Trying again would cost the same again: a person looks at it first.
        abandon_claim(engine, message_id, identity,
                      f"timeout: processing took longer than {timeout:g} s", quarantine=True)

    return WorkerProcesses(settings, count, on_timeout, pipeline,
                           str(metrics.directory) if metrics.directory else None)


def warn_unknown_references(engine: Engine, settings: IngestdSettings) -> None:
    """Teams and agents rules name but the directory lacks: a warning, not a refusal (the
    directory may be imported after the rules are written)."""
    if not settings.rules:
        return
    from ingestd.rules.references import unknown_references

    with translated("check rules"), engine.connect() as conn:
        for problem in unknown_references(conn, settings.rules):
            log.warning("rules.unknown_reference", problem=problem)


def release_claims_of_dead_processes(engine: Engine) -> list[int]:
    """Claims of this host's processes that are gone are free now, not after the lease.

    Our own pid counts as gone: nothing of ours has claimed anything yet, and
    a container restarted with the same host name and pid (PID 1) would
    otherwise find its predecessor's claims "alive".
    """
    me = os.getpid()
    with translated("release dead claims"), engine.begin() as conn:
        return queue.release_dead_claims(conn, socket.gethostname(),
                                         lambda pid: pid != me and pid_running(pid))
