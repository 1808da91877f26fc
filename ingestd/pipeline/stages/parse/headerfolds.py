"""Header lines folded without leading white space, repaired before the stdlib parses them.

Some mailers wrap a long header value onto a new line that does not start
with a space or tab. To Python's parser that line is no header field, so it
ends the header block there: every header after it (often Message-ID, MIME
headers, the Content-Type with its boundary) is lost and read as body text.
When the lines that follow are still header fields, up to the blank line,
the stray line was a fold: it is indented so that it continues the field
before it, and a defect says so. When what follows reads as text, nothing is
changed (a message with no blank line between header and body).
"""

from __future__ import annotations

import re

# What the stdlib's feed parser accepts as a header line (email.feedparser.headerRE).
_FIELD = re.compile(rb"(From |[\x21-\x39\x3b-\x7e]+:)")
_NAMED_FIELD = re.compile(rb"[A-Za-z][A-Za-z0-9_-]*[ \t]*:")
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r|$)")


def repair_folds(raw: bytes, limit: int) -> tuple[bytes, str | None]:
    """(raw with stray fold lines indented, the defect) — or (raw, None) if none needed.

    Only the first ``limit`` bytes are read: a longer header block is refused
    by the header limit anyway.
    """
    lines: list[bytes] = []
    closed = False
    for found in _LINE.finditer(raw, 0, min(len(raw), limit)):
        line = found.group()
        if not line:
            break
        if line in (b"\r\n", b"\n", b"\r"):
            closed = True
            break
        lines.append(line)
    if not closed and sum(map(len, lines)) < len(raw):
        return raw, None  # header block not closed within the limit
    kinds = [_kind(line) for line in lines]
    if "stray" not in kinds[1:] or kinds[0] == "stray":
        return raw, None
    pairs = list(zip(lines, kinds, strict=True))
    if any(line.startswith(b"--") for line in lines):
        return raw, None  # a MIME delimiter: the body began without a blank line
    first = kinds.index("stray", 1)
    following = kinds[first:]
    if following.count("field") < max(1, following.count("stray")):
        return raw, None  # text after the header: a missing blank line, not a fold
    repaired = b"".join(b" " + line if kind == "stray" else line for line, kind in pairs)
    rest = raw[sum(map(len, lines)):]
    joined = following.count("stray")
    return (repaired + rest,
            f"{joined} header line(s) without leading white space read as folded")


def _kind(line: bytes) -> str:
    if line[:1] in (b" ", b"\t"):
        return "continuation"
    if _NAMED_FIELD.match(line):
        return "field"
    # The stdlib takes any "word:" for a field; only real field names count as
    # evidence that headers go on after a stray line.
    return "other" if _FIELD.match(line) else "stray"
