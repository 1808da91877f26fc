"""bounce: a delivery failure report never opens a ticket; it is recorded on the ticket
whose mail bounced.

``protect`` read the report (``ctx.bounce``). The ticket is the one a tag or
thread reference already found, else the one with an action whose Message-ID
the report names (the helpdesk's outgoing mail, recorded with ``ingestd
tickets add-outgoing``, or any mail on the ticket), else the one a tag in
the returned message's subject names. The action is a ``delivery_failure``
with the failed recipients, the worst status and whether any failure is
hard; the ticket is touched but never reopened. A bounce naming no ticket
is ignored with reason ``bounce`` (the failed recipients are logged, event
``message.bounce``). Bounces skip the sender checks (guard,
rules, My Inbox): their sender is a mail server, not a person.
"""

from __future__ import annotations

import sqlalchemy as sa
import structlog

from ingestd.addresses import joined_addresses
from ingestd.bounces import Bounce
from ingestd.db.tables import ACTIONS, TICKETS
from ingestd.pipeline.context import MessageContext, Outcome, Sender
from ingestd.pipeline.stages.apply import add_email_action, touch_ticket
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
    action_id = add_email_action(ctx.db, ticket_id, ctx.message,
                                 Sender("unknown", ctx.message.from_address),
                                 ctx.inbound_id, ctx.now, kind="delivery_failure")
    ctx.db.execute(sa.update(ACTIONS).where(ACTIONS.c.id == action_id).values(
        failed_recipient=joined_addresses([r.address for r in bounce.recipients]),
        delivery_status=bounce.worst_status[:32], hard_bounce=bounce.hard))
    ctx.notes.append(f"delivery failure: {failed}")
    return Outcome("action_added", "processed", "; ".join(ctx.notes), ticket_id, action_id)


def _named_ticket(ctx: MessageContext, bounce: Bounce) -> int | None:
    ids = list(bounce.original_message_ids)
    if ids:
        found = ctx.db.execute(
            sa.select(ACTIONS.c.ticket_id, ACTIONS.c.message_id)
            .where(ACTIONS.c.message_id.in_(ids))
            .order_by(ACTIONS.c.id.desc())
        ).first()
        if found is not None:
            ctx.notes.append(f"bounce of {found.message_id}")
            return int(found.ticket_id)
    if bounce.original_subject:
        tag = find_ticket_tag(bounce.original_subject, ctx.mailbox.ticket_id_tags, "subject")
        if tag is not None and tag.ticket_id < 2**31 and ctx.db.execute(
                sa.select(TICKETS.c.id).where(TICKETS.c.id == tag.ticket_id)).first():
            ctx.notes.append(f"bounce of mail tagged {tag.text}")
            return tag.ticket_id
    return None
