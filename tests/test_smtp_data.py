"""Our DATA reader: pipelined commands after the dot, and the in-flight memory budget."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiosmtplib

from ingestd.intake.data_reader import InflightBudget, read_data
from tests.conftest import base_config, write_config
from tests.support.postgres import free_port
from tests.support.waiting import wait_for
from tests.test_daemon_process import LineReader
from tests.test_drain import Session
from tests.test_smtp_intake import SIMPLE

MB = 1024 * 1024


def _reference(stream: bytes) -> tuple[bytes, bytes]:
    """(content, what follows) as a line-by-line reader (aiosmtpd's way) splits ``stream``."""
    out, position = [], 0
    while True:
        end = stream.index(b"\r\n", position) + 2
        line, position = stream[position:end], end
        if line == b".\r\n":
            return b"".join(out), stream[position:]
        out.append(line[1:] if line.startswith(b".") else line)


def test_the_chunked_reader_agrees_with_a_line_reader_however_the_bytes_arrive() -> None:
    """Random DATA split at random points: same content and same leftovers as line by line."""
    rng = random.Random(15)
    pieces = [b"a", b".", b"..", b"\r\n", b"\n", b"\r", b"x\r\n.", b"\r\n.\r", b"\r\n..\r\n"]

    async def read(stream: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
        reader = asyncio.StreamReader()
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            reader.feed_data(stream[start:end])
        reader.feed_eof()
        result = await read_data(reader, max_size=MB, budget=InflightBudget(MB))
        return result.content, await reader.read()

    checked = 0
    for _ in range(3000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        stream = body + (b"\r\n" if body and not body.endswith(b"\r\n") else b"") + \
            b".\r\nQUIT\r\n"
        try:
            expected = _reference(stream)
        except ValueError:
            continue
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(0, 5))))
        assert asyncio.run(read(stream, cuts)) == expected, (stream, cuts)
        checked += 1
    assert checked > 1000


def test_a_command_pipelined_after_the_dot_is_still_read(daemon: Any) -> None:
    """`.` and the next MAIL FROM in one packet: the message is stored and MAIL answered."""
    session = Session(daemon.port)
    session.start_data()
    session.sock.sendall(SIMPLE + b".\r\nMAIL FROM:<next@acme.example>\r\n")
    assert session.reply().startswith(b"250 2.0.0")
    assert session.reply().startswith(b"250")
    assert len(daemon.rows()) == 1


def _message(size: int, tag: str) -> bytes:
    line = b"x" * 998 + b"\r\n"
    header = (f"From: a@acme.example\r\nSubject: big {tag}\r\n"
              f"Message-ID: <{tag}@acme.example>\r\n\r\n").encode()
    return header + line * (size // len(line))


async def _send(port: int, message: bytes) -> int:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
    await client.connect()
    try:
        await client.sendmail("a@acme.example", ["support@example.com"], message)
        return 250
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code
    finally:
        client.close()


def test_the_inflight_budget_refuses_with_452_and_accepts_again(tmp_path: Path) -> None:
    """16 concurrent 4 MB messages against a 16 MiB budget: some 452 4.3.1, then all accepted."""
    port = free_port()
    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["smtp"].update({"port": port, "max_message_size": 8 * MB,
                           "max_inflight_bytes": 16 * MB})
    config["logging"] = {"level": "info", "format": "json"}
    path = write_config(tmp_path, config)
    proc = subprocess.Popen([sys.executable, "-m", "ingestd", "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    assert proc.stdout is not None
    out = LineReader(proc.stdout)
    try:
        wait_for(lambda: any(e.get("event") == "daemon.ready" for e in out.events()),
                 timeout=30, what="daemon.ready")

        async def burst(tag: str) -> list[int]:
            return await asyncio.gather(*(_send(port, _message(4 * MB, f"{tag}{i}"))
                                          for i in range(16)))

        first = asyncio.run(burst("a"))
        assert set(first) <= {250, 452} and 452 in first and 250 in first, first
        # Alone, each fits: the budget was only ever the burst's, and it is back.
        again = [asyncio.run(_send(port, _message(4 * MB, f"b{i}"))) for i in range(3)]
        assert again == [250, 250, 250]
        peak_kb = int(Path(f"/proc/{proc.pid}/status").read_text()
                      .split("VmHWM:")[1].split()[0])
        # Generous: the interpreter, SQLite, and the budget held twice at most.
        assert peak_kb / 1024 < 150 + 1.5 * 16 * 2, f"peak RSS {peak_kb / 1024:.0f} MB"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert first.count(250) + 3 == sum(1 for e in out.events() if e.get("event") ==
                                       "smtp.transaction" and e.get("outcome") == "stored")
