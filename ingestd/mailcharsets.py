"""One message's text as its sender meant it: its own labels first, then its other hints.

Raw 8-bit header bytes, an encoded word or RFC 2231 value whose charset
does not decode it, and a body part with a wrong or missing charset are all
read by ``charsets.fallback``. What it tries after UTF-8 are the charsets the
same message declares elsewhere (its parts' ``charset`` parameters, its
encoded words): a KOI8-R Subject sent raw is KOI8-R when a body part says
so. Each fallback adds a short defect.

Headers are read through the tree's policy, which has no message to hand,
and mail-parser reads the tree too: so ``reading(tree)`` makes the message
current (a context variable, one per thread) for as long as the parse
stage reads it. Outside it (intake, tests) nothing is hinted and no defect
kept. The hints are collected only when some text needs them, from the raw
header values (no policy, so no recursion into these functions).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ingestd.charsets import UTF_8, Charset, charset, fallback, hints, placeholder

if TYPE_CHECKING:
    from email.message import Message

# Patterns compiled on first use (re caches them): intake imports this module.
_CHARSET_PARAM = r"""(?i)charset\s*=\s*["']?\s*([^\s"';]+)"""
_WORD_CHARSET = r"(?i)=\?([^?\s*]+)(?:\*[^?\s]*)?\?[bq]\?"
_MAX_SHOWN = 40


class MessageCharsets:
    """The charsets one message declares (collected on first need) and its decoding defects."""

    def __init__(self, tree: Message) -> None:
        self._tree = tree
        self._hints: tuple[Charset, ...] | None = None
        self.defects: list[str] = []

    @property
    def hints(self) -> tuple[Charset, ...]:
        if self._hints is None:
            self._hints = hints(_declared_labels(self._tree))
        return self._hints

    def note(self, defect: str) -> None:
        if defect not in self.defects:
            self.defects.append(defect)


_CURRENT: ContextVar[MessageCharsets | None] = ContextVar("ingestd_message", default=None)


@contextmanager
def reading(tree: Message) -> Iterator[MessageCharsets]:
    """Make ``tree`` the message whose hints and defects its header reads use."""
    message = MessageCharsets(tree)
    token = _CURRENT.set(message)
    try:
        yield message
    finally:
        _CURRENT.reset(token)


def header_bytes(raw: bytes, what: str) -> str:
    """A header value sent as raw 8-bit bytes, as text."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    message = _CURRENT.get()
    text, read_as = fallback(raw, message.hints if message else (), tried=UTF_8)
    if message is not None:
        message.note(f"{_shown(what)} has 8-bit bytes that are not UTF-8; read as {read_as}")
    return text


def labelled_text(raw: bytes, label: str | None, what: str) -> str:
    """Bytes labelled with a charset (an encoded word, an RFC 2231 parameter), as text."""
    declared = charset(label)
    text = declared.decode(raw) if declared is not None else None
    if text is not None:
        return text
    if raw.isascii():
        return raw.decode("ascii")
    message = _CURRENT.get()
    text, read_as = fallback(raw, message.hints if message else (), tried=declared)
    if message is not None:
        message.note(f"{what} {_how(label, declared)}; read as {read_as}")
    return text


def body_text(raw: bytes, label: str | None, defects: list[str] | None = None) -> str:
    """A body part's bytes as text: its charset strictly, else the fallbacks and the detector."""
    declared = charset(label)
    text = declared.decode(raw) if declared is not None else None
    if text is not None:
        return text
    if raw.isascii():
        return raw.decode("ascii")
    message = _CURRENT.get()
    text, read_as = fallback(raw, message.hints if message else (), tried=declared,
                             detect=True)
    if defects is not None:
        defect = f"body part {_how(label, declared)}; read as {read_as}"
        if defect not in defects:
            defects.append(defect)
    return text


def _how(label: str | None, declared: Charset | None) -> str:
    """What was wrong with the label, for a defect."""
    shown = _shown(label or "")
    if not shown:
        return "without a charset has 8-bit bytes"
    if declared is None and not placeholder(label):
        return f"declared unknown charset {shown}"
    if declared is None or declared.codec == "ascii":
        return f"declared {shown} has 8-bit bytes"
    return f"declared {shown} is not valid {declared.name}"


def _shown(text: str) -> str:
    # Labels and names come from the message: keep a defect short and printable.
    return "".join(ch for ch in text[:_MAX_SHOWN] if ch.isprintable())


def _declared_labels(tree: Message) -> Iterator[str]:
    """Charset labels of every part's Content-Type, then of every encoded word, in order."""
    words: list[str] = []
    for part in tree.walk():
        for name, value in part.raw_items():
            text = str(value)
            if name.lower() == "content-type":
                yield from re.findall(_CHARSET_PARAM, text)
            if "=?" in text:
                words.extend(re.findall(_WORD_CHARSET, text))
    yield from words
