"""find_ticket and thread: which existing ticket, if any, this message updates."""

from __future__ import annotations

import sqlalchemy as sa

from ingestd.db.models import Action, Ticket
from ingestd.pipeline.context import MessageContext, Outcome

_TICKETS = Ticket.__table__  # type: ignore[attr-defined]
_ACTIONS = Action.__table__  # type: ignore[attr-defined]


def find_tagged_ticket(ctx: MessageContext) -> Outcome | None:
    """A tag naming an existing ticket decides; a tag naming none means a new ticket."""
    if ctx.tag is None:
        return None
    found = ctx.db.execute(
        sa.select(_TICKETS.c.id).where(_TICKETS.c.id == ctx.tag.ticket_id)
    ).scalar_one_or_none()
    if found is not None:
        ctx.ticket_id = int(found)
        ctx.notes.append(f"tag {ctx.tag.text} in {ctx.tag.where}")
    else:
        ctx.notes.append(f"new ticket: tag {ctx.tag.text} names no ticket")
    return None


def thread_by_references(ctx: MessageContext) -> Outcome | None:
    """Without a tag: an In-Reply-To / References id recorded on an action decides."""
    if ctx.tag is not None:
        return None
    message = ctx.message
    candidates = [*message.in_reply_to, *reversed(message.references)]
    if not candidates:
        return None
    rows = ctx.db.execute(
        sa.select(_ACTIONS.c.message_id, _ACTIONS.c.ticket_id)
        .where(_ACTIONS.c.message_id.in_(candidates[:100]))
        .order_by(_ACTIONS.c.id.desc())
    ).all()
    by_id = {}
    for mid, ticket_id in rows:
        by_id.setdefault(mid, ticket_id)
    for mid in candidates:  # In-Reply-To first, then the newest reference
        if mid in by_id:
            ctx.ticket_id = int(by_id[mid])
            header = "In-Reply-To" if mid in message.in_reply_to else "References"
            ctx.notes.append(f"threaded by {header} {mid}")
            return None
    return None
