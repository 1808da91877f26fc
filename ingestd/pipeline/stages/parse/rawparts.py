"""Where the parts of a message lie in its raw bytes, so that they can be stored as sent.

The stdlib tree keeps no offsets, and writing a part back (``as_bytes``)
refolds its headers and changes its line endings. ``RawParts`` walks the raw
bytes the way the stdlib's feedparser cut them: the same end of each header
block, the same boundary lines (a boundary line of an enclosing multipart
ends every part inside it), the line ending before a boundary belonging to
the boundary (RFC 2046 5.1.1). It follows the tree's multiparts in order and
checks itself against the tree as it goes: the number of parts of every
multipart, and the length of every leaf (the parser reads each byte as one
character, so the lengths must be equal). Where the two disagree, nothing is
given and the caller falls back. Only the multiparts of this message are
walked; an enclosed message is one span.

Linear in the size of the message, and found by the regex engine: the
boundary lines, and the runs of header lines.
"""

from __future__ import annotations

import re
from email.message import Message

# Header lines or their continuations, as the stdlib reads one (feedparser.headerRE);
# a bounded run, so that the engine's backtracking state stays small on huge blocks.
_HEADER_LINES = re.compile(
    rb"(?:(?:From |[\x21-\x39\x3b-\x7e]*:|[\t ])[^\r\n]*(?:\r\n|\r|\n|\Z)){1,256}")

Span = tuple[int, int]


class RawParts:
    """One parsed message and its raw bytes: where its enclosed messages lie in them,
    and which of its parts sit in a multipart/related (images an HTML body shows).

    Each is worked out on the first question only: most mail asks neither.
    """

    def __init__(self, raw: bytes, tree: Message) -> None:
        self._raw = raw
        self._tree = tree
        self._spans: dict[int, Span] | None = None
        self._related: set[int] | None = None

    def body(self, part: Message) -> bytes | None:
        """The body of a message/* part of this message as sent; None where the walk failed."""
        known = getattr(part, "raw_span", None)
        if known is not None:
            return self._raw[known[0]:known[1]]
        if self._spans is None:
            self._spans = message_spans(self._raw, self._tree) or {}
        span = self._spans.get(id(part))
        return None if span is None else self._raw[span[0]:span[1]]

    def in_related(self, part: Message) -> bool:
        """Whether the part sits (at any depth) in a multipart/related of this message."""
        if self._related is None:
            self._related = _inside_related(self._tree)
        return id(part) in self._related


def message_spans(raw: bytes, tree: Message) -> dict[int, Span] | None:
    """(start, end) of the body of each message/* part, by ``id`` of the part.

    None when the walk and the tree disagree anywhere: the spans could not be trusted.
    """
    spans: dict[int, Span] = {}
    # (part, start, end, whether it is a part of a multipart): end is where the
    # next boundary line (of any enclosing multipart) or the data begins.
    stack: list[tuple[Message, int, int, bool]] = [(tree, 0, len(raw), False)]
    while stack:
        part, start, end, nested = stack.pop()
        body = header_end(raw, start, end)
        # The stdlib takes the boundary's line ending off every part of a
        # multipart, even the last of one never closed; we keep it there.
        parsed_end = end - _line_end_before(raw, body, end) if nested else end
        content = getattr(part, "_payload", None)  # get_payload() would decode 8-bit text
        maintype = part.get_content_maintype()
        if isinstance(content, list) and maintype == "message":
            if not _inner_agrees(raw, part, content, (body, end, parsed_end)):
                return None
            spans[id(part)] = (body, parsed_end if end < len(raw) else end)
        elif isinstance(content, list) and maintype == "multipart":
            pieces = _pieces(raw, part, body, end)
            if pieces is None or len(pieces) != len(content):
                return None
            stack.extend((child, s, e, True) for child, (s, e) in zip(content, pieces, strict=True))
        elif isinstance(content, list):
            return None
        elif maintype != "multipart" and len(str(content or "")) != max(0, parsed_end - body):
            # A multipart whose boundary was never found is left out: the stdlib
            # keeps only its text before a stray close boundary.
            return None
    return spans


def header_end(raw: bytes, start: int, end: int) -> int:
    """Where the body begins: after the header lines and the blank line ending them.

    A line that is no header line begins the body (the stdlib's reading of a
    missing blank line).
    """
    pos = start
    while (run := _HEADER_LINES.match(raw, pos, end)) is not None:
        pos = run.end()
    if pos < end and raw[pos] in b"\r\n":
        pos = min(end, pos + (2 if raw.startswith(b"\r\n", pos) else 1))
    return pos


def _line_end_before(raw: bytes, start: int, end: int) -> int:
    if end - start >= 2 and raw.startswith(b"\r\n", end - 2):
        return 2
    return 1 if end > start and raw[end - 1] in b"\r\n" else 0


def _inner_agrees(raw: bytes, part: Message, content: list[Message],
                  where: tuple[int, int, int]) -> bool:
    """Whether an enclosed message's own body has the length the tree gave it."""
    body, end, parsed_end = where
    if len(content) != 1 or part.get_content_type() == "message/delivery-status":
        return True  # header blocks only, nothing to measure
    inner = content[0]
    text = getattr(inner, "_payload", None)
    if not isinstance(text, str) or inner.get_content_maintype() == "multipart":
        return True
    return len(text) == max(0, parsed_end - header_end(raw, body, end))


def _pieces(raw: bytes, part: Message, start: int, end: int) -> list[Span] | None:
    """(start, end) of each part of a multipart whose body is raw[start:end].

    As the stdlib: the preamble ends at the first boundary line; repeated
    boundary lines (even a close one) hold no part between them; a part runs
    to the next boundary line; the first close boundary after a part ends the
    multipart, and the rest (the epilogue) is not looked at.
    """
    boundary = part.get_boundary()
    if not isinstance(boundary, str):
        return None
    try:
        separator = re.escape(b"--" + boundary.encode("ascii", "surrogateescape"))
    except UnicodeEncodeError:
        return None  # no line of bytes can hold it
    # The boundary at the start of a line (the look-behind after the literal
    # keeps the engine's fast search for it), then "--", blanks, the line end.
    lines = re.compile(separator + rb"(?<![^\r\n]" + separator + rb")(--)?[ \t]*(?:\r\n|\r|\n|\Z)")
    found = lines.finditer(raw, start, end)
    first = next(found, None)
    if first is None or first.group(1) is not None:
        return None  # the stdlib read no parts: it has no list to compare with
    pieces: list[Span] = []
    after = first.end()
    for line in found:
        if line.start() == after:
            after = line.end()
            continue
        pieces.append((after, line.start()))
        if line.group(1) is not None:
            return pieces
        after = line.end()
    pieces.append((after, end))
    return pieces


def _inside_related(tree: Message) -> set[int]:
    """``id`` of every part of this message inside a multipart/related."""
    inside: set[int] = set()
    stack: list[tuple[Message, bool]] = [(tree, False)]
    while stack:
        part, related = stack.pop()
        if related:
            inside.add(id(part))
        content = getattr(part, "_payload", None)
        if isinstance(content, list) and part.get_content_maintype() == "multipart":
            related = related or part.get_content_type() == "multipart/related"
            stack.extend((child, related) for child in content)
    return inside
