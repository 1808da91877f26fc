"""guard: once the ticket and the sender are known, the policies that protect tickets.

* **Loops**: more mail from one address in one mailbox within the window than
  ``rate_limit`` allows (tickets and actions alike, of mail pushed to us over SMTP
  or an MTA's pipe; agents, file imports and mailbox pulls are not limited) is held:
  quarantined, ``loop``, with an error event. It stops auto-responder
  ping-pong and mail storms; ``quarantine retry`` releases what was legitimate.

* **Hijacking**: mail that names a ticket (by its tag or its references) from
  a sender unrelated to it — not its user, not a user of its client, not an
  agent, not a supplier — follows the mailbox's ``unrelated_sender`` policy:
  ``accept`` (recorded), ``new_ticket`` (the mail opens a ticket of its own),
  or ``hold`` (quarantined, ``unrelated-sender``). Quoting someone's ticket
  number must not be a way to write on it.
* **Closed tickets**: mail for a closed ticket follows ``closed_ticket``:
  ``reopen``, ``new_ticket`` (linked to the closed one) or ``reject``
  (ignored, ``closed-ticket``). Auto-replies never reopen anything (``apply``).
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
import structlog

from ingestd.db.tables import ACTIONS, CLIENTS, INBOUND, TICKETS
from ingestd.pipeline.context import MessageContext, Outcome

log = structlog.get_logger("ingestd.guard")

# Mail pushed to us as it is sent (SMTP, an MTA's pipe to `ingest -`): where loops happen.
_LIVE_SOURCES = ("smtp", "stdin")

_TICKET = sa.select(TICKETS.c.status, TICKETS.c.user_id, TICKETS.c.client_id).where(
    TICKETS.c.id == sa.bindparam("b_id"))


def over_rate_limit(ctx: MessageContext, address: str | None) -> Outcome | None:
    """More mail from ``address`` in this mailbox within the window than allowed: held.

    Also used by the ``bounce`` stage: a flood of (forged) bounces is a loop too.
    """
    if not address or ctx.source not in _LIVE_SOURCES:
        # An admin's import of files, or a mailbox backfill, is not a loop: only mail
        # pushed to us as it is sent counts, and is counted.
        return None
    limit = ctx.mailbox.rate_limit
    since = ctx.now - timedelta(seconds=limit.per_seconds)
    recent = ctx.db.execute(
        sa.select(sa.func.count()).select_from(ACTIONS)
        .join(TICKETS, TICKETS.c.id == ACTIONS.c.ticket_id)
        .join(INBOUND, INBOUND.c.id == ACTIONS.c.inbound_message_id)
        .where(sa.func.lower(ACTIONS.c.from_address) == address.lower(),
               ACTIONS.c.created_at >= since, TICKETS.c.mailbox == ctx.mailbox.name,
               INBOUND.c.source.in_(_LIVE_SOURCES))
    ).scalar_one()
    if recent < limit.new_tickets:
        return None
    log.error("message.loop", mailbox=ctx.mailbox.name, sender=address,
              recent=int(recent), limit=limit.new_tickets, per_seconds=limit.per_seconds)
    return Outcome("quarantined", "quarantined", "loop")


def _catch_all(ctx: MessageContext, client_id: int) -> bool:
    """The client unknown senders are filed under relates strangers to nobody."""
    name = ctx.db.execute(sa.select(CLIENTS.c.name).where(CLIENTS.c.id == client_id)).scalar()
    return name == ctx.settings.unknown_senders.default_client


def guard_ticket(ctx: MessageContext) -> Outcome | None:
    sender = ctx.sender
    assert sender is not None, "classify runs before guard"
    looping = over_rate_limit(ctx, sender.address) if sender.kind != "agent" else None
    if looping is not None:
        return looping
    if ctx.ticket_id is None:
        return None
    ticket = ctx.db.execute(_TICKET, {"b_id": ctx.ticket_id}).first()
    if ticket is None:
        return None
    related = (sender.kind in ("agent", "supplier")
               or (sender.user_id is not None and sender.user_id == ticket.user_id)
               or (sender.client_id is not None and sender.client_id == ticket.client_id
                   and not _catch_all(ctx, sender.client_id)))
    if not related:
        unrelated = ctx.mailbox.unrelated_sender
        who = sender.address or "an unknown sender"
        if unrelated == "hold":
            return Outcome("quarantined", "quarantined", "unrelated-sender")
        if unrelated == "new_ticket":
            ctx.notes.append(f"{who} is unrelated to #{ctx.ticket_id}: a ticket of its own")
            ctx.ticket_id = None
            return None
        ctx.notes.append(f"{who} is unrelated to #{ctx.ticket_id} (accepted)")
    if ticket.status != "closed" or ctx.auto_reply is not None:
        return None
    closed = ctx.mailbox.closed_ticket
    if closed == "reject":
        return Outcome("ignored", "ignored", "closed-ticket")
    if closed == "new_ticket":
        ctx.notes.append(f"#{ctx.ticket_id} is closed: a new ticket linked to it")
        ctx.linked_ticket_id, ctx.ticket_id = ctx.ticket_id, None
    return None
