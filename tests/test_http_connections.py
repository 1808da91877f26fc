"""Connections that never finish a request are closed; open connections are capped.

Raw sockets against an ``HttpService`` on its own event loop in a thread,
with a short request deadline so each case takes about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingestd.config.settings import DatabaseSettings, HttpSettings, IngestdSettings
from ingestd.db.engine import make_engine
from ingestd.http.context import ApiContext
from ingestd.http.request_limit import RequestLimit
from ingestd.http.server import HttpService

DEADLINE = 1.0
# Far more than the deadline: a connection the server keeps open shows up as a recv timeout.
PATIENCE = 10.0


class Served:
    """An ``HttpService`` running in a thread; ``port`` is where it listens."""

    def __init__(self, service: HttpService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(service.start())
        self.port = service.port

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        self.call(self.service.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=PATIENCE)
        return sock

    def healthz(self) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=PATIENCE)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    running: list[Served] = []

    def start(**bounds: Any) -> Served:
        engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path}/api.db"))
        context = ApiContext(engine, IngestdSettings())
        served = Served(HttpService(HttpSettings(port=0), context, **bounds))
        running.append(served)
        return served

    yield start
    for served in running:
        served.close()


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a timeout means it kept the socket open."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _assert_timed_out(sock: socket.socket, opened: float) -> None:
    received = _until_closed(sock)
    waited = time.monotonic() - opened
    assert DEADLINE * 0.8 <= waited < DEADLINE + 5, waited
    assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received


def test_a_connection_that_sends_nothing_is_closed_after_the_deadline(
    serve: Callable[..., Served]
) -> None:
    served = serve(request_deadline=DEADLINE)
    with served.connect() as sock:
        _assert_timed_out(sock, time.monotonic())


def test_half_sent_headers_are_closed_however_slowly_they_trickle(
    serve: Callable[..., Served]
) -> None:
    served = serve(request_deadline=DEADLINE)
    with served.connect() as sock:
        opened = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        # More bytes keep coming, yet the deadline is not pushed back by them.
        for header in (b"Host: x\r\n", b"Accept: */*\r\n", b"X-A: 1\r\n"):
            time.sleep(DEADLINE / 5)  # the client's pace, not synchronisation
            sock.sendall(header)
        _assert_timed_out(sock, opened)


def test_headers_with_part_of_the_body_are_closed(serve: Callable[..., Served]) -> None:
    served = serve(request_deadline=DEADLINE)
    with served.connect() as sock:
        opened = time.monotonic()
        sock.sendall(b"POST /api/inbox/1/new HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"summ")
        _assert_timed_out(sock, opened)


def test_a_slow_but_complete_request_is_answered(serve: Callable[..., Served]) -> None:
    served = serve(request_deadline=DEADLINE)
    with served.connect() as sock:
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n",
                      b"\r\n"):
            sock.sendall(piece)
            time.sleep(DEADLINE / 8)  # the client's pace, not synchronisation
        received = _until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.endswith(b'{"status":"ok"}')


def test_a_keep_alive_connection_gets_a_new_deadline_for_each_request(
    serve: Callable[..., Served]
) -> None:
    served = serve(request_deadline=DEADLINE)
    with served.connect() as sock:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request)
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {first!r}"
            first += chunk
        assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b'{"status":"ok"}')
        # The second request starts but never finishes: its own deadline closes it.
        answered = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        _assert_timed_out(sock, answered)


def test_a_pipelined_request_left_half_sent_gets_its_408(serve: Callable[..., Served]) -> None:
    served = serve(request_deadline=DEADLINE)
    with served.connect() as sock:
        opened = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n")
        received = _until_closed(sock)
    assert DEADLINE * 0.8 <= time.monotonic() - opened < DEADLINE + 5
    first, _, rest = received.partition(b'{"status":"ok"}')
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received


def test_idle_connections_do_not_turn_other_callers_away(serve: Callable[..., Served]) -> None:
    """More idle sockets than requests allowed at once: a real request is still answered."""
    served = serve(request_deadline=60.0)
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(served.connect()) for _ in range(100)]
        idle[-1].sendall(b"GET /healthz HTTP/1.1\r\n")  # some half way through a request
        response = served.healthz()
        assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_connections_beyond_the_cap_are_closed_at_once(serve: Callable[..., Served]) -> None:
    served = serve(request_deadline=60.0, max_connections=8)
    with contextlib.ExitStack() as stack:
        for _ in range(8):
            stack.enter_context(served.connect())
        # Accepted in order: the ninth is over the cap, with the eight above held open.
        with served.connect() as extra:
            received = _until_closed(extra)
        assert received.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"retry-after: 5" in received
    # Once the idle ones are gone, callers get in again (their closing is noticed shortly).
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            response = served.healthz()
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 200:
            break
        assert time.monotonic() < deadline, "the cap was never released"
        time.sleep(0.05)


def test_an_idle_keep_alive_connection_is_closed_without_a_408(
    serve: Callable[..., Served]
) -> None:
    """No next request was begun: nothing to answer, the connection just closes."""
    served = serve(request_deadline=DEADLINE)
    with served.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = _until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b'{"status":"ok"}')


def test_requests_beyond_the_limit_in_progress_get_503() -> None:
    """Counted per request in progress: the one over the limit is refused, the next is not."""
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def scenario() -> tuple[int, str | None, int, int]:
        transport = httpx.ASGITransport(app=RequestLimit(slow_app, max_requests=1))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            first = asyncio.create_task(client.get("/"))
            await asyncio.wait_for(entered.wait(), PATIENCE)
            refused = await client.get("/")
            release.set()
            done = await first
            again = await client.get("/")
        return (refused.status_code, refused.headers.get("retry-after"), done.status_code,
                again.status_code)

    assert asyncio.run(scenario()) == (503, "1", 204, 204)
