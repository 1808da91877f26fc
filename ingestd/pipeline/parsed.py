"""The parsed form of a message: what the stages after ``parse`` read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str  # sanitised display name; never a filesystem path
    content_type: str
    content: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class ParsedMessage:
    subject: str
    from_address: str | None
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    html: str | None  # sanitised
    attachments: tuple[ParsedAttachment, ...] = ()
    defects: tuple[str, ...] = field(default=())
    # Several From headers: shown, but never matched to an agent or a user.
    sender_doubtful: bool = False
