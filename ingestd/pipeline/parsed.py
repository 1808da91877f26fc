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
    # For <img src="cid:..."> in the HTML: the part's Content-ID without the
    # angle brackets, and whether the sender meant it shown in the body.
    content_id: str | None = None
    inline: bool = False

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
    reply_to: tuple[str, ...] = ()
    # The header the sender was read from: "From", or a fallback ("Sender",
    # "Reply-To") when no From header held a usable address.
    sender_header: str = "From"
