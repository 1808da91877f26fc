"""How long SMTP senders wait for their reply while the database is unavailable.

Usage (from the repository root):

    .venv/bin/python bench/locked_database.py [--senders N] [--busy-timeout-ms MS]
                                              [--give-up-seconds S] [--spread-seconds S]
                                              [--tree PATH] [--json]

It starts ``ingestd run`` (SQLite in a temporary directory, ``processing.workers: 0``,
a free port of 127.0.0.1), takes an exclusive lock on the SQLite file
(``BEGIN EXCLUSIVE`` from Python's sqlite3) and has N concurrent senders each
do MAIL, RCPT and DATA; all of them send the final ``.`` at the same moment (or
evenly over ``--spread-seconds``, so that later ones arrive while a commit is in
flight), and each times the end of DATA to its reply. The lock is held until
every sender has its reply (or gave up after ``--give-up-seconds``, default twice
the bound), so no reply can come from the lock ending. Then the lock is released and the same
N senders run against the free database: the baseline, the normal time to 250.

The bound is the README's: 2 x busy_timeout_ms + 1 s. ``--tree PATH`` runs the
daemon from another checkout (for example the code before the fix, 5b3ae17) with
this venv. Rows are counted by Message-ID, so a message stored after its sender
heard 451 (or gave up) shows. bench/README.md explains the figures. This is not
part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchlib import daemon_command, ingestd_package, ingestd_revision

try:
    import aiosmtplib
except ImportError:  # the README's first install command leaves the test extra out
    sys.exit("bench/locked_database.py needs aiosmtplib (the SMTP client it sends with): "
             ".venv/bin/pip install -e '.[test]'")
import yaml

HOST = "127.0.0.1"
RECIPIENT = "support@example.com"
SENDER = "bench.sender@customer.example"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 60.0
FREE_RUN_TIMEOUT_SECONDS = 60.0
# After the lock is released, rows are counted once the count has not changed for this long.
SETTLE_SECONDS = 1.0
SETTLE_LIMIT_SECONDS = 15.0
NO_REPLY = "no reply"


@dataclass
class Reply:
    """What one sender heard after the end of DATA."""

    index: int
    reply: str  # "451 4.3.0", "250 2.0.0", or NO_REPLY
    seconds: float  # end of DATA to the reply (to giving up, for NO_REPLY)
    stored: bool = False


@dataclass
class Phase:
    """One round of N senders: against the locked database, or the free one."""

    name: str
    replies: list[Reply] = field(default_factory=list)
    lock_held_seconds: float | None = None

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reply for r in self.replies).items()))

    @property
    def seconds(self) -> list[float]:
        return [r.seconds for r in self.replies]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        return percentile(self.seconds, 0.95)

    @property
    def max(self) -> float:
        return max(self.seconds)

    @property
    def stored(self) -> int:
        return sum(r.stored for r in self.replies)

    def stored_after(self, reply_prefix: str) -> int:
        return sum(r.stored for r in self.replies if r.reply.startswith(reply_prefix))

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "replies": self.counts(),
            "median_seconds": self.median,
            "p95_seconds": self.p95,
            "max_seconds": self.max,
            "stored": self.stored,
            "lock_held_seconds": self.lock_held_seconds,
            "senders": [asdict(r) for r in self.replies],
        }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (with 20 values, p95 is the 19th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * len(ordered) * 1000) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


# --- the daemon ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, port: int, busy_timeout_ms: int) -> Path:
    # Only keys that 5b3ae17 knows too: every settings model forbids unknown keys.
    config = {
        "database": {"url": f"sqlite:///{directory / 'ingestd.db'}",
                     "busy_timeout_ms": busy_timeout_ms},
        "smtp": {"host": HOST, "port": port},
        "processing": {"workers": 0},
        "logging": {"level": "warning"},
        "mailboxes": [{"name": "support", "addresses": [RECIPIENT]}],
    }
    path = directory / "ingestd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def running_daemon(tree: Path | None, directory: Path, port: int,
                   busy_timeout_ms: int) -> Iterator[subprocess.Popen[bytes]]:
    """``ingestd run`` listening on ``port``; stopped with SIGTERM afterwards."""
    argv, env = daemon_command(tree, write_config(directory, port, busy_timeout_ms))
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        # cwd in the temp dir: `-m ingestd` must not find a package there, nothing lands here.
        process = subprocess.Popen(argv, cwd=directory, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"ingestd exited with {process.returncode}:\n"
                                       f"{log_path.read_text(errors='replace')[-2000:]}")
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ingestd not listening after {READY_TIMEOUT_SECONDS} s")
                time.sleep(0.05)
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


# --- the senders --------------------------------------------------------------------


def make_message(token: str, phase: str, index: int) -> bytes:
    return (
        f"From: Bench Sender <{SENDER}>\r\n"
        f"To: Support <{RECIPIENT}>\r\n"
        f"Subject: locked database benchmark, {phase} {index}\r\n"
        "Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
        f"Message-ID: <{token}.{phase}.{index}@bench.example>\r\n"
        "\r\n"
        f"The printer on floor {index} is offline again ({phase}).\r\n"
    ).encode("ascii")


async def _prepare(port: int, body: bytes) -> aiosmtplib.SMTP:
    """A session that has sent MAIL, RCPT, DATA and the body, all but the final dot."""
    client = aiosmtplib.SMTP(hostname=HOST, port=port, timeout=30, start_tls=False,
                             local_hostname="bench.localhost")
    await client.connect()
    await client.ehlo()
    await client.mail(SENDER)
    await client.rcpt(RECIPIENT)
    code, message = await client.execute_command(b"DATA")
    if code != 354:
        raise RuntimeError(f"DATA answered {code} {message}")
    _write(client, body)
    return client


def _write(client: aiosmtplib.SMTP, data: bytes) -> None:
    transport = client.transport
    assert isinstance(transport, asyncio.WriteTransport), "connected"
    transport.write(data)


async def _finish(client: aiosmtplib.SMTP, index: int, give_up: float, delay: float) -> Reply:
    assert client.protocol is not None, "connected"
    await asyncio.sleep(delay)
    _write(client, b".\r\n")
    started = time.monotonic()
    try:
        response = await client.protocol.read_response(timeout=give_up)
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        return Reply(index, NO_REPLY, time.monotonic() - started)
    finally:
        client.close()
    seconds = time.monotonic() - started
    enhanced = response.message.split(" ", 1)[0]
    label = f"{response.code} {enhanced}" if enhanced[:1].isdigit() else str(response.code)
    return Reply(index, label, seconds)


async def send_round(port: int, bodies: Sequence[bytes], give_up: float,
                     spread: float = 0.0) -> list[Reply]:
    """Every sender ends its DATA at the same moment, or spread evenly over ``spread`` s."""
    clients = await asyncio.gather(*(_prepare(port, body) for body in bodies))
    step = spread / max(1, len(clients) - 1)
    return list(await asyncio.gather(*(_finish(c, i, give_up, i * step)
                                       for i, c in enumerate(clients))))


# --- rows ----------------------------------------------------------------------------


def stored_ids(database: Path, token: str, phase: str) -> set[int]:
    """Sender indexes of ``phase`` whose message is in inbound_messages."""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn:
        rows = conn.execute("SELECT message_id FROM inbound_messages WHERE message_id LIKE ?",
                            (f"%{token}.{phase}.%",)).fetchall()
    return {int(str(mid).split(f"{token}.{phase}.", 1)[1].split("@", 1)[0]) for (mid,) in rows}


def count_rows(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn:
        return int(conn.execute("SELECT count(*) FROM inbound_messages").fetchone()[0])


def settled_ids(database: Path, token: str, phase: str) -> set[int]:
    """The rows of ``phase`` once their number has stopped changing (late commits land)."""
    deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
    found = stored_ids(database, token, phase)
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < SETTLE_SECONDS and time.monotonic() < deadline:
        time.sleep(0.1)
        now = stored_ids(database, token, phase)
        if now != found:
            found, stable_since = now, time.monotonic()
    return found


# --- the measurement -----------------------------------------------------------------


@dataclass
class Result:
    environment: dict[str, object]
    bound_seconds: float
    give_up_seconds: float
    rows_before: int
    locked: Phase
    free: Phase
    rows_after: int

    @property
    def within_bound(self) -> bool:
        return all(r.reply != NO_REPLY for r in self.locked.replies) and \
            self.locked.max <= self.bound_seconds


def measure(args: argparse.Namespace) -> Result:
    bound = 2 * args.busy_timeout_ms / 1000 + 1
    give_up = args.give_up_seconds if args.give_up_seconds is not None else 2 * bound
    token = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix="ingestd-locked-") as tmp:
        directory = Path(tmp)
        database = directory / "ingestd.db"
        port = free_port()
        with running_daemon(args.tree, directory, port, args.busy_timeout_ms):
            rows_before = count_rows(database)
            locked = Phase("locked")
            blocker = sqlite3.connect(database, isolation_level=None, timeout=30)
            blocker.execute("BEGIN EXCLUSIVE")
            taken = time.monotonic()
            try:
                bodies = [make_message(token, "locked", i) for i in range(args.senders)]
                locked.replies = asyncio.run(send_round(port, bodies, give_up,
                                                        args.spread_seconds))
            finally:
                # Held until every sender has its reply or gave up.
                blocker.execute("ROLLBACK")
                blocker.close()
                locked.lock_held_seconds = time.monotonic() - taken
            for index in settled_ids(database, token, "locked"):
                locked.replies[index].stored = True
            free = Phase("free")
            bodies = [make_message(token, "free", i) for i in range(args.senders)]
            free.replies = asyncio.run(send_round(port, bodies, FREE_RUN_TIMEOUT_SECONDS,
                                                  args.spread_seconds))
            for index in stored_ids(database, token, "free"):
                free.replies[index].stored = True
            rows_after = count_rows(database)
    return Result(environment(args), bound, give_up, rows_before, locked, free, rows_after)


def environment(args: argparse.Namespace) -> dict[str, object]:
    package = ingestd_package(args.tree)
    return {
        "ingestd": ingestd_revision(package),
        "from": str(package or "?"),
        "senders": args.senders,
        "busy_timeout_ms": args.busy_timeout_ms,
        "spread_seconds": args.spread_seconds,
        "cpus": os.cpu_count(),
        "load average before": " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists() else "?",
        "python": platform.python_version(),
    }


def _counts(phase: Phase) -> str:
    """Each reply with how many senders heard it and the slowest of them."""
    parts = []
    for reply, count in phase.counts().items():
        slowest = max(r.seconds for r in phase.replies if r.reply == reply)
        when = "gave up at" if reply == NO_REPLY else "max"
        parts.append(f"{reply} x{count} ({when} {slowest:.3f} s)")
    return ", ".join(parts)


def print_report(result: Result) -> None:
    locked, free = result.locked, result.free
    print(", ".join(f"{key}: {value}" for key, value in result.environment.items()))
    print()
    print(f"bound = 2 x busy_timeout + 1 s = {result.bound_seconds:.1f} s; "
          f"a sender gives up after {result.give_up_seconds:.1f} s")
    print()
    print(f"locked database (lock held {locked.lock_held_seconds:.1f} s):")
    print(f"  replies: {_counts(locked)}")
    censored = ">= " if any(r.reply == NO_REPLY for r in locked.replies) else ""
    print(f"  end of DATA to reply: median {locked.median:.2f} s, p95 {locked.p95:.2f} s, "
          f"max {censored}{locked.max:.2f} s ({censored}{locked.max / result.bound_seconds:.2f}x "
          "the bound)")
    print(f"  stored: {locked.stored} of {len(locked.replies)} "
          f"(after 451: {locked.stored_after('451')}, after no reply: "
          f"{locked.stored_after(NO_REPLY)}, after 250: {locked.stored_after('250')})")
    print("free database (baseline):")
    print(f"  replies: {_counts(free)}")
    print(f"  end of DATA to reply: median {free.median:.3f} s, max {free.max:.3f} s")
    print(f"  stored: {free.stored} of {len(free.replies)}")
    print()
    print(f"locked max / free max: {locked.max / free.max:.0f}x; rows before {result.rows_before},"
          f" after {result.rows_after}")
    state = "met" if result.within_bound else "NOT met"
    print(f"every sender answered within the bound ({result.bound_seconds:.1f} s): {state}")
    if free.stored != len(free.replies):
        print("WARNING: the free run did not store every message")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=20, help="concurrent senders (20)")
    parser.add_argument("--busy-timeout-ms", type=int, default=5000,
                        help="database.busy_timeout_ms of the daemon (5000)")
    parser.add_argument("--give-up-seconds", type=float,
                        help="how long a sender waits for its reply before it gives up "
                             "(default: twice the bound)")
    parser.add_argument("--spread-seconds", type=float, default=0.0,
                        help="end the senders' DATA evenly over this many seconds instead of "
                             "all at once (0): later senders then arrive while a commit is "
                             "in flight")
    parser.add_argument("--tree", type=Path,
                        help="run the daemon from this checkout (e.g. a worktree of 5b3ae17)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.senders < 1 or args.busy_timeout_ms < 0 or args.spread_seconds < 0:
        parser.error("--senders must be >= 1, --busy-timeout-ms and --spread-seconds >= 0")
    if args.tree is not None:
        args.tree = args.tree.resolve()
        if not (args.tree / "ingestd" / "cli" / "main.py").exists():
            parser.error(f"{args.tree} is not an ingestd checkout (no ingestd/cli/main.py)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = measure(args)
    if args.json:
        print(json.dumps({
            "environment": result.environment,
            "bound_seconds": result.bound_seconds,
            "give_up_seconds": result.give_up_seconds,
            "rows_before": result.rows_before,
            "rows_after": result.rows_after,
            "within_bound": result.within_bound,
            "locked": result.locked.summary(),
            "free": result.free.summary(),
        }, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
