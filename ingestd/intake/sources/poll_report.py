"""What one poll of a pulled mailbox did (``ingestd mailboxes poll --json``, the log)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PollReport:
    mailbox: str
    # ok | error | needs_reauth | held (another poller has the lease) | stopped
    status: str = "ok"
    imported: int = 0
    # Listed but already stored (by id, or by Message-ID and From after a resync).
    known: int = 0
    # Over max_message_size: not downloaded, left at the source, logged.
    too_large: int = 0
    # Failed to fetch in several polls in a row (poll.py): passed by, logged.
    unfetchable: int = 0
    resynced: list[str] = field(default_factory=list)
    backfilled: list[str] = field(default_factory=list)
    held_by: str | None = None
    error: str | None = None

    def record(self) -> dict[str, object]:
        return {"mailbox": self.mailbox, "status": self.status, "imported": self.imported,
                "known": self.known, "too_large": self.too_large,
                "unfetchable": self.unfetchable, "resynced": self.resynced,
                "backfilled": self.backfilled,
                "held_by": self.held_by, "error": self.error}
