"""The shape check: hard limits in front of and around the stdlib parser.

The header block is measured on the raw bytes before any parsing; part count
and nesting depth are counted on the tree before mail-parser or anything else
walks it, because deep or wide trees are what make those walks slow or blow
the recursion limit. A message over a limit raises ``LimitExceeded`` and is
quarantined by the worker.
"""

from __future__ import annotations

import re
from email import errors
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value
from typing import Any

from ingestd.config.settings import ProcessingLimits
from ingestd.errors import LimitExceeded
from ingestd.mailbytes import header_length
from ingestd.mailtext import POLICY
from ingestd.pipeline.stages.parse.boundaries import reread

_FOLD = re.compile(r"\r?\n(?=[ \t])")
# A charset label is printable ASCII; anything else (NUL, control characters,
# 8-bit text, an RFC 2231 value) is no codec name and makes codec lookups raise.
_NOT_A_LABEL = re.compile(r"[^\x20-\x7e]")
# What makes a Content-Type worth reading the charset parameter of: RFC 2231
# syntax or a character that cannot be in a label. Most parts have neither.
_ODD_PARAMETER = re.compile(r"[*\x00-\x1f\x7f-\U0010ffff]")
_UNREADABLE = (ValueError, LookupError, UnicodeError, TypeError)
# Content-Type and Content-Disposition are cut to this many characters (at a
# ';'): every parameter lookup re-splits the whole field, quadratically in the
# stdlib, and each part's field is looked up a dozen times (800 KB of ';' took
# a minute). Real fields, long RFC 2231 names included, stay far below it.
_MAX_PARAMETERS = 8192
_PARAMETER_FIELDS = ("content-type", "content-disposition")
_LOOSE_BOUNDARY = re.compile(r'\bboundary\s*=\s*(?:"([^"]+)"|([^\s;]+))', re.IGNORECASE)

Leaf = tuple[Message, int]  # the part, and its index among its parent's parts


class ParametersCutDefect(errors.MessageDefect):
    """A Content-Type or Content-Disposition field was cut to its first 8192 characters."""


class UnreadableCharsetDefect(errors.MessageDefect):
    """The charset parameter held no label (NUL, control or 8-bit characters); read as none."""


class LenientMessage(Message):
    """compat32 Message that reads two boundary faults the way mail clients do."""

    # Where this part's body lies in the raw message, when a rebuilt tree
    # (``boundaries.reread``) knows it; the raw walk cannot follow such a tree.
    raw_span: tuple[int, int] | None = None

    def get_content_type(self) -> str:
        # "multipart/mixed boundary=x" (the ';' missing): the type is the first token.
        kind = super().get_content_type()
        return kind.split()[0] if kind.split() else kind

    def get_boundary(self, failobj: Any = None) -> Any:
        missing = object()
        # The stdlib's parser asks before the shape walk could cut the field.
        _bound_parameters(self)
        try:
            boundary = super().get_boundary(missing)
        except _UNREADABLE:
            # An RFC 2231 value naming a charset with NUL in it: no boundary
            # can be read, and guessing from the body is what is left.
            return failobj
        if boundary is missing:
            found = _LOOSE_BOUNDARY.search(str(self.get("content-type", "")))
            if found is None:
                return failobj
            boundary = found.group(1) or found.group(2)
        # A quoted boundary folded over two lines (RFC 5322 2.2.3): unfold it.
        return _FOLD.sub("", str(boundary))


def read_tree(raw: bytes, limits: ProcessingLimits) -> tuple[Message, list[Leaf]]:
    """The message tree and its leaves, or ``LimitExceeded`` naming the limit it broke."""
    if header_length(raw, limits.max_header_bytes) > limits.max_header_bytes:
        raise LimitExceeded("header-bytes")
    try:
        tree = BytesParser(_class=LenientMessage, policy=POLICY).parsebytes(raw)
    except RecursionError as exc:
        raise LimitExceeded("depth") from exc
    leaves, faulted = _shape(tree, limits)
    if faulted:
        # The stdlib lost track of a boundary; read the multiparts again as
        # mail clients do (rare: never for sound mail, nor for the common
        # fault of a message cut short).
        tree = reread(raw, limits, LenientMessage)
        leaves, _ = _shape(tree, limits)
    return tree, leaves


def check_shape(tree: Message, limits: ProcessingLimits) -> list[Leaf]:
    """The parts of this message, after checking part count and nesting depth.

    A message/* part (an attached or forwarded message, a digest entry, a
    bounce's copy of the original) is one part: what is inside belongs to that
    message, not to this one (RFC 8621 4.1.4), so the leaves stop there. The
    limits still count what is inside: an enclosed message is no cheaper to
    store and show than the same parts at the top.
    """
    return _shape(tree, limits)[0]


def _shape(tree: Message, limits: ProcessingLimits) -> tuple[list[Leaf], bool]:
    """``check_shape``, and whether any part shows a boundary fault."""
    leaves: list[Leaf] = []
    faulted = False
    count = 0
    # (part, depth, index among siblings, whether it is one of this message's leaves)
    stack: list[tuple[Message, int, int, bool]] = [(tree, 1, 0, True)]
    while stack:
        part, depth, index, own = stack.pop()
        count += 1
        if count > limits.max_parts:
            raise LimitExceeded("parts")
        if depth > limits.max_depth:
            raise LimitExceeded("depth")
        faulted = faulted or (bool(part.defects) and _lost_parts(part))
        _strip_transfer_encoding(part)
        _bound_parameters(part)
        _plain_charset(part)
        content = payload(part)
        enclosed = part.get_content_maintype() == "message"
        if own and (not isinstance(content, list) or enclosed):
            leaves.append((part, index))
        if isinstance(content, list):
            inside = own and not enclosed
            stack.extend((child, depth + 1, i, inside)
                         for i, child in reversed(list(enumerate(content))))
    return leaves, faulted


def _lost_parts(part: Message) -> bool:
    """Whether the stdlib's reading of this part is one ``reread`` reads otherwise.

    A boundary it never found (or none declared); a missing close delimiter
    only if the last part's text ends with it. A message merely cut short
    reads the same both ways and is not parsed twice.
    """
    if any(isinstance(d, (errors.StartBoundaryNotFoundDefect,
                          errors.NoBoundaryInMultipartDefect)) for d in part.defects):
        return True
    content = vars(part).get("_payload")
    if not any(isinstance(d, errors.CloseBoundaryNotFoundDefect) for d in part.defects) \
            or not isinstance(content, list) or not content:
        return False
    last, close = vars(content[-1]).get("_payload"), "--" + str(part.get_boundary()) + "--"
    return isinstance(last, str) and last[-len(close) - 64:].rstrip().endswith(close)


def payload(part: Message) -> Any:
    """The payload as parsed: the parts, or the body text (8-bit bytes as surrogate escapes).

    Not ``get_payload()``: that decodes 8-bit text with the declared charset,
    which fails for codecs like idna and, for a base64 part declared utf-16,
    turns the base64 itself into garbage before it is decoded.
    """
    content = vars(part).get("_payload")
    return "" if content is None else content


def declared_charset(part: Message) -> str | None:
    """The part's charset label, or None when it has none or none a codec could be named by."""
    try:
        charset = part.get_content_charset()
    except _UNREADABLE:
        return None
    return charset if charset and _NOT_A_LABEL.search(charset) is None else None


def _plain_charset(part: Message) -> None:
    """``charset*=utf-8''latin-1`` (RFC 2231 form) as a plain ``charset`` parameter.

    The stdlib hands such a parameter over as a tuple, and its own payload
    decoding then raises TypeError; a label with NUL in it makes codec lookups
    raise ValueError. Every reader of the tree (mail-parser too) would have to
    guard against these, so the parameter is rewritten once, here, or removed
    when it holds no label at all (the part then reads as having no charset).
    """
    if _ODD_PARAMETER.search(str(part.get("content-type", ""))) is None:
        return
    try:
        declared = part.get_param("charset")
    except _UNREADABLE:
        return  # parameters the stdlib cannot split (continuations out of order)
    charset = declared
    if isinstance(charset, tuple):
        try:
            charset = collapse_rfc2231_value(charset, errors="replace")
        except _UNREADABLE:
            charset = None  # the value's own charset has NUL in its name
    label = isinstance(charset, str) and _NOT_A_LABEL.search(charset) is None
    if declared is None or (label and charset == declared):
        return
    if not label:
        part.defects.append(UnreadableCharsetDefect())
    try:
        if label:
            part.set_param("charset", str(charset))
        else:
            part.del_param("charset")
    except _UNREADABLE:
        # Writing the field back fails on another parameter (an RFC 2231 value
        # its own charset cannot encode): the field stays, and the readers
        # that matter guard themselves (``declared_charset``, ``get_boundary``).
        pass


def _bound_parameters(part: Message) -> None:
    # The raw values: measuring needs no decoding, and every part pays for this.
    for name, value in part.raw_items():
        if len(value) > _MAX_PARAMETERS and name.lower() in _PARAMETER_FIELDS:
            text = str(part.get(name))
            if len(text) <= _MAX_PARAMETERS:
                continue  # a second field of the name: only the first is read
            cut = text.rfind(";", 0, _MAX_PARAMETERS)
            part.replace_header(name, text[:cut if cut > 0 else _MAX_PARAMETERS])
            part.defects.append(ParametersCutDefect())


def _strip_transfer_encoding(part: Message) -> None:
    """ "base64 " decodes as base64: the stdlib compares the value unstripped."""
    value = part.get("Content-Transfer-Encoding")
    if value is not None and str(value) != str(value).strip():
        part.replace_header("Content-Transfer-Encoding", str(value).strip())
