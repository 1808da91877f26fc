"""Counters of the daemon's own process (in memory; one daemon per process)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry(auto_describe=True)

RECEIVED = Counter("ingestd_messages_received", "Messages stored (committed) by intake",
                   ["source", "mailbox"], registry=REGISTRY)
SMTP_REPLIES = Counter("ingestd_smtp_replies", "SMTP replies sent, by reply code",
                       ["code"], registry=REGISTRY)
POLL_ERRORS = Counter("ingestd_mailbox_poll_errors",
                      "Polls of a pulled mailbox that ended in an error", ["mailbox"],
                      registry=REGISTRY)
WORKER_RESTARTS = Counter("ingestd_worker_restarts",
                          "Worker processes replaced after dying or being killed",
                          registry=REGISTRY)


def count_received(rows: Iterable[Mapping[str, Any]]) -> None:
    """Messages just committed (their inbound rows)."""
    for row in rows:
        RECEIVED.labels(str(row.get("source", "")), str(row.get("mailbox", ""))).inc()


def count_reply(reply: str) -> None:
    code = reply[:3]
    SMTP_REPLIES.labels(code if code.isdigit() else "other").inc()


def count_reply_bytes(reply: bytes) -> None:
    """A reply written straight to the socket (refusals, timeouts, shutdown)."""
    count_reply(reply.decode("ascii", "replace"))
