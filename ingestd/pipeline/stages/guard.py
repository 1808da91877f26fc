"""guard: once the ticket and the sender are known, the policies that protect tickets.

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

import sqlalchemy as sa

from ingestd.db.tables import CLIENTS, TICKETS
from ingestd.pipeline.context import MessageContext, Outcome

_TICKET = sa.select(TICKETS.c.status, TICKETS.c.user_id, TICKETS.c.client_id).where(
    TICKETS.c.id == sa.bindparam("b_id"))


def _catch_all(ctx: MessageContext, client_id: int) -> bool:
    """The client unknown senders are filed under relates strangers to nobody."""
    name = ctx.db.execute(sa.select(CLIENTS.c.name).where(CLIENTS.c.id == client_id)).scalar()
    return name == ctx.settings.unknown_senders.default_client


def guard_ticket(ctx: MessageContext) -> Outcome | None:
    if ctx.ticket_id is None:
        return None
    ticket = ctx.db.execute(_TICKET, {"b_id": ctx.ticket_id}).first()
    if ticket is None:
        return None
    sender = ctx.sender
    assert sender is not None, "classify runs before guard"
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
