"""Messages from files: single .eml files, directories of them, mbox files, stdin.

Bytes are taken as they are (LF or CRLF line endings alike); only a leading
UTF-8 byte-order mark is removed, since it belongs to the file, not the mail.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BOM = b"\xef\xbb\xbf"

# "From sender@example.com Thu Nov 24 10:00:00 2026": the mbox envelope line.
# The sender may be any non-space token (MAILER-DAEMON, an empty "<>" ...);
# the asctime date is what tells it apart from a body line starting "From ".
_ENVELOPE = re.compile(
    rb"From \S+ +(?:[A-Z][a-z]{2} ){2} ?\d{1,2} \d{1,2}:\d{2}(?::\d{2})?"
    rb"(?: +[A-Za-z+\-0-9]+)? +\d{4}(?:[ \t].*)?\r?$"
)
# Any other "From " line at the very top (no date, another date format):
# an envelope line some tool wrote, not a header ("From:" / "From  :").
_LOOSE_ENVELOPE = re.compile(rb"From (?![ \t]*:)(\S*)")
# A header field: printable ASCII name without space or colon, then a colon.
_HEADER_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")


@dataclass(frozen=True)
class FileMessage:
    """One message found in an input, with where it came from."""

    origin: str  # path, "path#N" for the Nth message of an mbox, or "-"
    raw: bytes


@dataclass(frozen=True)
class Refusal:
    """Input that is not mail, and why."""

    origin: str
    reason: str


def is_envelope_line(line: bytes) -> bool:
    return _ENVELOPE.match(line) is not None


def first_line(data: bytes) -> bytes:
    """The first line, whatever the line ending (LF, CRLF, or old Mac CR)."""
    lines = data[:4096].splitlines()
    return lines[0] if lines else b""


def looks_like_mail(raw: bytes) -> bool:
    """True when ``raw`` starts with a header block (at least one header field)."""
    return _HEADER_FIELD.match(first_line(raw)) is not None


def _strip_leading_blank_lines(data: bytes) -> bytes:
    # Some tools pad a saved message with blank or space-only lines; they are
    # not part of the message, and a parser would read the headers as body.
    stripped = data.lstrip(b" \t\r\n")
    if stripped is data or not stripped:
        return data
    return data[len(data) - len(stripped):]


def split_input(origin: str, data: bytes) -> Iterator[FileMessage | Refusal]:
    """The messages in one file's bytes, and a ``Refusal`` for what is not mail."""
    return split_stream(origin, io.BytesIO(data))


def split_stream(origin: str, stream: BinaryIO) -> Iterator[FileMessage | Refusal]:
    """The messages in a byte stream, read line by line.

    Memory is bounded by the largest message, not by the input: a 2 GB mbox
    is never held whole. A file with old Mac CR line endings only (no LF in
    its first 64 KiB) is read whole, as its lines cannot be found by reading
    up to LF; such files are single saved messages in practice.
    """
    head = stream.read(_PEEK)
    if head.startswith(BOM):
        head = head[len(BOM):]
    if b"\r" in head and b"\n" not in head:
        lines: Iterator[bytes] = iter((head + stream.read()).splitlines(keepends=True))
    else:
        lines = _lines(head, stream)
    # Padding first: blank or space-only lines before the first header.
    first = b""
    for line in lines:
        if line.strip():
            first = line.lstrip(b" \t")
            break
    rest = itertools.chain([first], lines)
    content = first.rstrip(b"\r\n")
    if is_envelope_line(content):
        yield from _split_mbox(origin, rest, _ENVELOPE.match)
        return
    loose = _LOOSE_ENVELOPE.match(content)
    if loose is not None:
        # Split only at lines written the same way as the first (e.g. "From - ").
        token = re.escape(loose.group(1))
        same_shape = re.compile(rb"From " + token + rb"(?:\s|$)")
        yield from _split_mbox(origin, rest,
                               lambda line: _ENVELOPE.match(line) or same_shape.match(line))
        return
    data = b"".join(rest)
    if not looks_like_mail(data):
        yield Refusal(origin, _not_mail_reason(data))
        return
    yield FileMessage(origin, data)


_PEEK = 64 * 1024


def _lines(head: bytes, stream: BinaryIO) -> Iterator[bytes]:
    """Lines ending in LF (kept), ``head`` first, then the rest of ``stream``.

    Each byte is scanned once, so a message without any LF (or one huge
    line) costs linear time, not quadratic.
    """
    partial = bytearray()
    chunk = head
    while chunk:
        start = 0
        end = chunk.find(b"\n")
        while end >= 0:
            if partial:
                partial += chunk[start:end + 1]
                yield bytes(partial)
                partial.clear()
            else:
                yield chunk[start:end + 1]
            start = end + 1
            end = chunk.find(b"\n", start)
        partial += chunk[start:]
        chunk = stream.read(_PEEK)
    if partial:
        yield bytes(partial)


def _not_mail_reason(data: bytes) -> str:
    if not data.strip():
        return "empty input"
    first = first_line(data)[:60].decode("utf-8", "replace")
    return f"no header block: first line is {first!r}"


_BLANK = (b"\n", b"\r\n", b"\r")


def _split_mbox(
    origin: str, lines: Iterator[bytes], is_separator: Callable[[bytes], object]
) -> Iterator[FileMessage | Refusal]:
    """Split at envelope lines that start the input or follow a blank line.

    A body line starting with "From " (no asctime date, or not after a blank
    line) splits nothing. The blank line before an envelope line is the
    separator, not part of the message before it. ``>From`` quoting is kept
    as it is: undoing it is ambiguous between mbox variants, and the raw
    bytes must stay what the file held.
    """
    body: list[bytes] | None = None
    number = 0
    previous_blank = True
    for line in lines:
        if previous_blank and is_separator(line.rstrip(b"\r\n")):
            if body is not None:
                if body and body[-1] in _BLANK:
                    body.pop()
                yield _mbox_message(origin, number, body)
            number += 1
            body = []
        elif body is not None:
            body.append(line)
        previous_blank = line in _BLANK
    if body is not None:
        yield _mbox_message(origin, number, body)


def _mbox_message(origin: str, number: int, body: list[bytes]) -> FileMessage | Refusal:
    raw = _strip_leading_blank_lines(b"".join(body))
    body.clear()
    name = f"{origin}#{number}"
    return FileMessage(name, raw) if looks_like_mail(raw) else Refusal(name, _not_mail_reason(raw))


def expand_paths(paths: list[str]) -> Iterator[Path | str]:
    """Files named, files under directories named (recursively, sorted), and "-"."""
    for name in paths:
        if name == "-":
            yield "-"
            continue
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path
