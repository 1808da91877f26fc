"""Multipart bodies re-read the way mail clients read them, where the stdlib's reading loses parts.

The stdlib gives an enclosing multipart's boundary the first claim on a
delimiter line: a nested multipart reusing its parent's boundary (Outlook
Express for Mac, exmh) comes out empty, and the parts after its close are lost
in the epilogue. Mail clients (Thunderbird) let the innermost open multipart
claim first; a line that is only an enclosing multipart's delimiter still ends
every multipart inside it (RFC 2046 5.1.2). ``reread`` builds the tree that way
from the raw bytes, and repairs more faults: a boundary that never comes while
the body's lines use another, a missing opening delimiter, a close delimiter
at the end of the last text line, and (``headerblock``) a delimiter straight
after the header fields or a parameter on a line of its own. Each repair adds
a defect naming it.

Only a message whose stdlib tree shows a boundary fault comes here
(``limits.read_tree``). Leaves are parsed by the stdlib and trimmed as it
trims them, so a sound message gives the stdlib's tree. One pass over the
lines that start with ``--``; the part and depth limits hold as it goes.
The parts it keeps open, the defects it records and the stdlib's finishing
of each message it makes are in ``multipartparts``.
"""

from __future__ import annotations

import re
from email import errors
from email.message import Message
from email.parser import BytesParser

from ingestd.config.settings import ProcessingLimits
from ingestd.errors import LimitExceeded
from ingestd.mailtext import POLICY
from ingestd.pipeline.stages.parse.headerblock import (
    before_line_break,
    boundary_in_use,
    delimiter_at,
    header_block,
)
from ingestd.pipeline.stages.parse.multipartparts import (
    ENCLOSED,
    EPILOGUE,
    LEAF,
    MULTIPART,
    PARTS,
    PREAMBLE,
    BoundaryGuessedDefect,
    CloseDelimiterInTextDefect,
    MultipartReadInnermostFirstDefect,
    OpeningDelimiterMissingDefect,
    OpenPart,
    ParameterOnItsOwnLineDefect,
    declared_boundary,
    drop_last_line_break,
    keep_span,
    part_kind,
    payload_text,
)

_MIME_FIELD = re.compile(rb"^content-", re.IGNORECASE | re.MULTILINE)


def reread(raw: bytes, limits: ProcessingLimits, message_class: type[Message]) -> Message:
    """The message tree of ``raw``, multipart delimiters claimed innermost first."""
    return _Reader(raw, limits, message_class).run()


class _Reader:
    def __init__(self, raw: bytes, limits: ProcessingLimits, message_class: type[Message]) -> None:
        self.raw = raw
        self.limits = limits
        self.parser = BytesParser(_class=message_class, policy=POLICY)
        self.stack: list[OpenPart] = []
        self.parts = 0
        self.root: Message | None = None

    def run(self) -> Message:
        position = self.open(0)
        while True:
            found = self.next_delimiter(position)
            if self.guess_boundary(*(found[:2] if found else (len(self.raw), -1))):
                position = self.stack[-1].body  # read it again with the boundary its lines use
                continue
            if found is None:
                break
            line, level, close, after = found
            self.finish_above(level, line, own=True)
            frame = self.stack[level]
            if frame.state == PREAMBLE and line > frame.mark and not close:
                frame.message.preamble = payload_text(
                    self.raw[frame.mark:before_line_break(self.raw, line)])
            if close and frame.state == PREAMBLE:
                if self.starts_with_part(frame, line):
                    # The opening delimiter is missing: the text before the close is a part.
                    frame.state = PARTS
                    frame.message.defects.append(OpeningDelimiterMissingDefect())
                    position = self.open(frame.body)
                    continue
                # As the stdlib: no part, the multipart's body is the text before the close.
                frame.broken_end = line
            if close:
                frame.state, frame.mark, position = EPILOGUE, after, after
                continue
            frame.state = PARTS
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
            block = header_block(self.raw, start, self.parser, self.ends_fields)
            message = self.parser.parsebytes(block.fields, headersonly=True)
            if block.rejoined:
                message.defects.append(ParameterOnItsOwnLineDefect())
            body = block.body
            if self.stack and self.stack[-1].message.get_content_type() == "multipart/digest":
                message.set_default_type("message/rfc822")
            boundary = declared_boundary(message)
            kind = part_kind(message)
            self.stack.append(OpenPart(kind, start, body, message, boundary, mark=body))
            if kind != ENCLOSED:
                return body
            start = body  # the enclosed message's own header block

    def ends_fields(self, line: int, declared: bytes) -> bool:
        return self.match(line) is not None or delimiter_at(self.raw, line, declared) is not None

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
            if frame.kind == MULTIPART and frame.state != EPILOGUE and frame.boundary \
                    and self.raw.startswith(frame.boundary, line + 2):
                found = delimiter_at(self.raw, line, frame.boundary)
                if found is not None:
                    return (level, *found)
        return None

    def finish_above(self, level: int, line: int, *, own: bool) -> None:
        """Complete every part above ``level``, ended by the line at ``line`` (or the input's end).

        ``own``: a delimiter of the multipart at ``level``; any multipart above
        it, and any open at the end of the input, was never closed.
        """
        raw = self.raw
        trimmed = before_line_break(raw, line)
        while len(self.stack) > level + 1:
            part = self.stack.pop()
            parent = self.stack[-1] if self.stack else None
            in_multipart = any(p.kind == MULTIPART for p in self.stack)
            end = max(part.body, line)
            if part.kind != LEAF:
                epilogue_end = max(part.body, trimmed) if in_multipart else end
                message = self.finish_container(part, end, epilogue_end, in_multipart)
                if part.kind == ENCLOSED:
                    keep_span(message, part.body, epilogue_end)
            elif parent is not None and parent.state == PARTS \
                    and not (own and len(self.stack) == level + 1) \
                    and (glued := self.close_in_text(parent, part, trimmed)) is not None:
                message = self.parser.parsebytes(raw[part.start:glued])
                keep_span(message, part.body, glued)
            else:
                message = self.parser.parsebytes(raw[part.start:end])
                if in_multipart:
                    drop_last_line_break(message)
                keep_span(message, part.body, before_line_break(raw, end) if in_multipart
                           else end)
            if parent is None:
                self.root = message
            else:
                parent.children.append(message)

    def finish_container(self, part: OpenPart, line: int, end: int, in_multipart: bool) -> Message:
        message = part.message
        if part.kind == MULTIPART and (part.state == PREAMBLE or part.broken_end >= 0):
            # The boundary never came: the body stays text, as the stdlib leaves it.
            text_end = line if part.broken_end < 0 else part.broken_end
            message.set_payload(payload_text(self.raw[part.body:text_end]))
            if declared_boundary(message):
                message.defects.append(errors.StartBoundaryNotFoundDefect())
                message.epilogue = None if in_multipart else ""
            else:
                message.defects.append(errors.NoBoundaryInMultipartDefect())
            return message
        message.set_payload(list(part.children))
        if part.kind == MULTIPART:
            if part.state == PARTS:
                message.defects.append(errors.CloseBoundaryNotFoundDefect())
            else:
                epilogue = payload_text(self.raw[part.mark:max(part.mark, end)])
                message.epilogue = None if in_multipart and not epilogue else epilogue
        return message

    def guess_boundary(self, line: int, level: int) -> bool:
        """Whether the multipart ``line`` ends never saw its boundary but its lines show one.

        Tried once per multipart; the body is then read again (``boundary_in_use``).
        """
        frame = self.stack[-1]
        if len(self.stack) - 1 <= level or frame.kind != MULTIPART \
                or frame.state != PREAMBLE or frame.guessed:
            return False
        frame.guessed = True
        boundary = boundary_in_use(self.raw, frame.body, line)
        if boundary is None:
            return False
        frame.boundary = boundary
        frame.message.defects.append(BoundaryGuessedDefect())
        return True

    def starts_with_part(self, frame: OpenPart, close: int) -> bool:
        """Whether the text before a lone close delimiter begins with MIME header fields."""
        fields = header_block(self.raw, frame.body, self.parser, self.ends_fields).fields
        return _MIME_FIELD.search(fields) is not None

    def close_in_text(self, frame: OpenPart, part: OpenPart, end: int) -> int | None:
        """Where the last part ends if its last line ends with the close delimiter."""
        raw, close = self.raw, b"--" + frame.boundary + b"--"
        text_end = end
        while text_end > part.body and raw[text_end - 1] in b" \t\r\n":
            text_end -= 1
        glued = text_end - len(close)
        if glued <= part.body or not raw.startswith(close, glued) \
                or raw[glued - 1] in b"\r\n":
            return None
        frame.state = EPILOGUE
        frame.mark = end
        frame.message.defects.append(CloseDelimiterInTextDefect())
        return glued
