"""Talking to systemd: readiness (``Type=notify``) and the watchdog (``WatchdogSec=``).

The watchdog pings are sent by a task on the daemon's event loop itself: if
the loop is stuck (a blocking call, a deadlock), the pings stop and systemd
restarts the daemon after ``WatchdogSec``. A ping from a separate thread
would keep a wedged daemon alive. Outside systemd both are no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import structlog

log = structlog.get_logger("ingestd.systemd")


def sd_notify(state: str) -> None:
    """Tell systemd about our state (``READY=1``, ``WATCHDOG=1`` ...); a no-op outside it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("daemon.notify_failed", error=str(exc))


def watchdog_interval() -> float | None:
    """Seconds between pings (half of ``WatchdogSec``, as systemd advises), or None.

    ``WATCHDOG_PID`` names the process systemd expects the pings from; when it
    is another one (we were started by something systemd watches), we stay quiet.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


class Watchdog:
    """A service pinging ``WATCHDOG=1`` from the event loop while the daemon runs."""

    name = "watchdog"

    def __init__(self) -> None:
        self.interval = watchdog_interval()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.interval is not None:
            log.info("daemon.watchdog", interval_seconds=self.interval)
            self._task = asyncio.create_task(self._ping(self.interval), name="watchdog")

    async def _ping(self, interval: float) -> None:
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
