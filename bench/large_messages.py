"""Large messages over SMTP: accept rate and server CPU per MB, and peak memory under a burst.

Usage (from the repository root, after the README's first install command):

    .venv/bin/python bench/large_messages.py [--sizes 1,10] [--messages 16] [--connections 4]
                                             [--burst 32] [--burst-size 10] [--json]

Three servers, each in its own process, measured in the same run:

* ``aiosmtpd``: stock aiosmtpd with a do-nothing handler (bench/sink_server.py) — the baseline;
* ``reader``: ingestd's SMTP class (its own DATA reader) with the same do-nothing handler;
* ``ingestd``: ``ingestd run`` with SQLite and ``processing.workers: 0`` — full intake, the
  commit (fsync) included, processing paused.

For each message size, ``--messages`` messages go over ``--connections`` concurrent
connections; the figures are messages/s accepted (wall time) and the server's CPU time
per MB (from /proc), with ratios to aiosmtpd's. Then ``--burst`` concurrent messages of
``--burst-size`` MB go to ``ingestd`` twice, and its peak RSS (VmHWM) is printed after
each burst, beside the limit the issue sets: 150 MB + 1.5 x smtp.max_inflight_bytes.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from benchlib import ingestd_package, ingestd_revision

HOST = "127.0.0.1"
MB = 1024 * 1024
BENCH = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start listening")


def start(kind: str, directory: Path, budget_mb: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    if kind in ("aiosmtpd", "reader"):
        argv = [sys.executable, str(BENCH / "sink_server.py"), str(port), kind]
    else:
        config = {
            "database": {"url": f"sqlite:///{directory}/ingestd.db"},
            "smtp": {"host": HOST, "port": port, "max_message_size": 26_214_400,
                     "max_inflight_bytes": budget_mb * MB, "max_connections_per_ip": 500},
            "processing": {"workers": 0},
            "logging": {"level": "warning"},
            "mailboxes": [{"name": "support", "addresses": ["support@example.com"]}],
        }
        path = directory / "ingestd.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [sys.executable, "-m", "ingestd", "run", "--config", str(path)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=directory)
    wait_listening(port, proc)
    return proc, port


def message(size_mb: float, tag: str) -> bytes:
    """A message of ``size_mb`` MB in 76-character lines, like a base64 attachment's."""
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    header = (f"From: bench@acme.example\r\nTo: support@example.com\r\nSubject: {tag}\r\n"
              f"Message-ID: <{tag}@bench.example>\r\n\r\n").encode()
    return header + line * int(size_mb * MB // len(line))


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("server closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


async def send_all(port: int, messages: list[bytes], connections: int) -> dict[int, int]:
    """Send over ``connections`` raw sessions; count the reply codes.

    A raw client (the messages need no dot-stuffing: no line starts with a
    dot) so that the client's own Python work does not cap the rate measured.
    """
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for item in messages:
        queue.put_nowait(item)
    codes: dict[int, int] = {}

    async def session() -> None:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        try:
            await _reply(reader)
            writer.write(b"EHLO bench.example\r\n")
            await _reply(reader)
            while not queue.empty():
                raw = queue.get_nowait()
                writer.write(b"MAIL FROM:<bench@acme.example>\r\n"
                             b"RCPT TO:<support@example.com>\r\nDATA\r\n")
                await _reply(reader)
                await _reply(reader)
                if await _reply(reader) != 354:
                    raise RuntimeError("no 354")
                writer.write(raw)
                writer.write(b".\r\n")
                await writer.drain()
                code = await _reply(reader)
                codes[code] = codes.get(code, 0) + 1
            writer.write(b"QUIT\r\n")
            await writer.drain()
        finally:
            writer.close()

    await asyncio.gather(*(session() for _ in range(connections)))
    return codes


def measure(kind: str, sizes: list[float], count: int, connections: int,
            directory: Path) -> list[dict[str, Any]]:
    proc, port = start(kind, directory, budget_mb=256)
    rows = []
    try:
        for size in sizes:
            batch = [message(size, f"{kind}-{size}-{i}") for i in range(count)]
            cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()
            codes = asyncio.run(send_all(port, batch, connections))
            wall, cpu = time.perf_counter() - wall0, cpu_seconds(proc.pid) - cpu0
            megabytes = sum(len(m) for m in batch) / MB
            rows.append({"server": kind, "size_mb": size, "messages": count,
                         "codes": codes, "per_second": count / wall,
                         "cpu_ms_per_mb": 1000 * cpu / megabytes})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return rows


def burst(count: int, size_mb: float, directory: Path, budget_mb: int) -> list[dict[str, Any]]:
    proc, port = start("ingestd", directory, budget_mb=budget_mb)
    results = []
    try:
        for round_ in (1, 2):
            batch = [message(size_mb, f"burst{round_}-{i}") for i in range(count)]
            codes = asyncio.run(send_all(port, batch, count))
            del batch
            results.append({"burst": round_, "codes": codes,
                            "peak_rss_mb": peak_rss_mb(proc.pid),
                            "limit_mb": 150 + 1.5 * budget_mb})
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1,10", help="message sizes in MB")
    parser.add_argument("--messages", type=int, default=16)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--burst", type=int, default=32)
    parser.add_argument("--burst-size", type=float, default=10)
    parser.add_argument("--budget-mb", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for kind in ("aiosmtpd", "reader", "ingestd"):
            directory = Path(tmp) / kind
            directory.mkdir()
            rows += measure(kind, sizes, args.messages, args.connections, directory)
        burst_dir = Path(tmp) / "burst"
        burst_dir.mkdir()
        bursts = burst(args.burst, args.burst_size, burst_dir, args.budget_mb)
    result = {"ingestd": ingestd_revision(ingestd_package()), "cpus": os.cpu_count(),
              "load": os.getloadavg(), "throughput": rows, "bursts": bursts}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"ingestd: {result['ingestd']}, cpus: {result['cpus']}, "
          f"load average before: {' '.join(f'{x:.2f}' for x in result['load'])}")
    print(f"\n{'server':<9} {'size':>6} {'msgs/s':>16} {'CPU ms per MB':>20}  replies")
    base = {r["size_mb"]: r for r in rows if r["server"] == "aiosmtpd"}
    for r in rows:
        b = base[r["size_mb"]]
        print(f"{r['server']:<9} {r['size_mb']:>4g}MB "
              f"{r['per_second']:>7.2f} ({r['per_second'] / b['per_second']:.2f}x) "
              f"{r['cpu_ms_per_mb']:>10.1f} ({r['cpu_ms_per_mb'] / b['cpu_ms_per_mb']:.2f}x)  "
              f"{r['codes']}")
    print("\n(x): ratio to stock aiosmtpd with a do-nothing handler, same size, same run.")
    for b in bursts:
        print(f"burst {b['burst']}: {args.burst} x {args.burst_size:g} MB at once -> replies "
              f"{b['codes']}, ingestd peak RSS {b['peak_rss_mb']:.0f} MB "
              f"(limit {b['limit_mb']:.0f} MB with a {args.budget_mb} MiB budget)")


if __name__ == "__main__":
    main()
