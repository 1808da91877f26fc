"""Serve the API with uvicorn inside the daemon's event loop, as one of its services.

We bind the listening socket ourselves: a taken port is then our
``ListenFailed`` at start-up (uvicorn would call ``sys.exit``), and port 0
yields the port actually chosen. uvicorn's own signal handling is turned
off: the daemon owns SIGTERM and SIGINT and stops this service in its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import structlog
import uvicorn

from ingestd.config.settings import HttpSettings
from ingestd.errors import ListenFailed
from ingestd.http.app import create_app
from ingestd.http.connections import (
    MAX_OPEN_CONNECTIONS,
    REQUEST_DEADLINE_SECONDS,
    deadline_protocol,
)
from ingestd.http.context import ApiContext

log = structlog.get_logger("ingestd.http")

# A request still running at stop gets this long before its connection is closed.
_GRACEFUL_STOP_SECONDS = 5
_START_TIMEOUT_SECONDS = 10.0


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpService:

    def __init__(self, settings: HttpSettings, context: ApiContext, *,
                 request_deadline: float = REQUEST_DEADLINE_SECONDS,
                 max_connections: int = MAX_OPEN_CONNECTIONS, health_only: bool = False,
                 dispose_engine: bool = True) -> None:
        """``health_only``: the listener of ``settings.health_listen``, health routes only.

        Without it, the API (and the health routes unless they have their own listener).
        ``dispose_engine``: the engine in ``context`` is this service's to dispose of.
        """
        self._settings = settings
        self._context = context
        self._health_only = health_only
        self._dispose_engine = dispose_engine
        listen = settings.health_listen
        if health_only:
            assert listen is not None
            self._host, self._wanted_port, self.label = listen.host, listen.port, "health"
        else:
            self._host, self._wanted_port, self.label = settings.host, settings.port, "HTTP API"
        self.name = "http-health" if health_only else "http"
        self._protocol = deadline_protocol(request_deadline, max_connections)
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def ready(self) -> bool:
        return self._server is not None and self._server.started

    def bind(self) -> None:
        """Take the port now: the daemon calls this before anything starts (workers spawn)."""
        if self._socket is None:
            self._socket = _listening_socket(self._host, self._wanted_port, self.label)
            self.port = int(self._socket.getsockname()[1])

    def close(self) -> None:
        """Let go of what an HTTP API that never started holds: its socket and its engine."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._dispose_engine:
            self._context.engine.dispose()

    async def start(self) -> None:
        self.bind()
        sock = self._socket
        assert sock is not None
        separate = self._settings.health_listen is not None
        app = create_app(self._context, health=self._health_only or not separate,
                         api=not self._health_only)
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=_GRACEFUL_STOP_SECONDS, server_header=False,
            # Requests must arrive whole in time and open connections are capped (see
            # connections.py); requests in progress are bounded by the app (request_limit.py).
            http=self._protocol, ws="none", timeout_keep_alive=5,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http")
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT_SECONDS
        while not self._server.started:
            if self._task.done():
                sock.close()
                raise ListenFailed(f"{self.label} did not start: {self._task.exception()!r}")
            if asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise ListenFailed(f"{self.label} did not start in time")
            await asyncio.sleep(0.01)
        log.info("http.listening", host=self._host, port=self.port,
                 serves="health" if self._health_only else "api")

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, _GRACEFUL_STOP_SECONDS + 5)
        except TimeoutError:
            self._task.cancel()
        finally:
            # The API's own engine (see daemon._http): nothing else uses it.
            if self._dispose_engine:
                self._context.engine.dispose()
        log.info("http.stopped", serves="health" if self._health_only else "api")


def _listening_socket(host: str, port: int, label: str) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ListenFailed(f"{label} cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenFailed(f"{label} cannot listen on {host}:{port}: {exc}") from exc
    return sock
