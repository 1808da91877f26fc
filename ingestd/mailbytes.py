"""Byte helpers about a raw message's header block.

Both halves need them: intake reads the header block for the log fields,
processing measures it before the parser runs. They live here, outside
either half, so that processing never imports intake.
"""

from __future__ import annotations

import re

# A line end (CRLF, LF or a lone CR, as the stdlib's parser splits lines)
# followed by an empty line. Bare-CR mail (old Mac mailers, some gateways)
# has only "\r\r"; a CR before LF belongs to that LF, never ends a line itself.
# Written as plain alternatives on the first byte: the engine then skips
# through text bytes as fast as with the old ``\r?\n\r?\n``, or faster.
_HEADER_END = re.compile(rb"\n[\r\n]|\r(?:\n[\r\n]|\r)")
# Read at most this much of the header block for the log fields.
_MAX_HEADER_BYTES = 256 * 1024


def header_length(raw: bytes, limit: int) -> int:
    """Bytes before the blank line ending the header block, looking at most ``limit + 1``."""
    end = _HEADER_END.search(raw, 0, limit + 5)
    return end.start() if end else min(len(raw), limit + 1)


def header_block(raw: bytes) -> bytes:
    """The header block (at most 256 KiB of it), without the blank line that ends it."""
    match = _HEADER_END.search(raw, 0, _MAX_HEADER_BYTES)
    return raw[: match.start()] if match else raw[:_MAX_HEADER_BYTES]
