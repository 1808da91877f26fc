"""The HTTP server as a daemon service: its port, turning it off, and readiness failing."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingestd.config import load_settings
from ingestd.config.settings import DatabaseSettings, HttpSettings, IngestdSettings
from ingestd.db.engine import make_engine
from ingestd.errors import ListenFailed
from ingestd.http.body_limit import MAX_BODY_BYTES
from ingestd.http.context import ApiContext
from ingestd.http.readiness import readiness_checks
from ingestd.http.server import HttpService
from ingestd.workers.processes import WorkerProcesses
from tests.conftest import DaemonThread, base_config, write_config


def _settings(tmp_path: Path, sqlite_url: str, **http: Any) -> IngestdSettings:
    config = base_config(sqlite_url)
    config["http"] = http
    return load_settings(write_config(tmp_path, config))


def test_a_taken_port_stops_start_up_with_a_clear_error(tmp_path: Path, sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = DaemonThread(_settings(tmp_path, sqlite_url, port=port))
        with pytest.raises(ListenFailed, match=f"HTTP API cannot listen on 127.0.0.1:{port}"):
            daemon.start()
    # Everything started before the HTTP API was stopped again: the daemon exited.


def test_a_taken_port_fails_before_any_worker_process_spawns(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[int] = []
    monkeypatch.setattr(WorkerProcesses, "_spawn", lambda self, index: spawned.append(index))
    closed: list[HttpService] = []
    close = HttpService.close

    def recording_close(self: HttpService) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(HttpService, "close", recording_close)
    config = base_config(sqlite_url)
    config["http"] = {"port": 0}
    config["processing"] = {"workers": 2, "isolation": "process"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config["http"]["port"] = taken.getsockname()[1]
        daemon = DaemonThread(load_settings(write_config(tmp_path, config)))
        with pytest.raises(ListenFailed, match="HTTP API cannot listen"):
            daemon.start()
    assert spawned == []
    assert len(closed) == 1  # the API's socket and engine were let go of


def test_enabled_false_serves_no_http(tmp_path: Path, sqlite_url: str) -> None:
    daemon = DaemonThread(_settings(tmp_path, sqlite_url, enabled=False))
    daemon.start()
    try:
        assert daemon.services is not None and daemon.services.http_port is None
    finally:
        daemon.stop()


def test_port_zero_picks_a_free_port_and_healthz_answers(tmp_path: Path, sqlite_url: str) -> None:
    daemon = DaemonThread(_settings(tmp_path, sqlite_url, port=0))
    daemon.start()
    try:
        assert daemon.services is not None and daemon.services.http_port
        response = httpx.get(f"http://127.0.0.1:{daemon.services.http_port}/healthz")
        assert response.json() == {"status": "ok"}
    finally:
        daemon.stop()


class _StoppedListener:
    ready = False
    port = 2525


def test_readyz_is_503_and_names_each_failing_check(tmp_path: Path) -> None:
    """A database that cannot be opened and an SMTP listener that is down, reported as such."""
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path}/gone/x.db"))
    shutil.rmtree(tmp_path / "gone")  # the volume it lived on went away
    context = ApiContext(engine, IngestdSettings(), readiness_checks(engine, _StoppedListener()))

    async def scenario() -> httpx.Response:
        service = HttpService(HttpSettings(port=0), context)
        await service.start()
        try:
            async with httpx.AsyncClient() as client:
                return await client.get(f"http://127.0.0.1:{service.port}/readyz")
        finally:
            await service.stop()

    response = asyncio.run(scenario())
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["smtp"] == {"ok": False, "detail": "not listening"}
    assert body["checks"]["database"]["ok"] is False
    # The driver's text (paths, hosts) stays in the log, out of an unauthenticated answer.
    assert body["checks"]["database"]["detail"] == "failed: StorageUnavailable"


def test_an_oversized_body_is_413_before_anything_reads_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    """No token needed to be refused: the bound holds before authentication."""
    daemon = DaemonThread(_settings(tmp_path, sqlite_url, port=0))
    daemon.start()
    try:
        assert daemon.services is not None
        url = f"http://127.0.0.1:{daemon.services.http_port}/api/inbox/1/new"
        declared = httpx.post(url, content=b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}")
        assert declared.status_code == 413
        assert declared.json() == {"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(100):
                yield b" " * 4096

        streamed = httpx.post(url, content=chunks())
        assert streamed.status_code == 413
        # Within the bound the request goes on to authentication as usual.
        assert httpx.post(url, json={"summary": "x"}).status_code == 401
    finally:
        daemon.stop()
