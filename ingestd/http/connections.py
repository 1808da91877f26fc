"""Connections that cannot hold the API hostage: a deadline per request, a cap on sockets.

uvicorn times a connection out only while it idles *after* a response; a
client that connects and sends nothing, half its headers, or part of its
body would hold the socket for ever. Enough of them exhaust the daemon's
file descriptors, and SMTP intake's accept fails with the API's. So every
request must arrive whole (headers and body) within ``REQUEST_DEADLINE_SECONDS``
of the connection opening, or of the previous response on a keep-alive
connection; the clock is not reset by each trickled byte, so sending one byte
a second buys nothing. Past ``MAX_OPEN_CONNECTIONS`` a new connection is
closed at once: idle sockets can never use up the descriptors.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger("ingestd.http")

REQUEST_DEADLINE_SECONDS = 10.0
MAX_OPEN_CONNECTIONS = 256
# How often, at most, the cap being reached is logged: a flood must not flood the log too.
_CAP_WARNING_INTERVAL = 60.0


def _plain_answer(status: str, text: str, *extra: bytes) -> bytes:
    """A whole response written before (or instead of) h11's: the connection closes after it."""
    body = text.encode("ascii")
    head = [f"HTTP/1.1 {status}".encode("ascii"), b"content-type: text/plain; charset=utf-8",
            b"connection: close", *extra, b"content-length: %d" % len(body)]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_TIMED_OUT = _plain_answer("408 Request Timeout", "the request did not arrive in time")
_TOO_MANY = _plain_answer("503 Service Unavailable", "too many open connections",
                          b"retry-after: 5")

# The client's side of a request still arriving: headers awaited, or body incomplete.
_ARRIVING = (h11.IDLE, h11.SEND_BODY)
# Our side before any byte of the answer to the current request was sent.
_UNANSWERED = (h11.IDLE, h11.SEND_RESPONSE)


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with the request deadline and the connection cap."""

    request_deadline = REQUEST_DEADLINE_SECONDS
    max_open_connections = MAX_OPEN_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_open_connections:
            _warn_cap_reached(len(self.connections))
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        # Called for every piece of data and when a keep-alive connection starts its next
        # request: the one place to see a request begin and end.
        super().handle_events()
        if self.transport.is_closing():
            self._disarm()
        elif self.conn.their_state in _ARRIVING:
            self._arm()
        else:
            self._disarm()  # received whole: the handler may take as long as it takes

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_deadline, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.conn.our_state in _UNANSWERED and self._owes_an_answer():
            self.transport.write(_TIMED_OUT)
        if self.cycle is not None and not self.cycle.response_complete:
            # A handler still waiting for the body must not write after our 408.
            self.cycle.disconnected = True
        log.debug("http.request_timed_out", client=_client(self.client))
        self.transport.close()


    def _owes_an_answer(self) -> bool:
        """A 408 for a request begun, or a first one; not for an idle keep-alive connection."""
        if self.cycle is None or self.conn.their_state is h11.SEND_BODY:
            return True
        # Part of the next request's headers waits in h11's (bounded) buffer.
        return bool(self.conn.trailing_data[0])


def deadline_protocol(request_deadline: float = REQUEST_DEADLINE_SECONDS,
                      max_open_connections: int = MAX_OPEN_CONNECTIONS
                      ) -> type[DeadlineH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with these bounds."""
    if (request_deadline, max_open_connections) == (REQUEST_DEADLINE_SECONDS,
                                                    MAX_OPEN_CONNECTIONS):
        return DeadlineH11Protocol
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,), {
        "request_deadline": request_deadline, "max_open_connections": max_open_connections})


def _client(address: tuple[str, int] | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None


_last_cap_warning = -_CAP_WARNING_INTERVAL


def _warn_cap_reached(open_now: int) -> None:
    global _last_cap_warning
    now = time.monotonic()
    if now - _last_cap_warning >= _CAP_WARNING_INTERVAL:
        _last_cap_warning = now
        log.warning("http.connection_cap_reached", open=open_now - 1)
