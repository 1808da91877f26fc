"""My Inbox: list, show and act on the items sales mail leaves for agents.

Shared by the CLI (``ingestd inbox ...``) and the HTTP API (``/api/inbox``):
the records built here are both ``--json`` contracts. Every action is one
transaction that first moves the item out of ``open`` with a conditional
update, so acting twice, or two agents racing, ends with exactly one winner;
the loser gets ``AlreadyActed`` carrying the item as it now is.

Visibility: an agent sees and acts on its own items only (another agent's
item is ``NotFound``, so its existence is not revealed); administrators see
and act on all. ``visible_to=None`` is the CLI's operator view (everything).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ingestd.config.settings import IngestdSettings
from ingestd.services.page import Page

# The keys of an item record, in order (CLI --json and the HTTP API alike).
ITEM_KEYS = ("id", "agent_email", "status", "from", "subject", "received_at", "preview",
             "message_id", "inbound_id", "acted_by", "acted_at", "ticket_id", "crm_note_id")


@dataclass(frozen=True)
class Actor:
    """The agent acting: from ``--as EMAIL`` on the CLI, or the bearer token's owner."""

    agent_id: int
    email: str
    admin: bool


def actor_by_email(conn: sa.Connection, email: str) -> Actor:
    """The active agent with this address; ``NotFound`` otherwise."""
    raise NotImplementedError


def list_items(conn: sa.Connection, *, visible_to: Actor | None = None,
               agent_email: str | None = None, status: str | None = None,
               limit: int = 100) -> Page:
    """Items, newest first; ``InvalidRequest`` for an unknown status."""
    raise NotImplementedError


def show_item(conn: sa.Connection, item_id: int, *, visible_to: Actor | None = None
              ) -> dict[str, Any]:
    raise NotImplementedError


def item_message(conn: sa.Connection, item_id: int, *, visible_to: Actor | None = None
                 ) -> bytes:
    """The stored message's raw bytes, exactly as received."""
    raise NotImplementedError


def attach(conn: sa.Connection, settings: IngestdSettings, item_id: int, ticket_id: int,
           actor: Actor) -> dict[str, Any]:
    """Add the mail to an existing ticket as an email action with its attachments."""
    raise NotImplementedError


def convert(conn: sa.Connection, settings: IngestdSettings, item_id: int, actor: Actor,
            summary: str | None = None) -> dict[str, Any]:
    """A new ticket of the mailbox's match type; details = the body, contact = the sender."""
    raise NotImplementedError


def note(conn: sa.Connection, settings: IngestdSettings, item_id: int, actor: Actor,
         client: str | None = None) -> dict[str, Any]:
    """A CRM note on a client (by name, else suggested from the sender's domain)."""
    raise NotImplementedError


def delete(conn: sa.Connection, item_id: int, actor: Actor) -> dict[str, Any]:
    """Hide the item (administrators only: ``Forbidden`` otherwise); the message stays."""
    raise NotImplementedError
