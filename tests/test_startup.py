"""Start-up: errors name their real cause; instances starting together share one schema."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ingestd.config.settings import DatabaseSettings
from ingestd.db.engine import make_engine
from ingestd.db.schema import current_revision, ensure_schema, head_revision
from tests.conftest import base_config, write_config


def _run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingestd", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_an_unusable_database_directory_is_named_as_such(tmp_path: Path) -> None:
    """A SQLite path under a regular file fails as a database problem, not 'cannot listen'."""
    (tmp_path / "file").write_text("not a directory")
    config = base_config(f"sqlite:///{tmp_path}/file/sub/ingestd.db")
    result = _run(write_config(tmp_path, config))
    assert result.returncode == 75, result.stderr
    assert "cannot create the database directory" in result.stderr
    assert "cannot listen" not in result.stderr


def test_a_busy_port_is_named_as_such(tmp_path: Path) -> None:
    """A port already in use exits 69 with 'cannot listen on host:port'."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
        config["smtp"]["port"] = taken.getsockname()[1]
        result = _run(write_config(tmp_path, config))
    assert result.returncode == 69, result.stderr
    assert f"cannot listen on 127.0.0.1:{config['smtp']['port']}" in result.stderr


def _start_together(url: str, count: int) -> list[BaseException | None]:
    barrier = threading.Barrier(count)
    outcomes: list[BaseException | None] = [None] * count

    def start(index: int) -> None:
        engine = make_engine(DatabaseSettings(url=url, busy_timeout_ms=30_000))
        try:
            barrier.wait()
            ensure_schema(engine)
        except BaseException as exc:
            outcomes[index] = exc
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.mark.postgres
def test_instances_starting_together_on_an_empty_postgresql(pg_server: Any) -> None:
    """Four instances creating the schema at once: all start, the schema is made once."""
    import sqlalchemy as sa

    admin = sa.create_engine(pg_server.url("postgres"), isolation_level="AUTOCOMMIT")
    for round_ in range(5):
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE empty_race_{round_}"))
        url = pg_server.url(f"empty_race_{round_}")
        assert _start_together(url, 4) == [None] * 4
        engine = make_engine(DatabaseSettings(url=url))
        try:
            assert current_revision(engine) == head_revision()
        finally:
            engine.dispose()
    admin.dispose()


def test_instances_starting_together_on_an_empty_sqlite_file(tmp_path: Path) -> None:
    """The same on SQLite: nobody reads a half-made schema as 'not made by ingestd'."""
    assert _start_together(f"sqlite:///{tmp_path}/race.db", 4) == [None] * 4
