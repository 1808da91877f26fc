"""bounce: a delivery failure report never opens a ticket; it is recorded on the ticket
whose mail bounced.

``protect`` read the report (``ctx.bounce``). The ticket is the one a tag or
thread reference already found, else the one with an ``outgoing`` action
(``ingestd tickets add-outgoing``) whose Message-ID the report names — only
our own mail can bounce back to us — else the one a tag in the returned
message's subject names. The action is a ``delivery_failure`` with the failed
recipients, the worst status and whether any failure is hard; the ticket is
touched but never reopened. A bounce naming no ticket is ignored with reason
``bounce`` (the failed recipients are logged, event ``message.bounce``).

Bounces skip the sender checks (guard, rules, My Inbox): their sender is a
mail server, not a person. So that this is no way around the hijack guard
(anyone can dress mail up as a bounce and quote a ticket number), the action
holds only what ingestd read — the failed addresses and their status codes —
never the report's text, HTML or attachments; the raw report stays in the
inbound log. The sender's rate limit still applies: a flood of bounces is a
loop too.
"""

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa
import structlog

from ingestd.addresses import joined_addresses
from ingestd.bounces import Bounce
from ingestd.db.tables import ACTIONS, TICKETS
from ingestd.pipeline.context import MessageContext, Outcome, Sender
from ingestd.pipeline.stages.apply import add_email_action, touch_ticket
from ingestd.pipeline.stages.guard import over_rate_limit
from ingestd.pipeline.stages.tag import find_ticket_tag

log = structlog.get_logger("ingestd.bounce")


def record_bounce(ctx: MessageContext) -> Outcome | None:
    bounce = ctx.bounce
    if bounce is None:
        return None
    failed = ", ".join(f"{r.address} {r.status} {'hard' if r.hard else 'soft'}"
                       for r in bounce.recipients[:5])
    ticket_id = ctx.ticket_id or _named_ticket(ctx, bounce)
    if ticket_id is None or touch_ticket(ctx.db, ticket_id, ctx.now, reopen=False) is None:
        log.info("message.bounce", id=ctx.inbound_id, mailbox=ctx.mailbox.name, failed=failed,
                 message_ids=list(bounce.original_message_ids[:5]), ticket=None)
        return Outcome("ignored", "ignored", "bounce")
    looping = over_rate_limit(ctx, ctx.message.from_address)
    if looping is not None:
        return looping
    summary = replace(ctx.message, text=_summary(bounce), html=None, attachments=())
    action_id = add_email_action(ctx.db, ticket_id, summary,
                                 Sender("unknown", ctx.message.from_address),
                                 ctx.inbound_id, ctx.now, kind="delivery_failure")
    ctx.db.execute(sa.update(ACTIONS).where(ACTIONS.c.id == action_id).values(
        failed_recipient=joined_addresses([r.address for r in bounce.recipients]),
        delivery_status=bounce.worst_status[:32], hard_bounce=bounce.hard))
    ctx.notes.append(f"delivery failure: {failed}")
    return Outcome("action_added", "processed", "; ".join(ctx.notes), ticket_id, action_id)


def _summary(bounce: Bounce) -> str:
    """The action's text: what was read, never the report's own words."""
    lines = [f"Delivery failed ({'hard' if r.hard else 'soft'}): {r.address} {r.status}"
             for r in bounce.recipients]
    return "\n".join(lines) + "\n"


def _named_ticket(ctx: MessageContext, bounce: Bounce) -> int | None:
    ids = list(bounce.original_message_ids)
    if ids:
        rows = ctx.db.execute(
            sa.select(ACTIONS.c.ticket_id, ACTIONS.c.message_id)
            .where(ACTIONS.c.message_id.in_(ids), ACTIONS.c.kind == "outgoing")
            .order_by(ACTIONS.c.id.desc())
        ).all()
        by_id: dict[str, int] = {}
        for row in rows:
            by_id.setdefault(row.message_id, int(row.ticket_id))
        for mid in ids:  # most reliable first: the returned message's own Message-ID
            if mid in by_id:
                ctx.notes.append(f"bounce of {mid}")
                return by_id[mid]
    if bounce.original_subject:
        tag = find_ticket_tag(bounce.original_subject, ctx.mailbox.ticket_id_tags, "subject")
        if tag is not None and tag.ticket_id < 2**31 and ctx.db.execute(
                sa.select(TICKETS.c.id).where(TICKETS.c.id == tag.ticket_id)).first():
            ctx.notes.append(f"bounce of mail tagged {tag.text}")
            return tag.ticket_id
    return None
