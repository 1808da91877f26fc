"""The daemon's lifecycle: start everything, signal readiness, stop cleanly."""

from __future__ import annotations

import asyncio
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
        committer = GroupCommitter(engine)
        committer.start()
        server = await start_smtp_server(
            settings.smtp, MailboxAddresses.from_settings(settings), committer
        )
        port = server.sockets[0].getsockname()[1]
        log.info("daemon.ready", smtp_host=settings.smtp.host, smtp_port=port,
                 database=engine.dialect.name, mailboxes=len(settings.mailboxes))
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
            log.info("daemon.stopped")
    finally:
        engine.dispose()


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
