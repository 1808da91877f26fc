"""What SIGTERM does to SMTP sessions: which replies they get, how soon, and the exit.

Usage (from the repository root):

    .venv/bin/python bench/drain.py [--idle K] [--in-data M] [--drain-seconds S]
                                    [--complete-after S] [--tree PATH] [--json]

It starts ``ingestd run`` (SQLite in a temporary directory, ``processing.workers: 0``,
a free port of 127.0.0.1, ``smtp.drain_seconds`` from the option, default 10),
opens K idle sessions (greeting and EHLO only, default 5) and M sessions in the
middle of DATA (MAIL, RCPT, DATA, then half the message; default 5), and sends
the daemon SIGTERM. Then, with raw sockets so that the script decides when each
line is sent:

* every idle session waits for what comes: the README says ``421 4.3.2`` at once;
* ``--complete-after`` seconds after SIGTERM (default 0.5) every session in DATA
  sends the rest of its message and the final dot, and waits for two replies: the
  README says its ``250`` (or ``451``), then ``421 4.3.2``;
* at the same moment a new connection is tried (the listener should be closed);
* the process is timed from SIGTERM to its exit, and its exit code recorded (0).

A session that gets nothing shows as "no reply / connection closed" (or reset,
or "no reply within N s"). Rows are counted after the exit: every 250 must be
stored. ``--tree PATH`` runs the daemon from another checkout with this venv
(for example the code before the drain, 5b3ae17; a tree whose settings do not
know ``smtp.drain_seconds`` runs without it). bench/README.md explains the
figures. This is not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from benchlib import daemon_command, ingestd_package, ingestd_revision

HOST = "127.0.0.1"
RECIPIENT = "support@example.com"
SENDER = "bench.sender@customer.example"
READY_TIMEOUT_SECONDS = 30.0
# How long past the drain a session or the process is waited for before giving up.
GRACE_SECONDS = 15.0
EXIT_LIMIT_SECONDS = 90.0


# --- a raw SMTP session ----------------------------------------------------------------


class Session:
    """A raw SMTP client on a blocking socket: the script decides when each line is sent."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buffer = b""
        greeting = self.reply()
        if not greeting.startswith(b"220"):
            raise RuntimeError(f"greeting: {greeting!r}")

    def reply(self) -> bytes:
        """The next complete reply (multi-line replies joined); b'' when the peer closed."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return b"".join(lines)
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line + b"\r\n")
            if line[3:4] != b"-":
                return b"".join(lines)

    def command(self, line: bytes, expect: bytes) -> None:
        self.sock.sendall(line + b"\r\n")
        answer = self.reply()
        if not answer.startswith(expect):
            raise RuntimeError(f"{line!r} answered {answer!r}")

    def closed_by_peer(self, timeout: float = 2.0) -> bool:
        """True when the server closes the connection (EOF) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            return not self.buffer and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except OSError:  # a timeout: still open
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def label(reply: bytes) -> str:
    """'421 4.3.2' from a reply (its last line: the code and the enhanced code)."""
    if not reply:
        return "no reply / connection closed"
    last = reply.rstrip(b"\r\n").split(b"\r\n")[-1].decode(errors="replace")
    code, _, rest = last.replace("-", " ", 1).partition(" ")
    enhanced = rest.split(" ", 1)[0]
    return f"{code} {enhanced}" if enhanced[:1].isdigit() and "." in enhanced else code


def read_label(session: Session) -> str:
    try:
        return label(session.reply())
    except ConnectionResetError:
        return "no reply / connection reset"
    except TimeoutError:
        return "no reply within the wait"
    except OSError as exc:
        return f"no reply / {exc.__class__.__name__}"


# --- the daemon ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def knows_drain_seconds(package: Path | None) -> bool:
    settings = package / "config" / "settings.py" if package else None
    return bool(settings and settings.exists() and "drain_seconds" in settings.read_text())


def write_config(directory: Path, port: int, drain_seconds: float | None) -> Path:
    smtp: dict[str, object] = {"host": HOST, "port": port}
    if drain_seconds is not None:
        smtp["drain_seconds"] = drain_seconds
    config = {
        "database": {"url": f"sqlite:///{directory / 'ingestd.db'}"},
        "smtp": smtp,
        "processing": {"workers": 0},
        "logging": {"level": "warning"},
        "mailboxes": [{"name": "support", "addresses": [RECIPIENT]}],
    }
    path = directory / "ingestd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"ingestd exited with {process.returncode}:\n"
                               f"{log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2) as probe:
            probe.settimeout(5)
            probe.recv(512)  # the greeting: the session is set up, then closed again
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"ingestd not listening after {READY_TIMEOUT_SECONDS} s")
        time.sleep(0.05)


# --- the measurement -------------------------------------------------------------------


def make_message(token: str, index: int) -> bytes:
    return (
        f"From: Bench Sender <{SENDER}>\r\n"
        f"To: Support <{RECIPIENT}>\r\n"
        f"Subject: drain benchmark {index}\r\n"
        "Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"
        f"Message-ID: <{token}.drain.{index}@bench.example>\r\n"
        "\r\n"
        + f"The shared drive is full again, session {index}.\r\n" * 20
    ).encode("ascii")


@dataclass
class IdleOutcome:
    reply: str
    after_sigterm: float
    closed: bool  # the server closed the connection after its reply


@dataclass
class DataOutcome:
    first: str  # the reply to the end of DATA
    first_after_dot: float | None  # None: it came before the final dot was sent
    first_after_sigterm: float
    second: str | None  # what followed (421 4.3.2 expected)
    second_after_sigterm: float | None


@dataclass
class Result:
    environment: dict[str, object]
    drain_seconds: float | None  # None: the tree has no such setting
    complete_after: float
    idle: list[IdleOutcome] = field(default_factory=list)
    in_data: list[DataOutcome] = field(default_factory=list)
    new_connection: str = ""
    exit_code: int | None = None
    exit_after_sigterm: float | None = None
    stored: int = 0


def _idle(session: Session, sigterm_at: list[float], out: list[IdleOutcome]) -> None:
    reply = read_label(session)
    after = time.monotonic() - sigterm_at[0]
    closed = reply.startswith("no reply") or session.closed_by_peer()
    out.append(IdleOutcome(reply, after, closed))


def _in_data(session: Session, rest: bytes, sigterm_at: list[float], complete_after: float,
             out: list[DataOutcome]) -> None:
    # Until it is time to finish DATA, watch for the server speaking (or closing) first.
    remaining = sigterm_at[0] + complete_after - time.monotonic()
    if remaining > 0 and select.select([session.sock], [], [], remaining)[0]:
        early = read_label(session)
        out.append(DataOutcome(f"{early} (before the final dot)", None,
                               time.monotonic() - sigterm_at[0], None, None))
        return
    try:
        session.sock.sendall(rest + b".\r\n")
    except OSError as exc:
        now = time.monotonic() - sigterm_at[0]
        out.append(DataOutcome(f"could not send / {exc.__class__.__name__}", None, now, None,
                               None))
        return
    dot = time.monotonic()
    first = read_label(session)
    first_at = time.monotonic()
    second: str | None = None
    second_at: float | None = None
    if not first.startswith("no reply") and not first.startswith("421"):
        second = read_label(session)
        second_at = time.monotonic() - sigterm_at[0]
    out.append(DataOutcome(first, first_at - dot, first_at - sigterm_at[0], second, second_at))


def _wait_exit(process: subprocess.Popen[bytes], sigterm_at: list[float],
               result: Result) -> None:
    """Time the exit from SIGTERM (a thread of its own: nothing else delays noticing it)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        result.exit_code = process.wait(EXIT_LIMIT_SECONDS)
        result.exit_after_sigterm = time.monotonic() - sigterm_at[0]


def _new_connection(port: int) -> str:
    try:
        with socket.create_connection((HOST, port), timeout=5) as sock:
            greeting = sock.recv(512)
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"failed / {exc.__class__.__name__}"
    return label(greeting) if greeting else "accepted, then closed without a greeting"


def measure(args: argparse.Namespace) -> Result:
    package = ingestd_package(args.tree)
    drain = args.drain_seconds if knows_drain_seconds(package) else None
    wait = (drain if drain is not None else 10.0) + GRACE_SECONDS
    token = uuid.uuid4().hex[:12]
    result = Result(environment(args, package, drain), drain, args.complete_after)
    with tempfile.TemporaryDirectory(prefix="ingestd-drain-") as tmp:
        directory = Path(tmp)
        port = free_port()
        argv, env = daemon_command(args.tree, write_config(directory, port, drain))
        log_path = directory / "server.log"
        sessions: list[Session] = []
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, cwd=directory, env=env, stdout=log,
                                       stderr=subprocess.STDOUT)
            try:
                wait_listening(process, port, log_path)
                idle = [Session(port, wait) for _ in range(args.idle)]
                sessions.extend(idle)
                for session in idle:
                    session.command(b"EHLO idle.example", b"250")
                busy: list[tuple[Session, bytes]] = []
                for index in range(args.in_data):
                    session = Session(port, wait)
                    sessions.append(session)
                    session.command(b"EHLO busy.example", b"250")
                    session.command(f"MAIL FROM:<{SENDER}>".encode(), b"250")
                    session.command(f"RCPT TO:<{RECIPIENT}>".encode(), b"250")
                    session.command(b"DATA", b"354")
                    body = make_message(token, index)
                    session.sock.sendall(body[:len(body) // 2])
                    busy.append((session, body[len(body) // 2:]))
                time.sleep(0.2)  # the half messages are read by the server
                sigterm_at = [0.0]
                threads = [threading.Thread(target=_idle, args=(s, sigterm_at, result.idle))
                           for s in idle]
                threads += [threading.Thread(target=_in_data, args=(
                    s, rest, sigterm_at, args.complete_after, result.in_data))
                    for s, rest in busy]
                exited = threading.Thread(target=_wait_exit,
                                          args=(process, sigterm_at, result), daemon=True)
                sigterm_at[0] = time.monotonic()
                process.send_signal(signal.SIGTERM)
                for thread in [exited, *threads]:
                    thread.start()
                time.sleep(max(0.0, sigterm_at[0] + args.complete_after - time.monotonic()))
                result.new_connection = _new_connection(port)
                exited.join(EXIT_LIMIT_SECONDS)
                for thread in threads:
                    thread.join(wait + 5)
            finally:
                for session in sessions:
                    session.close()
                if process.poll() is None:
                    process.kill()
                    process.wait()
        result.stored = count_stored(directory / "ingestd.db", token)
    return result


def count_stored(database: Path, token: str) -> int:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn:
        return int(conn.execute("SELECT count(*) FROM inbound_messages WHERE message_id LIKE ?",
                                (f"%{token}.drain.%",)).fetchone()[0])


def environment(args: argparse.Namespace, package: Path | None,
                drain: float | None) -> dict[str, object]:
    return {
        "ingestd": ingestd_revision(package),
        "from": str(package or "?"),
        "idle sessions": args.idle,
        "sessions in DATA": args.in_data,
        "smtp.drain_seconds": drain if drain is not None else "not a setting of this tree",
        "cpus": os.cpu_count(),
        "load average before": " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists() else "?",
        "python": platform.python_version(),
    }


# --- the report --------------------------------------------------------------------


def _counts(values: Sequence[str | None]) -> str:
    counted = Counter("nothing (not read)" if v is None else v for v in values)
    return ", ".join(f"{reply} x{count}" for reply, count in sorted(counted.items())) or "-"


def _max(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{max(present):.3f} s" if present else "-"


def as_readme_says(result: Result) -> bool:
    """Idle: 421 4.3.2; DATA: 250 then 421 4.3.2; exit 0 within the drain (plus slack).

    DATA that is not finished within smtp.drain_seconds gets 421 4.3.2 instead.
    """
    limit = (result.drain_seconds or 0) + 5
    finishes = result.drain_seconds is not None and result.complete_after < result.drain_seconds
    return (all(o.reply == "421 4.3.2" and o.closed for o in result.idle)
            and all((o.first.startswith("250") and o.second == "421 4.3.2") if finishes
                    else o.first == "421 4.3.2 (before the final dot)"
                    for o in result.in_data)
            and result.exit_code == 0 and result.exit_after_sigterm is not None
            and result.exit_after_sigterm < limit)


def exit_text(code: int | None) -> str:
    if code is None:
        return f"did not exit within {EXIT_LIMIT_SECONDS:.0f} s (killed)"
    if code < 0:
        return f"{code} (killed by {signal.Signals(-code).name})"
    return str(code)


def print_report(result: Result) -> None:
    print(", ".join(f"{key}: {value}" for key, value in result.environment.items()))
    print()
    idle, data = result.idle, result.in_data
    print(f"idle sessions ({len(idle)}): {_counts([o.reply for o in idle])}; "
          f"max {_max([o.after_sigterm for o in idle])} after SIGTERM; "
          f"closed by the server: {sum(o.closed for o in idle)} of {len(idle)}")
    print(f"sessions in DATA ({len(data)}), the rest of the message due "
          f"{result.complete_after:.2f} s after SIGTERM:")
    print(f"  reply to the end of DATA: {_counts([o.first for o in data])}; "
          f"max {_max([o.first_after_dot for o in data])} after the final dot, "
          f"{_max([o.first_after_sigterm for o in data])} after SIGTERM")
    print(f"  then: {_counts([o.second for o in data])}; "
          f"max {_max([o.second_after_sigterm for o in data])} after SIGTERM")
    print(f"  stored: {result.stored} (250 received: "
          f"{sum(o.first.startswith('250') for o in data)})")
    print(f"new connection {result.complete_after:.2f} s after SIGTERM: {result.new_connection}")
    exited = (f"{result.exit_after_sigterm:.3f} s after SIGTERM"
              if result.exit_after_sigterm is not None else "-")
    print(f"process: exit code {exit_text(result.exit_code)}, {exited}")
    print()
    print("as README 'Operate' says (idle: 421 4.3.2; DATA: 250 then 421 4.3.2, or 421 4.3.2 "
          f"when not finished within the drain; exit 0): "
          f"{'yes' if as_readme_says(result) else 'NO'}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=5, help="idle sessions, EHLO only (5)")
    parser.add_argument("--in-data", type=int, default=5,
                        help="sessions in the middle of DATA at SIGTERM (5)")
    parser.add_argument("--drain-seconds", type=float, default=10.0,
                        help="smtp.drain_seconds of the daemon (10)")
    parser.add_argument("--complete-after", type=float, default=0.5,
                        help="seconds after SIGTERM at which the DATA sessions send the rest "
                             "of their message (0.5)")
    parser.add_argument("--tree", type=Path,
                        help="run the daemon from this checkout (e.g. a worktree of 5b3ae17)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.idle < 0 or args.in_data < 0 or args.drain_seconds < 0 or args.complete_after < 0:
        parser.error("counts and seconds must not be negative")
    if args.tree is not None:
        args.tree = args.tree.resolve()
        if not (args.tree / "ingestd" / "cli" / "main.py").exists():
            parser.error(f"{args.tree} is not an ingestd checkout (no ingestd/cli/main.py)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = measure(args)
    if args.json:
        print(json.dumps({**asdict(result), "as_readme_says": as_readme_says(result)},
                         indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
