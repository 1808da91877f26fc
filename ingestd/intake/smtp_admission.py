"""Who may open an SMTP session (allowed networks, connection limits, not while draining),
and the open sessions a drain waits for."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from ingestd.intake.client_networks import REPLY_NOT_ALLOWED, ClientNetworks
from ingestd.intake.connection_limits import ConnectionLimits
from ingestd.intake.smtp_replies import REPLY_SHUTTING_DOWN, REPLY_TOO_MANY_CONNECTIONS, emit

if TYPE_CHECKING:
    from ingestd.intake.smtp_session import IngestSMTP

log = structlog.get_logger("ingestd.smtp")


class Sessions:
    """The open SMTP sessions, so that a stop can drain them."""

    def __init__(self) -> None:
        self.open: set[IngestSMTP] = set()
        self.draining = False
        self.changed = asyncio.Event()

    def in_data(self) -> list[IngestSMTP]:
        return [s for s in self.open if s.in_data]

    def left(self, session: IngestSMTP) -> None:
        self.open.discard(session)
        self.changed.set()


def admit(ip: str, *, draining: bool, networks: ClientNetworks,
          limits: ConnectionLimits) -> bytes | None:
    """None: the client at ``ip`` has a slot now (release it when it leaves). Else the
    reply that refuses it."""
    if draining:
        # Accepted just before the listener closed: no session, no slot.
        return REPLY_SHUTTING_DOWN
    if not networks.allows(ip):
        # Before the limits: a client that may not send takes no slot.
        emit(log.warning, "smtp.connection_refused", peer=ip,
             reason="not in smtp.allowed_networks")
        return REPLY_NOT_ALLOWED % ip.encode("ascii", "replace")
    if not limits.admit(ip):
        emit(log.warning, "smtp.connection_refused", peer=ip, reason="too many connections")
        return REPLY_TOO_MANY_CONNECTIONS
    return None
