"""SMTP throughput of ingestd, measured against a do-nothing aiosmtpd in the same run.

Usage (from the repository root):

    .venv/bin/python bench/smtp_throughput.py [--messages N] [--connections 1,8,32]
                                              [--database-url URL] [--workers W] [--json]

For every connection count K it runs three servers, each in its own process and
each on a fresh database, and drives them with the same asyncio client:

* ``do-nothing``: aiosmtpd whose DATA hook answers 250 at once (bench/sink_server.py;
  the ceiling of this client and aiosmtpd on this machine);
* ``intake``: ``ingestd run`` with ``processing.workers: 0`` (SMTP plus the
  durable group commit, nothing else);
* ``end-to-end``: ``ingestd run`` with workers, timed until no sent message is
  ``pending`` any more.

bench/README.md explains every figure. This is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchlib import ingestd_package, ingestd_revision

try:
    import aiosmtplib
except ImportError:  # the README's first install command leaves the test extra out
    sys.exit("bench/smtp_throughput.py needs aiosmtplib (the SMTP client it sends with): "
             ".venv/bin/pip install -e '.[test]'")
import sqlalchemy as sa
import yaml

from ingestd.config.settings import DatabaseSettings
from ingestd.db.engine import make_engine, read_only
from ingestd.db.tables import INBOUND

SENDER = "bench.sender@customer.example"
RECIPIENT = "support@example.com"
HOST = "127.0.0.1"
MESSAGE_SIZE = 4096
POLL_SECONDS = 0.05
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 60.0
PROCESSING_TIMEOUT_SECONDS = 900.0
# The servers run from the same interpreter as this script (the venv's).
PYTHON = sys.executable
SINK_SERVER = Path(__file__).resolve().parent / "sink_server.py"
# Other processes' CPU use, in % of one CPU, above which a run is flagged.
OTHER_CPU_WARNING_PERCENT = 10.0
TARGET_ACCEPT_RATIO = 0.5
TARGET_ACCEPT_CONNECTIONS = 32
TARGET_END_TO_END_PER_SECOND = 300.0

_INBOUND = INBOUND


@dataclass(frozen=True)
class Mode:
    """One kind of server under test."""

    name: str
    ingestd: bool
    workers: int = 0
    # smtp.commit_batch_max; 1 turns group commit off.
    commit_batch_max: int = 200


@dataclass
class ClientStats:
    """What the client saw: replies, latencies and the timing window."""

    accepted: int = 0
    failed: int = 0
    failure_replies: dict[str, int] = field(default_factory=dict)
    # Seconds per transaction, MAIL to the final 250 (what sendmail() would take).
    transaction_latencies: list[float] = field(default_factory=list)
    # Seconds from the DATA command to the final 250 (includes the 354 round trip).
    data_latencies: list[float] = field(default_factory=list)
    first_start: float = math.inf
    last_end: float = -math.inf
    # CPU seconds used while the transactions ran: says which side was the bottleneck.
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    # All CPUs of the machine, busy for anyone: the rest is load we did not make.
    machine_cpu_seconds: float = 0.0

    @property
    def wall_seconds(self) -> float:
        return max(self.last_end - self.first_start, 1e-9)


@dataclass
class Result:
    """One (server, K) measurement, as printed and as emitted with --json."""

    server: str
    connections: int
    messages: int
    accepted: int
    failed: int
    accepted_per_second: float
    p50_ms: float
    p99_ms: float
    data_p50_ms: float
    data_p99_ms: float
    peak_rss_kib: int
    # CPU use over the accepting window, in % of one CPU (can exceed 100 with threads).
    client_cpu_percent: float
    server_cpu_percent: float
    # CPU that other processes used meanwhile (a busy machine skews every figure).
    other_cpu_percent: float
    end_to_end_per_second: float | None = None
    end_to_end_seconds: float | None = None
    commits: int | None = None
    rows_stored: int | None = None  # warm-up messages included
    warm_up_messages: int = 0
    statuses: dict[str, int] | None = None
    failure_replies: dict[str, int] = field(default_factory=dict)


# --- servers as subprocesses ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def write_ingestd_config(directory: Path, database_url: str, port: int, workers: int,
                         commit_batch_max: int = 200) -> Path:
    config = {
        "database": {"url": database_url},
        "smtp": {"host": HOST, "port": port, "max_recipients": 50,
                 "commit_batch_max": commit_batch_max},
        "processing": {"workers": workers},
        "logging": {"level": "warning"},
        "mailboxes": [{"name": "support", "addresses": [RECIPIENT]}],
    }
    path = directory / "ingestd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class ServerProcess:
    """A server subprocess: started, awaited on its port, measured, stopped with SIGTERM."""

    def __init__(self, argv: Sequence[str], port: int, directory: Path) -> None:
        self.port = port
        self.log_path = directory / "server.log"
        self._log = self.log_path.open("wb")
        # cwd in the temp dir: nothing the server writes lands in the repository.
        self.process = subprocess.Popen(
            list(argv), cwd=directory, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Return once the port accepts connections; fail if the server exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"server not listening on {HOST}:{self.port} after {timeout}s")

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server and any children so far."""
        pids = [self.process.pid, *_descendants(self.process.pid)]
        return sum(_cpu_ticks(pid) for pid in pids) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self) -> int:
        """VmHWM of the server and any children (read while they are alive)."""
        return sum(_vm_hwm_kib(pid) for pid in [self.process.pid, *_descendants(self.process.pid)])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(f"server did not stop on SIGTERM: {self.log()}") from None
        self._log.close()
        if self.process.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")

    def log(self, limit: int = 2000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-limit:]


@contextlib.contextmanager
def running_server(argv: Sequence[str], port: int, directory: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(argv, port, directory)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _vm_hwm_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _cpu_ticks(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        # Fields after the command name's closing ')': utime and stime are the 12th and 13th.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return 0


def machine_cpu_seconds() -> float:
    """CPU time all CPUs spent busy (not idle, not waiting for I/O) since boot."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = ticks[3], ticks[4]
    # guest and guest_nice (fields 9, 10) are already counted in user and nice.
    return (sum(ticks[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    """Every live process below ``root`` (ingestd runs none today; this keeps RSS honest)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name may contain spaces; fields after its ')' are fixed.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(stat.parent.name))
    found: list[int] = []
    pending = [root]
    while pending:
        children = parents.get(pending.pop(), [])
        found.extend(children)
        pending.extend(children)
    return found


# --- messages and the client ------------------------------------------------------

# Words for varied, ticket-like bodies (identical text would compress and parse unlike mail).
_WORDS = (
    "printer", "offline", "again", "since", "this", "morning", "please", "help", "the",
    "invoice", "portal", "shows", "an", "error", "when", "I", "log", "in", "our", "VPN",
    "drops", "every", "few", "minutes", "could", "someone", "call", "me", "back", "about",
    "new", "laptop", "order", "shared", "drive", "is", "full", "and", "nobody", "can", "save",
)


def make_message(index: int, run_token: str) -> bytes:
    """A plain-text message of about MESSAGE_SIZE bytes with a unique Message-ID and body."""
    rng = random.Random(f"{run_token}:{index}")
    header = (
        f"From: Bench Sender <{SENDER}>\r\n"
        f"To: Support <{RECIPIENT}>\r\n"
        f"Subject: benchmark message {index}\r\n"
        "Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
        f"Message-ID: <{run_token}.{index}@bench.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        f"Run {run_token}, message {index}.\r\n"
    )
    lines = [header]
    size = len(header)
    while size < MESSAGE_SIZE:
        line = " ".join(rng.choice(_WORDS) for _ in range(12)) + "\r\n"
        lines.append(line)
        size += len(line)
    return "".join(lines).encode("ascii")


def split_evenly(items: Sequence[bytes], parts: int) -> list[Sequence[bytes]]:
    """``parts`` consecutive slices whose lengths differ by at most one."""
    base, extra = divmod(len(items), parts)
    slices: list[Sequence[bytes]] = []
    start = 0
    for part in range(parts):
        end = start + base + (1 if part < extra else 0)
        slices.append(items[start:end])
        start = end
    return slices


async def send_all(
    port: int,
    warm_up: Sequence[bytes],
    messages: Sequence[bytes],
    server_cpu: Callable[[], float],
    settle: Callable[[], object],
) -> ClientStats:
    """Send ``messages`` over one persistent session per ``warm_up`` message, back to back.

    Before the clock starts, each session sends its warm-up message and
    ``settle`` (run in a thread) waits for whatever must follow from them.
    """
    clients = [
        aiosmtplib.SMTP(hostname=HOST, port=port, timeout=120, start_tls=False,
                        local_hostname="bench.localhost")
        for _ in warm_up
    ]
    # Connect, EHLO and a first message before the clock starts: only steady-state
    # mail transactions are timed, not connection set-up or a server's lazy start
    # (ingestd starts worker processes after it listens; first messages import
    # the parser).
    await asyncio.gather(*(client.connect() for client in clients))
    await asyncio.gather(*(client.ehlo() for client in clients))
    warm = ClientStats()
    await asyncio.gather(*(_send_sequentially(c, [m], warm) for c, m in zip(clients, warm_up,
                                                                             strict=True)))
    if warm.failed:
        raise RuntimeError(f"warm-up messages refused: {warm.failure_replies}")
    await asyncio.to_thread(settle)
    stats = ClientStats()
    client_cpu_before, server_cpu_before = time.process_time(), server_cpu()
    machine_cpu_before = machine_cpu_seconds()
    await asyncio.gather(*(
        _send_sequentially(client, chunk, stats)
        for client, chunk in zip(clients, split_evenly(messages, len(clients)), strict=True)
    ))
    stats.client_cpu_seconds = time.process_time() - client_cpu_before
    stats.server_cpu_seconds = server_cpu() - server_cpu_before
    stats.machine_cpu_seconds = machine_cpu_seconds() - machine_cpu_before
    for client in clients:
        with contextlib.suppress(aiosmtplib.SMTPException):
            await client.quit()
    return stats


async def _send_sequentially(
    client: aiosmtplib.SMTP, messages: Sequence[bytes], stats: ClientStats
) -> None:
    # MAIL, RCPT and DATA one by one is exactly what sendmail() sends; split so
    # the DATA phase, where ingestd commits, can be timed on its own.
    for message in messages:
        started = time.perf_counter()
        stats.first_start = min(stats.first_start, started)
        try:
            await client.mail(SENDER)
            await client.rcpt(RECIPIENT)
            data_started = time.perf_counter()
            await client.data(message)
        except aiosmtplib.SMTPResponseException as exc:
            stats.failed += 1
            reply = f"{exc.code} {exc.message[:60]}"
            stats.failure_replies[reply] = stats.failure_replies.get(reply, 0) + 1
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.rset()
            continue
        finished = time.perf_counter()
        stats.last_end = max(stats.last_end, finished)
        stats.accepted += 1
        stats.transaction_latencies.append(finished - started)
        stats.data_latencies.append(finished - data_started)


def percentile_ms(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile, in milliseconds (NaN without samples)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1] * 1000


# --- the database -----------------------------------------------------------------


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def status_counts(url: str) -> dict[str, int]:
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with read_only(engine) as conn:
            rows = conn.execute(
                sa.select(_INBOUND.c.status, sa.func.count()).group_by(_INBOUND.c.status)
            )
            return {status: count for status, count in rows}
    finally:
        engine.dispose()


def wait_until_processed(url: str, expected: int) -> float:
    """Poll every POLL_SECONDS until ``expected`` rows exist and none is pending.

    Returns the perf_counter() time at which that was first seen.
    """
    pending = sa.func.coalesce(sa.func.sum(sa.case((_INBOUND.c.status == "pending", 1),
                                                   else_=0)), 0)
    query = sa.select(sa.func.count(), pending)
    engine = make_engine(DatabaseSettings(url=url))
    deadline = time.monotonic() + PROCESSING_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            # A short read transaction per poll: on SQLite (WAL) it takes no
            # lock and never holds back the writers being measured.
            with read_only(engine) as conn:
                total, still_pending = conn.execute(query).one()
            if total >= expected and still_pending == 0:
                return time.perf_counter()
            time.sleep(POLL_SECONDS)
    finally:
        engine.dispose()
    raise RuntimeError(f"messages still pending after {PROCESSING_TIMEOUT_SECONDS}s")


def postgres_commit_count(url: str) -> int:
    """Intake transactions that stored rows: rows inserted together share their xmin.

    Exact only while no worker has updated the rows (intake-only mode).
    """
    engine = make_engine(DatabaseSettings(url=url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(
                sa.text("SELECT count(DISTINCT xmin::text) FROM inbound_messages")
            ).scalar_one())
    finally:
        engine.dispose()


def postgres_tables(engine: sa.Engine) -> list[str]:
    return sa.inspect(engine).get_table_names()


def check_postgres_empty(url: str) -> None:
    """Refuse a database holding any row: the benchmark empties every table between runs."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            for table in postgres_tables(engine):
                if table == "alembic_version":
                    continue
                quoted = engine.dialect.identifier_preparer.quote(table)
                if conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {quoted})")).scalar():
                    raise SystemExit(
                        f"--database-url: table {table!r} has rows; pass an empty database "
                        "(this benchmark deletes every row in it between runs)"
                    )
    finally:
        engine.dispose()


def empty_postgres(url: str) -> None:
    """Give the next run a database as good as fresh (TRUNCATE also drops table bloat)."""
    engine = sa.create_engine(url)
    try:
        tables = [t for t in postgres_tables(engine) if t != "alembic_version"]
        if tables:
            quoted = ", ".join(engine.dialect.identifier_preparer.quote(t) for t in tables)
            with engine.begin() as conn:
                conn.execute(sa.text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


def filesystem_type(path: str) -> str:
    """The type of the file system holding ``path`` (tmpfs makes SQLite's fsync free)."""
    best, kind = "", "unknown"
    resolved = str(Path(path).resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        mount_point, fs_type = line.split()[1:3]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fs_type
    return kind


# --- one measurement --------------------------------------------------------------


def measure(mode: Mode, connections: int, count: int, database_url: str | None) -> Result:
    """Start a fresh server for ``mode``, send ``count`` messages, stop it."""
    with tempfile.TemporaryDirectory(prefix="ingestd-bench-") as tmp:
        directory = Path(tmp)
        port = free_port()
        url: str | None = None
        if mode.ingestd:
            url = database_url or f"sqlite:///{directory / 'ingestd.db'}"
            if is_postgres(url):
                empty_postgres(url)
            config = write_ingestd_config(directory, url, port, mode.workers,
                                          mode.commit_batch_max)
            argv = [PYTHON, "-m", "ingestd", "run", "--config", str(config)]
        else:
            argv = [PYTHON, str(SINK_SERVER), str(port)]
        # Built before the server starts, so generating them costs the client nothing timed.
        run_token = uuid.uuid4().hex[:12]
        warm_up = [make_message(i, f"{run_token}-warm-up") for i in range(connections)]
        messages = [make_message(i, run_token) for i in range(count)]
        processing = url is not None and mode.workers > 0

        def settle() -> None:
            # The timed messages then meet running workers and a known sender.
            if processing:
                assert url is not None
                wait_until_processed(url, len(warm_up))

        with running_server(argv, port, directory) as server:
            stats = asyncio.run(send_all(port, warm_up, messages, server.cpu_seconds, settle))
            result = _result(mode, connections, count, stats)
            result.warm_up_messages = len(warm_up)
            if processing:
                assert url is not None
                done = wait_until_processed(url, len(warm_up) + stats.accepted)
                result.end_to_end_seconds = done - stats.first_start
                result.end_to_end_per_second = stats.accepted / result.end_to_end_seconds
            result.peak_rss_kib = server.peak_rss_kib()
            if url is not None and is_postgres(url) and mode.workers == 0:
                result.commits = postgres_commit_count(url)
        if url is not None:
            # After the stop, so the count includes nothing still in flight.
            result.statuses = status_counts(url)
            result.rows_stored = sum(result.statuses.values())
        return result


def _result(mode: Mode, connections: int, count: int, stats: ClientStats) -> Result:
    return Result(
        server=mode.name,
        connections=connections,
        messages=count,
        accepted=stats.accepted,
        failed=stats.failed,
        accepted_per_second=stats.accepted / stats.wall_seconds,
        p50_ms=percentile_ms(stats.transaction_latencies, 0.50),
        p99_ms=percentile_ms(stats.transaction_latencies, 0.99),
        data_p50_ms=percentile_ms(stats.data_latencies, 0.50),
        data_p99_ms=percentile_ms(stats.data_latencies, 0.99),
        peak_rss_kib=0,
        client_cpu_percent=100 * stats.client_cpu_seconds / stats.wall_seconds,
        server_cpu_percent=100 * stats.server_cpu_seconds / stats.wall_seconds,
        other_cpu_percent=100 * max(0.0, stats.machine_cpu_seconds - stats.client_cpu_seconds
                                    - stats.server_cpu_seconds) / stats.wall_seconds,
        failure_replies=stats.failure_replies,
    )


# --- reporting --------------------------------------------------------------------


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0 or math.isnan(value) or math.isnan(base):
        return None
    return value / base


def _cell(value: float | None, base: float | None, digits: int, with_ratio: bool) -> str:
    if value is None or math.isnan(value):
        return "-"
    text = f"{value:.{digits}f}"
    ratio = _ratio(value, base)
    if with_ratio and ratio is not None:
        text += f" ({ratio:.2f}x)"
    return text


def baseline_for(results: Sequence[Result], connections: int) -> Result | None:
    for result in results:
        if result.server == "do-nothing" and result.connections == connections:
            return result
    return None


def table(results: Sequence[Result]) -> str:
    """One row per (server, K); ratios in parentheses are to do-nothing at the same K."""
    headers = ["server", "K", "accepted/s", "p50 ms", "p99 ms", "end-to-end/s",
               "peak RSS MiB", "commits", "failed", "CPU% srv/cli"]
    rows = [headers]
    for r in results:
        base = baseline_for(results, r.connections)
        ratio = base is not None and r is not base
        rows.append([
            r.server,
            str(r.connections),
            _cell(r.accepted_per_second, base and base.accepted_per_second, 0, ratio),
            _cell(r.p50_ms, base and base.p50_ms, 2, ratio),
            _cell(r.p99_ms, base and base.p99_ms, 2, ratio),
            # Ratio to do-nothing's accepted/s: how close processing comes to the ceiling.
            _cell(r.end_to_end_per_second, base and base.accepted_per_second, 0, ratio),
            _cell(r.peak_rss_kib / 1024, base and base.peak_rss_kib / 1024, 1, ratio),
            "-" if r.commits is None else str(r.commits),
            str(r.failed),
            f"{r.server_cpu_percent:.0f}/{r.client_cpu_percent:.0f}",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    name: str
    value: str
    met: bool | None  # None: not measured in this run


def targets(results: Sequence[Result], on_sqlite: bool) -> list[Target]:
    return [_accept_target(results), _end_to_end_target(results, on_sqlite)]


def _accept_target(results: Sequence[Result]) -> Target:
    name = (f"intake accepts at {TARGET_ACCEPT_CONNECTIONS} connections >= "
            f"{TARGET_ACCEPT_RATIO} x the do-nothing ceiling")
    base = baseline_for(results, TARGET_ACCEPT_CONNECTIONS)
    intake = next((r for r in results if r.server == "intake"
                   and r.connections == TARGET_ACCEPT_CONNECTIONS), None)
    if base is None or intake is None:
        return Target(name, f"not measured (K={TARGET_ACCEPT_CONNECTIONS} not in --connections)",
                      None)
    ratio = intake.accepted_per_second / base.accepted_per_second
    value = (f"{intake.accepted_per_second:.0f}/s vs {base.accepted_per_second:.0f}/s "
             f"= {ratio:.2f}x")
    return Target(name, value, ratio >= TARGET_ACCEPT_RATIO)


def _end_to_end_target(results: Sequence[Result], on_sqlite: bool) -> Target:
    name = f"end-to-end >= {TARGET_END_TO_END_PER_SECOND:.0f} small messages/s on SQLite"
    if not on_sqlite:
        return Target(name, "not measured (this run used PostgreSQL)", None)
    runs = [r for r in results if r.end_to_end_per_second is not None]
    if not runs:
        return Target(name, "not measured", None)
    # The most concurrent run: it feeds the workers fastest, so it shows their capacity.
    best = max(runs, key=lambda r: r.connections)
    assert best.end_to_end_per_second is not None
    value = f"{best.end_to_end_per_second:.0f}/s at K={best.connections}"
    return Target(name, value, best.end_to_end_per_second >= TARGET_END_TO_END_PER_SECOND)


def format_targets(found: Sequence[Target]) -> str:
    verdict = {True: "MET", False: "NOT MET", None: "-"}
    return "\n".join(f"  {t.name}: {t.value} -> {verdict[t.met]}" for t in found)


def notes(results: Sequence[Result], on_postgres: bool) -> list[str]:
    """Anything that makes a figure suspect: refusals, rows not stored or not processed."""
    # PostgreSQL's own processes work for ingestd but count as "other" here.
    advice = ("includes the PostgreSQL server; more than it uses skews the figures"
              if on_postgres else "the figures are skewed; rerun on a quiet machine")
    found = []
    for r in results:
        where = f"{r.server} K={r.connections}"
        if r.failed:
            found.append(f"{where}: {r.failed} refused: {r.failure_replies}")
        sent = r.accepted + r.warm_up_messages
        if r.rows_stored is not None and r.rows_stored != sent:
            found.append(f"{where}: {sent} accepted (with warm-up) but {r.rows_stored} rows stored")
        if r.other_cpu_percent > OTHER_CPU_WARNING_PERCENT:
            found.append(f"{where}: other processes used {r.other_cpu_percent:.0f}% CPU "
                         f"meanwhile ({advice})")
        if r.statuses and r.end_to_end_per_second is not None and set(r.statuses) != {"processed"}:
            found.append(f"{where}: statuses {r.statuses}")
    return found


def environment(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    return {
        "ingestd": ingestd_revision(ingestd_package()),
        "messages": args.messages,
        "message_bytes": len(make_message(0, "000000000000")),
        "connections": args.connections,
        "database": "postgresql" if args.database_url else "sqlite (fresh temp file per run)",
        "workers": workers,
        "cpus": os.cpu_count(),
        "load average before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "temp dir": f"{tempfile.gettempdir()} ({filesystem_type(tempfile.gettempdir())})",
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_report(
    results: Sequence[Result], env: dict[str, Any], found: Sequence[Target], problems: list[str]
) -> None:
    print(", ".join(f"{key}: {value}" for key, value in env.items()))
    print()
    print(table(results))
    print()
    print("(x): ratio to do-nothing at the same K. Latencies: MAIL to the final 250 of one "
          "transaction.")
    print()
    print("Targets:")
    print(format_targets(found))
    if problems:
        print()
        print("Warnings:")
        for problem in problems:
            print(f"  {problem}")


def _json_ready(values: dict[str, Any]) -> dict[str, Any]:
    """NaN (a percentile without samples) is not JSON; null is."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


# --- command line -----------------------------------------------------------------


def parse_connections(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("connection counts must be integers >= 1")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000,
                        help="messages per (server, K) run (default 2000)")
    parser.add_argument("--connections", type=parse_connections, default=[1, 8, 32],
                        help="comma-separated connection counts K (default 1,8,32)")
    parser.add_argument("--database-url",
                        help="an EMPTY PostgreSQL database (postgresql+psycopg://...) instead "
                             "of a fresh SQLite file per run; every row in it is deleted "
                             "between runs")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processing.workers for the end-to-end runs (default: CPU count)")
    parser.add_argument("--without-group-commit", action="store_true",
                        help="also measure intake with smtp.commit_batch_max: 1 (one commit "
                             "per message), to show what group commit is worth")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.workers < 1:
        parser.error("--messages and --workers must be >= 1")
    if args.database_url and not is_postgres(args.database_url):
        parser.error("--database-url must be a postgresql+psycopg:// URL (SQLite is the default)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.database_url:
        check_postgres_empty(args.database_url)
    modes = [Mode("do-nothing", ingestd=False), Mode("intake", ingestd=True, workers=0),
             Mode("end-to-end", ingestd=True, workers=args.workers)]
    if args.without_group_commit:
        modes.insert(2, Mode("intake-1/commit", ingestd=True, workers=0, commit_batch_max=1))
    results: list[Result] = []
    # K outermost: the three servers at one K run close together in time, so a
    # machine that gets busier during the run skews the ratios least.
    for connections in args.connections:
        for mode in modes:
            print(f"{mode.name}, K={connections}, {args.messages} messages ...",
                  end=" ", file=sys.stderr, flush=True)
            result = measure(mode, connections, args.messages, args.database_url)
            print(f"{result.accepted_per_second:.0f} accepted/s", file=sys.stderr, flush=True)
            results.append(result)
    if args.database_url:
        # Leave the database empty again, so the next run can use it as it is.
        empty_postgres(args.database_url)
    env = environment(args, args.workers)
    found = targets(results, on_sqlite=not args.database_url)
    problems = notes(results, on_postgres=bool(args.database_url))
    if args.json:
        print(json.dumps({
            "environment": env,
            "results": [_json_ready(asdict(r)) for r in results],
            "targets": [asdict(t) for t in found],
            "warnings": problems,
        }, indent=2))
    else:
        print_report(results, env, found, problems)
    return 0


if __name__ == "__main__":
    sys.exit(main())
