"""What a bounce says: which recipients failed, with which status, and about which message."""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3463 enhanced status code: class.subject.detail. Sisimai-style vendor
# details ("5.0.910") have three digits; RFC 3463 allows up to three.
STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    status: str  # an RFC 3463 code, e.g. "5.1.1"; "5.0.0" / "4.0.0" when only the class is known
    # The reporting MTA gave up (DSN "Action: failed", "permanent error", "retry
    # timeout exceeded"): the message will not arrive, whatever the status class.
    final: bool = False

    @property
    def hard(self) -> bool:
        """Hard: a 5.x.x status, or a 4.x.x the MTA gave up on. Soft: still being retried."""
        return not self.status.startswith("4") or self.final


@dataclass(frozen=True)
class Bounce:
    recipients: tuple[FailedRecipient, ...]
    # Message-IDs (angle brackets kept) of the mail that bounced, as the report names them.
    original_message_ids: tuple[str, ...] = ()
    original_subject: str | None = None
    # How it was read: "dsn", "x-failed-recipients", "vendor", "text".
    read_as: str = "dsn"

    @property
    def hard(self) -> bool:
        return any(r.hard for r in self.recipients)

    @property
    def worst_status(self) -> str:
        """The status of the first hard failure, else of the first failure."""
        for recipient in self.recipients:
            if recipient.hard:
                return recipient.status
        return self.recipients[0].status if self.recipients else "5.0.0"


def status_in(text: str) -> str | None:
    """The first enhanced status code in ``text`` (class 4 or 5), normalised."""
    for found in STATUS.finditer(text):
        if found.group(1) in "45":
            return f"{found.group(1)}.{int(found.group(2))}.{int(found.group(3))}"
    return None
