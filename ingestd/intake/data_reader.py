"""Reading DATA in chunks, with a budget for the message bytes all sessions hold.

aiosmtpd reads DATA line by line in Python (tens of milliseconds of CPU per
megabyte) and holds all of it before any check. This reader takes what the
socket has in 64 KiB chunks, looks for the end only where it can be
(``CRLF.CRLF``, or ``.CRLF`` as the very first line), and undoes
dot-stuffing with one replace. The message is delimited exactly as before:
lines end at CRLF only, so a bare LF before a dot ends nothing (the bare
line-end refusal and the smuggling tests see the same bytes).

Memory: every chunk kept is first reserved in the ``InflightBudget`` shared
by all sessions; a message that would exceed it (or ``max_size``) is read to
its end and dropped, so the session stays in step and its sender hears why.
The socket reader's own buffer is kept small (see ``IngestSMTP``), so a fast
sender is slowed by TCP flow control instead of filling memory.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

END = b"\r\n.\r\n"
CHUNK = 64 * 1024

Problem = Literal["too_big", "over_budget"]


class InflightBudget:
    """Bytes of message data held in memory across all sessions, against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def reserve(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        self.peak = max(self.peak, self.used)
        return True

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)


@dataclass
class DataRead:
    """A DATA section as read: its content (dot-stuffing undone) or why it was dropped."""

    content: bytes  # a bytearray in fact, see _unstuff
    problem: Problem | None
    raw_size: int
    reserved: int  # bytes still reserved in the budget; the caller releases them


async def read_data(reader: asyncio.StreamReader, *, max_size: int,
                    budget: InflightBudget) -> DataRead:
    """Read up to and including the end-of-data line; bytes after it stay in ``reader``.

    The content is one ``bytearray`` grown in place (no list of chunks joined
    at the end, no second copy while the first is alive): a message costs its
    own size in memory, which is what the budget counts. Raises
    ``ConnectionResetError`` when the connection ends before the end line
    (nothing is kept; the budget is released).
    """
    content = bytearray()
    reserved = 0
    size = 0
    problem: Problem | None = None
    # As if a line had just ended: ".\r\n" as the first line ends DATA at once.
    tail = b"\r\n"
    try:
        while True:
            chunk = await reader.read(CHUNK)
            if not chunk:
                raise ConnectionResetError("connection closed during DATA")
            window = tail + chunk
            end = window.find(END)
            if end >= 0:
                # The content ends after the CRLF that starts END.
                cut = end + 2 - len(tail)
                after = end + len(END) - len(tail)
                if after < len(chunk):
                    _unread(reader, chunk[after:])
                piece = chunk[:max(cut, 0)]
                size += len(piece)
                if problem is None:
                    problem = _check(len(piece), size, max_size, budget)
                if problem is not None:
                    budget.release(reserved)
                    return DataRead(b"", problem, size, 0)
                reserved += len(piece)
                content += piece
                if cut < 0:
                    # Part of END was already kept with the previous chunk.
                    del content[cut:]
                return DataRead(_unstuff(content), None, size, reserved)
            size += len(chunk)
            if problem is None:
                problem = _check(len(chunk), size, max_size, budget)
                if problem is None:
                    reserved += len(chunk)
                    content += chunk
                else:
                    budget.release(reserved)
                    reserved = 0
                    del content[:]
            tail = window[-(len(END) - 1):]
    except BaseException:
        budget.release(reserved)
        raise


def _check(piece: int, size: int, max_size: int, budget: InflightBudget) -> Problem | None:
    """Whether ``piece`` more bytes may be kept: the size limit, then the budget."""
    if size > max_size:
        return "too_big"
    if piece and not budget.reserve(piece):
        return "over_budget"
    return None


def _unstuff(content: bytearray) -> bytes:
    """RFC 5321 4.5.2: the first dot of every line that starts with one is removed."""
    if b"\r\n." in content:
        content = content.replace(b"\r\n.", b"\r\n")
    if content.startswith(b"."):
        del content[:1]
    # A bytearray is bytes-like everywhere the message goes (hash, parse, insert);
    # handing it on as it is avoids copying a message of many megabytes again.
    return content  # type: ignore[return-value]


def _unread(reader: asyncio.StreamReader, data: bytes) -> None:
    """Put back what followed the end line (a pipelined command) for the command loop.

    StreamReader has no public way back; its buffer is a bytearray read from
    the front (CPython 3.8 to 3.13), and aiosmtpd already relies on it.
    """
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    buffer[0:0] = data
