"""The parts ``boundaries.reread`` builds a tree from, and what it records of its repairs.

A part still open while the delimiters are read (``OpenPart``), the defects
naming each repair, and the stdlib's own finishing of the messages it makes
(the last line break before a delimiter dropped, payloads kept as
surrogate-escaped text, an enclosed message's span kept for the byte-exact
attachment), so that a re-read tree reads like one the stdlib built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import errors
from email.message import Message

from ingestd.pipeline.stages.parse.headerblock import boundary_bytes

_LAST_LINE_BREAK = re.compile(r"(\r\n|\r|\n)\Z")
# What a part holds, and where the reading of a multipart's body is.
LEAF, MULTIPART, ENCLOSED = range(3)
PREAMBLE, PARTS, EPILOGUE = range(3)


class MultipartReadInnermostFirstDefect(errors.MessageDefect):
    """The stdlib's tree had a boundary fault; the multiparts were re-read innermost first."""


class OpeningDelimiterMissingDefect(errors.MessageDefect):
    """Only a close delimiter, after MIME header fields: the text before it was read as one part."""


class BoundaryGuessedDefect(errors.MessageDefect):
    """The declared boundary never came; the one the body's delimiter lines use was taken."""


class ParameterOnItsOwnLineDefect(errors.MessageDefect):
    """A parameter line without leading white space was read as part of the field before it."""


class CloseDelimiterInTextDefect(errors.MessageDefect):
    """The close delimiter was found at the end of the last text line, not on a line of its own."""


@dataclass(eq=False)
class OpenPart:
    """A part being read: header block at ``start``, body at ``body``."""

    kind: int
    start: int
    body: int
    message: Message
    boundary: bytes = b""
    state: int = PREAMBLE
    mark: int = 0  # where the preamble or the epilogue began
    guessed: bool = False  # its boundary was guessed from its lines (only tried once)
    broken_end: int = -1  # a close delimiter came before any other: where the text ends
    children: list[Message] = field(default_factory=list)


def keep_span(message: Message, start: int, end: int) -> None:
    """An enclosed message's body as sent, for the byte-exact attachment (``rawparts``)."""
    if message.get_content_maintype() == "message" and hasattr(message, "raw_span"):
        message.raw_span = (start, max(start, end))


def part_kind(message: Message) -> int:
    """LEAF, MULTIPART or ENCLOSED: how the reader goes on inside this part."""
    if message.get_content_maintype() == "multipart":
        return MULTIPART  # without a boundary too: its lines may show one
    # As the stdlib: every message/* but delivery-status holds one message.
    if message.get_content_maintype() == "message" \
            and message.get_content_type() != "message/delivery-status":
        return ENCLOSED
    return LEAF


def declared_boundary(message: Message) -> bytes:
    """The boundary a multipart declares, as its delimiter lines hold it; b"" if none."""
    boundary = message.get_boundary() if message.get_content_maintype() == "multipart" else None
    return boundary_bytes(boundary) if boundary else b""


def drop_last_line_break(message: Message) -> None:
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


def payload_text(data: bytes) -> str:
    return data.decode("ascii", "surrogateescape")  # as the stdlib stores payloads
