"""Shared fixtures: both database back ends, config files, an in-process daemon."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from ingestd.config import load_settings
from ingestd.config.settings import DatabaseSettings, IngestdSettings
from ingestd.daemon import Services, run_until_stopped
from ingestd.db.engine import make_engine
from ingestd.db.schema import upgrade
from ingestd.db.tables import INBOUND
from tests.faultproxy import FaultProxy
from tests.imapserver import Dovecot, ImapUser
from tests.imapserver import available as dovecot_available
from tests.support.postgres import PostgresServer, find_bindir, remove_server, start_server

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures" / "emails"
TEMPLATE_DB = "ingestd_template"
IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, with a migrated template database."""
    if find_bindir() is None:
        if IN_CI:
            pytest.fail("PostgreSQL binaries are missing; CI must run the PostgreSQL tests")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    server = start_server()
    try:
        admin = sa.create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {TEMPLATE_DB}"))
        admin.dispose()
        engine = make_engine(DatabaseSettings(url=server.url(TEMPLATE_DB)))
        upgrade(engine)
        engine.dispose()
        yield server
    finally:
        remove_server(server)


def inbound_rows(engine: Engine) -> list[Any]:
    table = INBOUND
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table).order_by(table.c.id)))


_db_counter = itertools.count(1)


def new_pg_database(server: PostgresServer, template: str = TEMPLATE_DB) -> str:
    name = f"t{os.getpid()}_{next(_db_counter)}"
    admin = sa.create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE {template}"))
    admin.dispose()
    return server.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once for each back end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ingestd.db"
    server = request.getfixturevalue("pg_server")
    return new_pg_database(server)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ingestd.db"


def base_config(db_url: str) -> dict[str, Any]:
    return {
        "database": {"url": db_url, "busy_timeout_ms": 5000},
        "smtp": {"host": "127.0.0.1", "port": 0, "max_message_size": 1_048_576,
                 "max_recipients": 5},
        # A free port each: tests run several daemons, and 8025 may be taken.
        "http": {"port": 0},
        # Intake tests look at rows as stored; processing tests turn workers on.
        "processing": {"workers": 0},
        "logging": {"level": "warning"},
        "mailboxes": [
            {"name": "support", "addresses": ["support@example.com", "help@example.com"]},
            {"name": "sales", "addresses": ["sales@example.com"], "ticket_type": "opportunity"},
        ],
    }


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    path = directory / "ingestd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path, base_config(db_url))


@dataclass
class RunningDaemon:
    settings: IngestdSettings
    port: int
    engine: Engine
    services: Services

    def rows(self) -> list[Any]:
        """All inbound_messages rows, oldest first, with typed (JSON) columns."""
        return inbound_rows(self.engine)


class DaemonThread:
    """``run_until_stopped`` on its own event loop in a thread, on a real socket."""

    def __init__(self, settings: IngestdSettings) -> None:
        self.settings = settings
        self.port: int | None = None
        self.services: Services | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="daemon", daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await run_until_stopped(self.settings, self._stop, self._on_ready)

        try:
            asyncio.run(serve())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def _on_ready(self, services: Services) -> None:
        self.services = services
        self.port = services.smtp_port
        self._ready.set()

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("daemon did not become ready")
        if self.error is not None:
            raise self.error
        assert self.port is not None
        return self.port

    def block_loop(self, seconds: float) -> None:
        """Make the daemon's event loop hang for ``seconds`` (a stuck loop, for the watchdog)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(time.sleep, seconds)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "daemon did not stop"


@pytest.fixture
def start_daemon() -> Iterator[Any]:
    """Start daemons from settings; all are stopped at the end of the test."""
    started: list[tuple[DaemonThread, Engine]] = []

    def start(config_path: Path) -> RunningDaemon:
        settings = load_settings(config_path)
        thread = DaemonThread(settings)
        port = thread.start()
        engine = make_engine(settings.database)
        started.append((thread, engine))
        assert thread.services is not None
        return RunningDaemon(settings, port, engine, thread.services)

    yield start
    for thread, engine in started:
        engine.dispose()
        thread.stop()


@pytest.fixture
def daemon(start_daemon: Any, config_file: Path) -> RunningDaemon:
    """A daemon on the default test config, for each back end."""
    return start_daemon(config_file)


@pytest.fixture(params=["ingest", "smtp"])
def env(request: pytest.FixtureRequest, tmp_path: Path, db_url: str, start_daemon: Any) -> Any:
    """Processing through `ingest` or over SMTP into a running daemon, on each back end."""
    from tests.processing_env import ProcessingEnv, import_directory, processing_config

    overrides = getattr(request, "param_overrides", {})
    config = processing_config(db_url, **overrides)
    path = write_config(tmp_path, config)
    import_directory(path)
    engine = make_engine(load_settings(path).database)
    processing_env = ProcessingEnv(path, engine, request.param)
    if request.param == "smtp":
        processing_env.port = start_daemon(path).port
    yield processing_env
    engine.dispose()


def _require_dovecot() -> None:
    if not dovecot_available():
        if IN_CI:
            pytest.fail("Dovecot is missing; CI must run the IMAP tests")
        pytest.skip("Dovecot not installed (apt-get install dovecot-imapd)")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One real Dovecot IMAP server for the session (plain + STARTTLS, and implicit TLS)."""
    _require_dovecot()
    server = Dovecot()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def dovecot_oauth() -> Iterator[Dovecot]:
    """A second Dovecot that also takes XOAUTH2/OAUTHBEARER tokens (``dovecot_oauth.oauth``
    grants and revokes them); a server of its own so the plain one stays as it was."""
    _require_dovecot()
    server = Dovecot(oauth2=True)
    try:
        yield server
    finally:
        server.close()


_imap_user_counter = itertools.count(1)


@pytest.fixture
def imap_user(dovecot: Dovecot) -> ImapUser:
    """A user of its own for each test, with an empty INBOX, so no test sees another's mail."""
    # A test that stopped the shared server and then failed must not take the next one down.
    dovecot.start()
    user = ImapUser(f"user{next(_imap_user_counter)}", secrets.token_hex(8))
    dovecot.add_user(user.name, user.password)
    return user


@pytest.fixture
def oauth_user(dovecot_oauth: Dovecot) -> ImapUser:
    """A fresh user of the OAuth Dovecot; no token is granted to them yet."""
    dovecot_oauth.start()
    user = ImapUser(f"oauth{next(_imap_user_counter)}", secrets.token_hex(8))
    dovecot_oauth.add_user(user.name, user.password)
    return user


@pytest.fixture
def imap_proxy(dovecot: Dovecot) -> Iterator[FaultProxy]:
    """A fault proxy in front of Dovecot's plain IMAP port, closed after the test."""
    proxy = FaultProxy(dovecot.host, dovecot.port)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def gmail_fake() -> Iterator[Any]:
    """A fresh Gmail API + token endpoint fake (tests/gmailfake.py), closed after the test.

    Typed ``Any`` only because this file is appended to; it is a ``tests.gmailfake.GmailFake``.
    """
    from tests.gmailfake import GmailFake

    fake = GmailFake()
    try:
        yield fake
    finally:
        fake.close()
    assert fake.errors == [], "the Gmail fake itself failed"


@pytest.fixture
def graph_fake(tmp_path: Path) -> Iterator[Any]:
    """A fresh Entra ID + Microsoft Graph fake over HTTPS (tests/graphfake.py), closed after.

    Typed ``Any`` only because this file is appended to; it is a ``tests.graphfake.GraphFake``.
    """
    from tests.graphfake import GraphFake

    fake = GraphFake(directory=tmp_path)  # ca_file stays readable after close()
    try:
        yield fake
    finally:
        fake.close()
    assert fake.errors == [], "the Graph fake itself failed"
