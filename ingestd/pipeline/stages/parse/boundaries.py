"""Multipart bodies re-read the way mail clients read them, where the stdlib's reading loses parts.

The stdlib gives an enclosing multipart's boundary the first claim on a
delimiter line: a nested multipart reusing its parent's boundary (Outlook
Express for Mac, exmh) comes out empty, and the parts after its close are lost
in the epilogue. Mail clients (Thunderbird) let the innermost open multipart
claim first; a line that is only an enclosing multipart's delimiter still ends
every multipart inside it (RFC 2046 5.1.2). ``reread`` builds the tree that way
from the raw bytes, and repairs three more faults: a delimiter straight after
the header fields, a missing opening delimiter, a close delimiter at the end of
the last text line. Each repair adds a defect naming it.

Only a message whose stdlib tree shows a boundary fault comes here
(``limits.read_tree``). Leaves are parsed by the stdlib and trimmed as it
trims them, so a sound message gives the stdlib's tree. One pass over the
lines that start with ``--``; the part and depth limits hold as it goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import errors
from email.message import Message
from email.parser import BytesParser

from ingestd.config.settings import ProcessingLimits
from ingestd.errors import LimitExceeded
from ingestd.mailtext import POLICY

_HEADER_LINE = re.compile(rb"From |[\041-\071\073-\176]*:|[\t ]")  # as the stdlib's headerRE
_MIME_FIELD = re.compile(rb"^content-", re.IGNORECASE | re.MULTILINE)
_LAST_LINE_BREAK = re.compile(r"(\r\n|\r|\n)\Z")
_LEAF, _MULTIPART, _ENCLOSED = range(3)
_PREAMBLE, _PARTS, _EPILOGUE = range(3)


class MultipartReadInnermostFirstDefect(errors.MessageDefect):
    """The stdlib's tree had a boundary fault; the multiparts were re-read innermost first."""


class OpeningDelimiterMissingDefect(errors.MessageDefect):
    """Only a close delimiter, after MIME header fields: the text before it was read as one part."""


class CloseDelimiterInTextDefect(errors.MessageDefect):
    """The close delimiter was found at the end of the last text line, not on a line of its own."""


@dataclass(eq=False)
class _Open:
    """A part being read: header block at ``start``, body at ``body``."""

    kind: int
    start: int
    body: int
    message: Message
    boundary: bytes = b""
    state: int = _PREAMBLE
    mark: int = 0  # where the preamble or the epilogue began
    broken_end: int = -1  # a close delimiter came before any other: where the text ends
    children: list[Message] = field(default_factory=list)


def reread(raw: bytes, limits: ProcessingLimits, message_class: type[Message]) -> Message:
    """The message tree of ``raw``, multipart delimiters claimed innermost first."""
    return _Reader(raw, limits, message_class).run()


class _Reader:
    def __init__(self, raw: bytes, limits: ProcessingLimits, message_class: type[Message]) -> None:
        self.raw = raw
        self.limits = limits
        self.parser = BytesParser(_class=message_class, policy=POLICY)
        self.stack: list[_Open] = []
        self.parts = 0
        self.root: Message | None = None

    def run(self) -> Message:
        position = self.open(0)
        while (found := self.next_delimiter(position)) is not None:
            line, level, close, after = found
            self.finish_above(level, line, own=True)
            frame = self.stack[level]
            if frame.state == _PREAMBLE and line > frame.mark and not close:
                frame.message.preamble = _text(
                    self.raw[frame.mark:_before_line_break(self.raw, line)])
            if close and frame.state == _PREAMBLE:
                if self.starts_with_part(frame, line):
                    # The opening delimiter is missing: the text before the close is a part.
                    frame.state = _PARTS
                    frame.message.defects.append(OpeningDelimiterMissingDefect())
                    position = self.open(frame.body)
                    continue
                # As the stdlib: no part, the multipart's body is the text before the close.
                frame.broken_end = line
            if close:
                frame.state, frame.mark, position = _EPILOGUE, after, after
                continue
            frame.state = _PARTS
            # Delimiter lines in a row open one part, not empty ones (as the stdlib).
            while (again := self.match(after)) is not None and again[:2] == (level, False):
                after = again[2]
            position = self.open(after)
        self.finish_above(-1, len(self.raw), own=False)
        assert self.root is not None
        if self.root.get_content_maintype() == "multipart" and not self.root.is_multipart():
            self.root.defects.append(errors.MultipartInvariantViolationDefect())
        self.root.defects.append(MultipartReadInnermostFirstDefect())
        return self.root

    def open(self, start: int) -> int:
        """Read the header block of the part at ``start``; where its body begins."""
        while True:
            self.parts += 1
            if self.parts > self.limits.max_parts or len(self.stack) >= self.limits.max_depth:
                raise LimitExceeded("parts" if self.parts > self.limits.max_parts else "depth")
            headers_end, body = self.header_block(start)
            message = self.parser.parsebytes(self.raw[start:headers_end], headersonly=True)
            if self.stack and self.stack[-1].message.get_content_type() == "multipart/digest":
                message.set_default_type("message/rfc822")
            boundary = _boundary_bytes(message)
            kind = _kind(message, boundary)
            self.stack.append(_Open(kind, start, body, message, boundary, mark=body))
            if kind != _ENCLOSED:
                return body
            start = body  # the enclosed message's own header block

    def header_block(self, start: int) -> tuple[int, int]:
        """(end of the header lines, start of the body) of the part at ``start``."""
        position, end = start, len(self.raw)
        own: bytes | None = None  # the boundary these header fields declare, once needed
        while position < end:
            line_end, following = _line(self.raw, position)
            line = self.raw[position:line_end]
            if not line:
                return position, following
            if line.startswith(b"--") and _HEADER_LINE.match(line):
                # With a colon in the boundary (--9-27=:18061), a delimiter straight
                # after the header fields reads as one more field.
                if own is None:
                    own = _boundary_bytes(self.parser.parsebytes(self.raw[start:position],
                                                                 headersonly=True))
                if self.match(position) is not None \
                        or (own and _delimiter(self.raw, position, own) is not None):
                    return position, position  # a part of header fields only
            elif not _HEADER_LINE.match(line):
                return position, position  # a body with no blank line before it
            position = following
        return end, end

    def next_delimiter(self, position: int) -> tuple[int, int, bool, int] | None:
        raw = self.raw
        while (line := raw.find(b"--", position)) != -1:
            if (line == 0 or raw[line - 1] in b"\r\n") and (found := self.match(line)):
                return (line, *found)
            position = line + 2
        return None

    def match(self, line: int) -> tuple[int, bool, int] | None:
        """(stack level, whether it closes, start of the next line) of a delimiter at ``line``."""
        for level in range(len(self.stack) - 1, -1, -1):
            frame = self.stack[level]
            if frame.kind == _MULTIPART and frame.state != _EPILOGUE:
                found = _delimiter(self.raw, line, frame.boundary)
                if found is not None:
                    return (level, *found)
        return None

    def finish_above(self, level: int, line: int, *, own: bool) -> None:
        """Complete every part above ``level``, ended by the line at ``line`` (or the input's end).

        ``own``: a delimiter of the multipart at ``level``; any multipart above
        it, and any open at the end of the input, was never closed.
        """
        raw = self.raw
        trimmed = _before_line_break(raw, line)
        while len(self.stack) > level + 1:
            part = self.stack.pop()
            parent = self.stack[-1] if self.stack else None
            in_multipart = any(p.kind == _MULTIPART for p in self.stack)
            end = max(part.body, line)
            if part.kind != _LEAF:
                epilogue_end = max(part.body, trimmed) if in_multipart else end
                message = self.finish_container(part, end, epilogue_end, in_multipart)
            elif parent is not None and parent.state == _PARTS \
                    and not (own and len(self.stack) == level + 1) \
                    and (glued := self.close_in_text(parent, part, trimmed)) is not None:
                message = self.parser.parsebytes(raw[part.start:glued])
            else:
                message = self.parser.parsebytes(raw[part.start:end])
                if in_multipart:
                    _drop_last_line_break(message)
            if parent is None:
                self.root = message
            else:
                parent.children.append(message)

    def finish_container(self, part: _Open, line: int, end: int, in_multipart: bool) -> Message:
        message = part.message
        if part.kind == _MULTIPART and (part.state == _PREAMBLE or part.broken_end >= 0):
            # The boundary never came: the body stays text, as the stdlib leaves it.
            text_end = line if part.broken_end < 0 else part.broken_end
            message.set_payload(_text(self.raw[part.body:text_end]))
            message.defects.append(errors.StartBoundaryNotFoundDefect())
            message.epilogue = None if in_multipart else ""
            return message
        message.set_payload(list(part.children))
        if part.kind == _MULTIPART:
            if part.state == _PARTS:
                message.defects.append(errors.CloseBoundaryNotFoundDefect())
            else:
                epilogue = _text(self.raw[part.mark:max(part.mark, end)])
                message.epilogue = None if in_multipart and not epilogue else epilogue
        return message

    def starts_with_part(self, frame: _Open, close: int) -> bool:
        """Whether the text before a lone close delimiter begins with MIME header fields."""
        headers_end, _ = self.header_block(frame.body)
        return _MIME_FIELD.search(self.raw, frame.body, min(headers_end, close)) is not None

    def close_in_text(self, frame: _Open, part: _Open, end: int) -> int | None:
        """Where the last part ends if its last line ends with the close delimiter."""
        raw, close = self.raw, b"--" + frame.boundary + b"--"
        text_end = end
        while text_end > part.body and raw[text_end - 1] in b" \t\r\n":
            text_end -= 1
        glued = text_end - len(close)
        if glued <= part.body or not raw.startswith(close, glued) \
                or raw[glued - 1] in b"\r\n":
            return None
        frame.state = _EPILOGUE
        frame.mark = end
        frame.message.defects.append(CloseDelimiterInTextDefect())
        return glued


def _kind(message: Message, boundary: bytes) -> int:
    if boundary:
        return _MULTIPART
    # As the stdlib: every message/* but delivery-status holds one message.
    if message.get_content_maintype() == "message" \
            and message.get_content_type() != "message/delivery-status":
        return _ENCLOSED
    return _LEAF


def _boundary_bytes(message: Message) -> bytes:
    boundary = message.get_boundary() if message.get_content_maintype() == "multipart" else None
    return str(boundary).encode("utf-8", "surrogateescape") if boundary else b""


def _delimiter(raw: bytes, line: int, boundary: bytes) -> tuple[bool, int] | None:
    """(whether it closes, start of the next line) if ``line`` is a delimiter of ``boundary``."""
    if not raw.startswith(boundary, line + 2) or not raw.startswith(b"--", line):
        return None
    line_end, following = _line(raw, line)
    rest = raw[line + 2 + len(boundary):line_end]
    close = rest.startswith(b"--")
    return None if (rest[2:] if close else rest).strip(b" \t") else (close, following)


def _line(raw: bytes, start: int) -> tuple[int, int]:
    """(end of the line's content, start of the next line); CRLF, LF or a lone CR ends a line."""
    newline = raw.find(b"\n", start)
    stop = len(raw) if newline == -1 else newline
    cr = raw.find(b"\r", start, stop)
    if cr != -1 and cr + 1 != newline:
        return cr, cr + 1
    if newline == -1:
        return len(raw), len(raw)
    return (newline - 1 if cr != -1 else newline), newline + 1


def _drop_last_line_break(message: Message) -> None:
    """What the stdlib does to the last message it made when a delimiter (or the end) follows."""
    last = list(message.walk())[-1]
    if last.get_content_maintype() == "multipart":
        epilogue = last.epilogue
        last.epilogue = _LAST_LINE_BREAK.sub("", epilogue) if epilogue else None
        return
    # The stored payload, not get_payload(): that decodes 8-bit text with the
    # part's charset, and storing the result back would lose the raw bytes.
    content = vars(last).get("_payload")
    if isinstance(content, str):
        last.set_payload(_LAST_LINE_BREAK.sub("", content, count=1))


def _before_line_break(raw: bytes, line: int) -> int:
    """The line break before a delimiter belongs to the delimiter (RFC 2046 5.1.1)."""
    if line >= 1 and raw[line - 1] == 0x0A:
        return line - 2 if line >= 2 and raw[line - 2] == 0x0D else line - 1
    if line >= 1 and raw[line - 1] == 0x0D:
        return line - 1
    return line


def _text(data: bytes) -> str:
    return data.decode("ascii", "surrogateescape")  # as the stdlib stores payloads
