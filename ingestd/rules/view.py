"""What rule conditions look at, read from the message once and lazily."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from email.parser import HeaderParser
from email.policy import compat32
from functools import cached_property

from ingestd.mailbytes import header_block
from ingestd.mailtext import bytes_text, decode_words
from ingestd.pipeline.parsed import ParsedAttachment, ParsedMessage


@dataclass
class MessageView:
    mailbox: str
    message: ParsedMessage
    raw: bytes = field(repr=False)
    sender_kind: str
    vip: bool

    def values(self, name: str) -> Sequence[str]:
        """The values of a condition's field (several for address lists, attachments)."""
        m = self.message
        address = m.from_address or ""
        if name == "mailbox":
            return (self.mailbox,)
        if name == "from_address":
            return (address,)
        if name == "from_domain":
            return (address.rpartition("@")[2],)
        if name == "to":
            return m.to
        if name == "cc":
            return m.cc
        if name == "to_or_cc":
            return (*m.to, *m.cc)
        if name == "subject":
            return (m.subject,)
        if name == "body":
            return (m.text,)
        if name == "attachment_name":
            return tuple(a.filename for a in self.attachments)
        if name == "sender_kind":
            return (self.sender_kind,)
        raise KeyError(name)

    @property
    def attachments(self) -> tuple[ParsedAttachment, ...]:
        """Attached files; images the HTML shows inline (signature logos) are not."""
        return tuple(a for a in self.message.attachments if not a.inline)

    def header(self, name: str) -> Sequence[str]:
        return self._headers.get(name.lower(), ())

    @cached_property
    def _headers(self) -> dict[str, tuple[str, ...]]:
        # Only a rule that asks for a header pays for reading them.
        # 8-bit header bytes (RFC 6532 UTF-8, or a legacy charset) read as processing reads
        # them, not as U+FFFD.
        parsed = HeaderParser(policy=compat32).parsestr(bytes_text(header_block(self.raw)))
        found: dict[str, list[str]] = {}
        for key, value in parsed.items():
            text = decode_words(str(value)) if "=?" in str(value) else str(value)
            found.setdefault(key.lower(), []).append(" ".join(text.split()))
        return {k: tuple(v) for k, v in found.items()}
