"""The few header values intake reads cheaply (subject and Message-ID for the log).

Intake keeps a message's Subject and Message-ID beside its raw bytes, for the
log and for listings; a worker parses the whole message later. What intake
spends on them must not grow with the header, or a sender of huge headers
slows intake for everyone (issue 15: decoding a 256 KB header of encoded
words took 0.1-0.3 s). So this parses no header block. It scans at most the
first ``SUMMARY_HEADER_BYTES`` of the raw bytes for the two fields (names at
line starts, any case, values with their folded continuation lines), and
decodes at most ``SUBJECT_RAW_BYTES`` of the Subject. A field beyond the
window is not read: the log shows None, processing reads it anyway.

Values read as processing reads them: 8-bit bytes as UTF-8, else
windows-1252 (``ingestd.mailtext.bytes_text``), encoded words with
``decode_words``; NUL, CR and LF removed. Any oddity yields ``None`` rather
than an exception: this must never fail a delivery. One difference from the
stdlib parser: a malformed line (no colon) does not end the header block
here, only the blank line does, so a field below one is still logged.
"""

from __future__ import annotations

import contextlib
import re

from ingestd.mailbytes import header_block, header_length
from ingestd.mailtext import bytes_text, decode_words

# header_length is re-exported: it was defined here before ingestd.mailbytes.
__all__ = [
    "SUBJECT_RAW_BYTES",
    "SUMMARY_HEADER_BYTES",
    "header_block",
    "header_length",
    "summary_headers",
]

# Only fields starting in this much of the raw message are read. Relays
# prepend their trace fields above the sender's Subject; in the ~1,900
# messages of the third-party corpora it never starts past 8 KB. Scanning
# costs ~0.3 us per KB plus ~8 ns per line (bench/heavy_headers.py), about
# 10-35 us for 32 KB: within the 1.2x of a 4 KB header that issue 15 allows.
SUMMARY_HEADER_BYTES = 32 * 1024

# What the inbound_messages columns keep.
SUBJECT_CHARS = 2000
MESSAGE_ID_CHARS = 998

# The Subject's raw value is cut to this many bytes before decoding. Decoding
# costs about 30-110 us per KB of encoded words (decode_header), far more
# than anything else intake does per byte, so the cut bounds a huge Subject
# to what a 4 KB header can cost anyway (8 KB would double it). An encoded
# word decodes to fewer characters than it has: 4 KB of words filled as mail
# programs fill them (up to 75 characters) give the 2,000 stored characters
# of Latin-script text; short words, or CJK and emoji, are logged shorter
# (the listing shows 50).
SUBJECT_RAW_BYTES = 4096
# A Message-ID is kept to 998 characters; 4 bytes per character at most.
MESSAGE_ID_RAW_BYTES = 4 * MESSAGE_ID_CHARS

# One pass finds a wanted field at the start of a line, or the blank line
# that ends the header block. Its shape is for speed (an IGNORECASE
# pattern, or one trying alternatives at every line start, is many times
# slower): the regex engine skips to each LF in a tight loop and, at most
# lines, gives up at the one-character class after it.
_FIELD_OR_END = re.compile(
    rb"\n[SsMm\r\n]"
    rb"(?:(?<=[Ss])[Uu][Bb][Jj][Ee][Cc][Tt]:|(?<=[Mm])[Ee][Ss][Ss][Aa][Gg][Ee]-[Ii][Dd]:"
    rb"|(?<=\n)|(?<=\r)\n)")
_FIELD_AT_START = re.compile(rb"(?P<name>subject|message-id):", re.IGNORECASE)
# Whitespace before a value, folds included, but not the line break that ends it.
_LEADING_SPACE = re.compile(rb"(?:[ \t]|\r?\n[ \t])*")
# A line break not followed by folding whitespace ends a field.
_FIELD_END = re.compile(rb"\n(?![ \t])")
# What a cut leaves of an encoded word at the end: "=?", "=?charset",
# "=?charset?b?payl" or "=?charset?b?payload?". A charset holds no "="
# (else "==?=", a B word's end, would look like such a start).
_PARTIAL_WORD = re.compile(rb"=\?[^?\s=]*(?:\?[^?\s]?(?:\?[^?\s]*\??)?)?\Z")


def summary_headers(raw: bytes) -> tuple[str | None, str | None]:
    """(subject, message_id) decoded for display, or None where absent or unreadable."""
    try:
        return _summary(raw)
    except Exception:
        return None, None


def _summary(raw: bytes) -> tuple[str | None, str | None]:
    limit = min(len(raw), SUMMARY_HEADER_BYTES)
    if raw.startswith((b"\n", b"\r\n")):
        return None, None  # an empty header block: all of it is body
    if _bare_cr_lines(raw):
        # Old Mac line ends (files may have them): make them LF, as the
        # stdlib parser reads them, so that the scan below sees line starts.
        raw = raw[:limit].replace(b"\r", b"\n")
    starts: dict[bytes, int] = {}
    first = _FIELD_AT_START.match(raw, 0, limit)
    if first is not None:
        starts[first["name"].lower()] = first.end()
    for found in _FIELD_OR_END.finditer(raw, 0, limit):
        initial = raw[found.start() + 1]
        if initial in b"\r\n":
            break  # the blank line: what follows is the body
        # The first occurrence counts, as for email.message.Message.get.
        starts.setdefault(b"subject" if initial in b"Ss" else b"message-id", found.end())
        if len(starts) == 2:
            break
    subject = message_id = None
    if (at := starts.get(b"subject")) is not None:
        subject = _subject(*_value(raw, at, limit, SUBJECT_RAW_BYTES))
    if (at := starts.get(b"message-id")) is not None:
        message_id = _message_id(_value(raw, at, limit, MESSAGE_ID_RAW_BYTES)[0])
    return subject, message_id


def _bare_cr_lines(raw: bytes) -> bool:
    """Whether the first line ends with a CR alone (looking at the first KB only)."""
    cr = raw.find(b"\r", 0, 1024)
    return cr >= 0 and raw[cr + 1:cr + 2] != b"\n" and raw.find(b"\n", 0, cr) < 0


def _value(raw: bytes, start: int, limit: int, most: int) -> tuple[bytes, bool]:
    """The value of the field whose name ends at ``start``, without leading space,
    at most ``most`` bytes of it and not beyond ``limit``; and whether it was cut."""
    space = _LEADING_SPACE.match(raw, start, limit)
    start = space.end() if space is not None else start
    stop = min(start + most, limit)
    # Look two bytes past the cut: a line break right at it ends the field
    # only if no fold follows.
    end = _FIELD_END.search(raw, start, min(stop + 2, len(raw)))
    if end is not None and end.start() <= stop:
        value = raw[start:end.start()]
        return (value[:-1] if value.endswith(b"\r") else value), False
    if stop == len(raw):
        return raw[start:stop], False  # the message ends inside the field
    return _clean_cut(raw[start:stop]), True


def _clean_cut(value: bytes) -> bytes:
    """``value`` without what a cut may have broken at its end.

    A cut inside a UTF-8 sequence would make the whole value fail UTF-8 and
    read as windows-1252; a cut inside an encoded word would show its raw
    ``=?charset?b?...`` text.
    """
    value = _complete_utf8(value)
    # An encoded word holds no whitespace: a broken one lies after the last.
    token = max(value.rfind(b" "), value.rfind(b"\t"), value.rfind(b"\n")) + 1
    partial = _PARTIAL_WORD.search(value, token)
    if partial is not None:
        return value[:partial.start()]
    if value.endswith(b"=") and not value.endswith(b"?="):
        return value[:-1]  # the "=" of a "=?", not the end of a complete word
    return value


def _complete_utf8(value: bytes) -> bytes:
    """``value`` without a trailing UTF-8 sequence that the cut left incomplete."""
    back = 0
    while back < 3 and back < len(value) and 0x80 <= value[-1 - back] < 0xC0:
        back += 1  # continuation bytes
    if back == len(value) or value[-1 - back] < 0xC0:
        return value  # ASCII last, or only continuation bytes (not UTF-8 anyway)
    lead = value[-1 - back]
    needs = 1 if lead < 0xE0 else 2 if lead < 0xF0 else 3
    return value[:-1 - back] if back < needs else value


def _subject(raw: bytes, cut: bool) -> str:
    text = bytes_text(raw)
    # On failure it is shown undecoded, as the stdlib parser would have left it.
    with contextlib.suppress(Exception):
        text = decode_words(text)
    # Lone surrogates (from odd charsets) cannot be stored.
    text = _clean(text.encode("utf-8", "replace").decode("utf-8"))
    if cut:
        # A character split across two encoded words, the second one cut off.
        text = text.rstrip("\ufffd").rstrip()
    return text[:SUBJECT_CHARS]


def _message_id(raw: bytes) -> str | None:
    text = bytes_text(raw).encode("utf-8", "replace").decode("utf-8")
    return _clean(text)[:MESSAGE_ID_CHARS] or None


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; line breaks in a log field only confuse.
    return text.replace("\x00", "").replace("\r", " ").replace("\n", " ").strip()
