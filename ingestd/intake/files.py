"""Messages from files: single .eml files, directories of them, mbox files, stdin.

Bytes are taken as they are (LF or CRLF line endings alike); only a leading
UTF-8 byte-order mark is removed, since it belongs to the file, not the mail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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
    if data.startswith(BOM):
        data = data[len(BOM):]
    data = _strip_leading_blank_lines(data)
    first = first_line(data)
    if is_envelope_line(first):
        yield from _split_mbox(origin, data, _ENVELOPE.match)
        return
    loose = _LOOSE_ENVELOPE.match(first)
    if loose is not None:
        # Split only at lines written the same way as the first (e.g. "From - ").
        token = re.escape(loose.group(1))
        same_shape = re.compile(rb"From " + token + rb"(?:\s|$)")
        yield from _split_mbox(origin, data,
                               lambda line: _ENVELOPE.match(line) or same_shape.match(line))
        return
    if not looks_like_mail(data):
        yield Refusal(origin, _not_mail_reason(data))
        return
    yield FileMessage(origin, data)


def _not_mail_reason(data: bytes) -> str:
    if not data.strip():
        return "empty input"
    first = first_line(data)[:60].decode("utf-8", "replace")
    return f"no header block: first line is {first!r}"


def _split_mbox(
    origin: str, data: bytes, is_separator: Callable[[bytes], object]
) -> Iterator[FileMessage | Refusal]:
    """Split at envelope lines that start the file or follow a blank line.

    A body line starting with "From " (no asctime date, or not after a blank
    line) splits nothing. The blank line before an envelope line is the
    separator, not part of the message before it. ``>From`` quoting is kept
    as it is: undoing it is ambiguous between mbox variants, and the raw
    bytes must stay what the file held.
    """
    lines = data.splitlines(keepends=True)
    starts: list[int] = []
    previous_blank = True
    for index, line in enumerate(lines):
        if previous_blank and is_separator(line.rstrip(b"\r\n")):
            starts.append(index)
        previous_blank = line in (b"\n", b"\r\n", b"\r")
    for number, start in enumerate(starts, 1):
        end = starts[number] if number < len(starts) else len(lines)
        body = lines[start + 1 : end]
        if number < len(starts) and body and body[-1] in (b"\n", b"\r\n", b"\r"):
            body = body[:-1]
        raw = _strip_leading_blank_lines(b"".join(body))
        name = f"{origin}#{number}"
        if looks_like_mail(raw):
            yield FileMessage(name, raw)
        else:
            yield Refusal(name, _not_mail_reason(raw))


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
