"""find_ticket and thread: which existing ticket, if any, this message updates."""

from __future__ import annotations

import sqlalchemy as sa

from ingestd.db.tables import ACTIONS, TICKETS
from ingestd.pipeline.context import MessageContext, Outcome

_MAX_TICKET_ID = 2**31 - 1


def find_tagged_ticket(ctx: MessageContext) -> Outcome | None:
    """A tag naming an existing ticket decides; a tag naming none means a new ticket."""
    if ctx.tag is None:
        return None
    if ctx.tag.ticket_id > _MAX_TICKET_ID:
        # Outside the id column's range (PostgreSQL would refuse the query).
        ctx.notes.append(f"new ticket: tag {ctx.tag.text} names no ticket")
        return None
    found = ctx.db.execute(
        sa.select(TICKETS.c.id).where(TICKETS.c.id == ctx.tag.ticket_id)
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
        sa.select(ACTIONS.c.message_id, ACTIONS.c.ticket_id)
        .where(ACTIONS.c.message_id.in_(candidates[:100]))
        .order_by(ACTIONS.c.id.desc())
    ).all()
    by_id: dict[str, int] = {}
    for mid, ticket_id in rows:
        by_id.setdefault(mid, ticket_id)
    for mid in candidates:  # In-Reply-To first, then the newest reference
        if mid in by_id:
            ctx.ticket_id = int(by_id[mid])
            header = "In-Reply-To" if mid in message.in_reply_to else "References"
            ctx.notes.append(f"threaded by {header} {mid}")
            return None
    return None
