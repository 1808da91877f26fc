"""Text that may go into any database column, whatever bytes it came from.

Shared by both halves: intake reads the subject for the log, processing
every header (neither imports the other).

Header values reach us with their 8-bit bytes as surrogate escapes (the
stdlib parser reads bytes that way). Such a value must become real text
before anything else reads it: ``header_text`` reads the bytes as UTF-8,
else as a charset the message declares elsewhere (while the parse stage
reads it, ``mailcharsets.reading``), else as windows-1252 (the single-byte
charset of most mail that declares none), and ``POLICY`` makes every header
read go through it. Encoded words decode with the charset their sender
meant (``charsets``: gb2312 as GB18030 and so on), and the same fallbacks
when that fails.
"""

from __future__ import annotations

import re
from email.header import decode_header
from email.policy import Compat32

from ingestd.charsets import WINDOWS_1252
from ingestd.mailcharsets import header_bytes, labelled_text

_SURROGATE = re.compile("[\udc80-\udcff]")


def clean_text(value: object) -> str:
    """Text safe for any database: valid UTF-8, no NUL."""
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def bytes_text(raw: bytes) -> str:
    """Bytes of unknown charset as text: UTF-8 if they are UTF-8, else windows-1252."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode(WINDOWS_1252.codec, WINDOWS_1252.errors)


def header_text(value: object, name: str = "header") -> str:
    """A header value as text: raw 8-bit bytes (surrogate escapes) decoded, never kept.

    ``name`` (the field's) is for the defect a fallback records.
    """
    text = value if isinstance(value, str) else str(value)
    if _SURROGATE.search(text) is None:
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        return text.encode("utf-8", "replace").decode("utf-8")
    return header_bytes(raw, name)


def decode_words(text: str) -> str:
    """Unstructured header text (a Subject) with its RFC 2047 encoded words decoded.

    The stdlib splits the words out; decoding each one here keeps text around
    them that is already Unicode (8-bit bytes read by ``header_text``) intact,
    where ``make_header`` and mail-parser garble or drop it.
    """
    if "=?" not in text:
        return text
    try:
        chunks = decode_header(text)
    except Exception:
        return text
    return "".join(_chunk_text(chunk, charset) for chunk, charset in chunks)


def _chunk_text(chunk: bytes | str, charset: str | None) -> str:
    if isinstance(chunk, str):
        return chunk
    if charset is None:
        # Text between encoded words, which decode_header turned into bytes
        # with raw-unicode-escape; undo that (Latin-1 if the text had a "\u").
        try:
            return chunk.decode("raw-unicode-escape")
        except UnicodeDecodeError:
            return chunk.decode("latin-1")
    return labelled_text(chunk, charset.split("*", 1)[0], "encoded word")


class _HeaderTextPolicy(Compat32):
    """compat32, except that a header value with 8-bit bytes reads as ``header_text``.

    compat32 hands such a value over as an ``email.header.Header`` whose text
    has every 8-bit byte replaced by U+FFFD, and mail-parser turns the escapes
    into literal "\\udcfc" text: both lose the sender's name. Only reading
    changes; writing a part back (an attached message) still gives its bytes.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        if _SURROGATE.search(value) is not None:
            return header_text(value, name)
        # compat32 makes a Header only of values with surrogates, handled above.
        fetched = super().header_fetch_parse(name, value)
        return fetched if isinstance(fetched, str) else str(fetched)


POLICY = _HeaderTextPolicy()
