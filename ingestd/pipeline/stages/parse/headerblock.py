"""Lines of raw mail, and where a part's header fields end, with two faults repaired.

A header block ends at a blank line, or, as the stdlib reads it, at the first
line that is not a header field. Two faults of real mail are read as the
sender meant them:

* a delimiter straight after the header fields, with no blank line before
  it, ends them even where the stdlib would take it for one more field (a
  colon in the boundary, ``--9-27=:18061``);
* a parameter written on a line of its own without leading white space
  (``Content-Type: multipart/alternative;`` then ``boundary="..."``, as in
  Office 365 delivery reports) continues the field before it instead of
  starting the body and leaving the multipart without a boundary.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.parser import BytesParser
from typing import NamedTuple

HEADER_LINE = re.compile(rb"From |[\041-\071\073-\176]*:|[\t ]")  # as the stdlib's headerRE
_GUESS_LINES, _GUESS_TOKENS = 2000, 64
_LINE_END = re.compile(rb"\r\n?|\n")
_PARAMETER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*=")


class HeaderBlock(NamedTuple):
    fields: bytes  # the header lines, as the stdlib should read them
    body: int  # where the body starts
    rejoined: bool  # whether a parameter line was joined to the field before it


def header_block(raw: bytes, start: int, parser: BytesParser,
                 ends_fields: Callable[[int, bytes], bool]) -> HeaderBlock:
    """The header block of the part at ``start``.

    ``ends_fields(line, boundary)``: whether the line starting at ``line`` is
    a delimiter of an open multipart, or of ``boundary`` (the one these
    fields declare, b"" if none).
    """
    position, end = start, len(raw)
    pieces: list[bytes] = []
    rejoined = False
    declared: bytes | None = None  # parsed once, when a line starting with -- needs it
    previous = b""
    while position < end:
        line_end, following = line_at(raw, position)
        line = raw[position:line_end]
        if not line:
            return HeaderBlock(b"".join(pieces), following, rejoined)
        if previous.rstrip().endswith(b";") and _PARAMETER.match(line):
            pieces.append(b" " + raw[position:following])
            rejoined = True
        elif line.startswith(b"--") and HEADER_LINE.match(line):
            if declared is None:
                fields = parser.parsebytes(b"".join(pieces), headersonly=True)
                boundary = fields.get_boundary() \
                    if fields.get_content_maintype() == "multipart" else None
                declared = boundary_bytes(boundary) if boundary else b""
            if ends_fields(position, declared):
                break  # a part of header fields only
            pieces.append(raw[position:following])
        elif HEADER_LINE.match(line):
            pieces.append(raw[position:following])
        else:
            break  # a body with no blank line before it
        previous = line
        position = following
    return HeaderBlock(b"".join(pieces), min(position, end), rejoined)


def boundary_bytes(boundary: object) -> bytes:
    """A boundary as the bytes its delimiter lines hold."""
    text = str(boundary)
    try:
        return text.encode("utf-8", "surrogateescape")  # 8-bit bytes as they were sent
    except UnicodeEncodeError:
        # A lone surrogate, decoded from an RFC 2231 value (utf-7, unicode-escape):
        # its UTF-8 form is the one a delimiter line could hold.
        return text.encode("utf-8", "surrogatepass")


def line_at(raw: bytes, start: int) -> tuple[int, int]:
    """(end of the line's content, start of the next line); CRLF, LF or a lone CR ends a line."""
    # One search for whichever comes first: looking for LF, then for CR before
    # it, would scan to the end of CR-only text for every line.
    found = _LINE_END.search(raw, start)
    return (found.start(), found.end()) if found else (len(raw), len(raw))


def delimiter_at(raw: bytes, line: int, boundary: bytes) -> tuple[bool, int] | None:
    """(whether it closes, start of the next line) if ``line`` is a delimiter of ``boundary``."""
    if not boundary or not raw.startswith(b"--", line) or not raw.startswith(boundary, line + 2):
        return None
    line_end, following = line_at(raw, line)
    rest = raw[line + 2 + len(boundary):line_end]
    close = rest.startswith(b"--")
    return None if (rest[2:] if close else rest).strip(b" \t") else (close, following)


def boundary_in_use(raw: bytes, start: int, end: int) -> bytes | None:
    """The boundary of the first ``--X`` line between ``start`` and ``end`` that recurs.

    Twice, or once with its close ``--X--``: a multipart whose declared
    boundary never came (mistyped, cut short, delimiters written without the
    leading ``--``) shows by these lines the boundary the sender used.
    """
    seen: dict[bytes, list[int]] = {}  # token: [opening lines, closing lines]
    position, lines = start, 0
    while (found := raw.find(b"--", position, end)) != -1:
        position = found + 2
        if found != start and raw[found - 1] not in b"\r\n":
            continue
        lines += 1
        if lines > _GUESS_LINES or len(seen) > _GUESS_TOKENS:
            return None  # the sender's delimiters show early; this is text full of dashes
        token = raw[found + 2:min(end, line_at(raw, found)[0])].rstrip(b" \t")
        close = token.endswith(b"--")
        token = token[:-2] if close else token
        if not token.strip(b"-") or len(token) > 200:
            continue  # a rule of dashes, a signature separator
        count = seen.setdefault(token, [0, 0])
        count[close] += 1
        if count[0] >= 2 or (count[0] and count[1]):
            return token
    return None


def before_line_break(raw: bytes, line: int) -> int:
    """The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1)."""
    if line >= 1 and raw[line - 1] == 0x0A:
        return line - 2 if line >= 2 and raw[line - 2] == 0x0D else line - 1
    if line >= 1 and raw[line - 1] == 0x0D:
        return line - 1
    return line
