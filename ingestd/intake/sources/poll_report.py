"""What one poll of a pulled mailbox did (``ingestd mailboxes poll --json``), and the events
that say so."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from ingestd.intake.sources.lease import Outcome
from ingestd.metrics.counters import POLL_ERRORS

log = structlog.get_logger("ingestd.pull")


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


def log_outcome(name: str, before: str | None, outcome: Outcome, report: PollReport) -> None:
    """The poll's events: trouble once when it starts (a person may have to act), the
    recovery, and what a good poll brought."""
    changed = before != outcome.status
    if outcome.status == "needs_reauth":
        (log.error if changed else log.debug)(
            "mailbox.needs_reauth", mailbox=name, error=outcome.error)
    elif outcome.status == "error":
        POLL_ERRORS.labels(name).inc()
        (log.warning if changed else log.info)(
            "mailbox.poll_failed", mailbox=name, error=outcome.error)
    else:
        if before in ("error", "needs_reauth"):
            log.info("mailbox.recovered", mailbox=name, was=before)
        if report.imported or report.resynced or report.backfilled:
            log.info("mailbox.polled", **report.record())
