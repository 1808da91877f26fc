"""The typed context one message carries through the stages, and their outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy.engine import Connection

from ingestd.bounces import Bounce
from ingestd.config.settings import IngestdSettings, Mailbox
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.rules.plan import RuleVerdict, TicketPlan

# "failed": this attempt failed and the row is pending again for another one.
Result = Literal[
    "ticket_created", "action_added", "inbox_item", "duplicate", "ignored", "quarantined",
    "failed",
]
SenderKind = Literal["agent", "user", "supplier", "unknown"]


@dataclass(frozen=True)
class TicketTag:
    """A ticket ID tag found in a message, e.g. ``[ID:1234]``."""

    ticket_id: int
    text: str  # as written, for reasons: "[ID:1234]"
    where: Literal["subject", "body"]


@dataclass(frozen=True)
class Sender:
    kind: SenderKind
    address: str | None
    user_id: int | None = None
    site_id: int | None = None
    client_id: int | None = None
    agent_id: int | None = None
    supplier_id: int | None = None
    user_created: bool = False
    # Whether the From address was proven (see ingestd/authentication); None: not checked.
    verified: bool | None = None


@dataclass(frozen=True)
class Outcome:
    """How processing ended; becomes the inbound row's status and reason."""

    result: Result
    status: str
    reason: str | None = None
    ticket_id: int | None = None
    action_id: int | None = None
    duplicate_of: int | None = None
    inbox_item_id: int | None = None


def normalised_envelope(value: str | None) -> str | None:
    """MAIL FROM as stored (``<a@b>``, ``a@b`` or empty) → ``a@b`` lower case, or None."""
    text = (value or "").strip().strip("<>").strip().lower()
    return text or None


@dataclass
class MessageContext:
    inbound_id: int
    raw: bytes
    source_key: str
    mailbox: Mailbox
    settings: IngestdSettings
    now: datetime
    skip_dedupe: bool = False
    # How it came in: smtp, stdin, file (an admin's import), imap, gmail, graph.
    source: str = ""
    # MAIL FROM as a lower-case address; None when unknown or a null sender (<>).
    envelope_from: str | None = None
    # The SMTP client as "ip:port" (SMTP only): whether it is a trusted relay.
    peer: str | None = None
    parsed: ParsedMessage | None = None
    tag: TicketTag | None = None
    # Set by ``protect``: the header that marks this an auto-reply (None: it is not one).
    auto_reply: str | None = None
    # Set by ``protect``: the delivery failure report this message is (None: it is none).
    bounce: Bounce | None = None
    # Set by ``authenticate``: the From address proven (True), not (False), not checked
    # (None); ``sender_check_deferred``: not checked only because DNS did not answer.
    sender_verified: bool | None = None
    sender_check_deferred: bool = False
    sender_check: str | None = None  # why, for reasons and explain
    # The existing ticket this message updates, once a stage found it.
    ticket_id: int | None = None
    # A closed ticket the new one continues (the `new_ticket` closed-ticket policy).
    linked_ticket_id: int | None = None
    # Why the ticket was chosen, or why a new one is made; ends up in `reason`.
    notes: list[str] = field(default_factory=list)
    sender: Sender | None = None
    # Set by ``match``: the type of a ticket made for this message, or that it
    # goes to the mailbox owner's My Inbox instead of any ticket.
    new_ticket_type: str | None = None
    to_inbox: bool = False
    # Set by ``rules``: what the ticket gets, and every rule's verdict in order.
    plan: TicketPlan = field(default_factory=TicketPlan)
    verdicts: list[RuleVerdict] = field(default_factory=list)
    conn: Connection | None = None
    stage: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def message(self) -> ParsedMessage:
        assert self.parsed is not None, "the parse stage runs first"
        return self.parsed

    @property
    def db(self) -> Connection:
        assert self.conn is not None, "database stages run inside the message's transaction"
        return self.conn
