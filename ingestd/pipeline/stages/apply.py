"""apply: write the new ticket, or the action on an existing ticket."""

from __future__ import annotations

import sqlalchemy as sa

from ingestd.db.tables import ACTIONS, ATTACHMENTS, TICKETS
from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.stages.inbox import place_in_inbox
from ingestd.pipeline.summary import clean_summary

# Built once; executed with a parameter dict per message.
_NEW_TICKET = sa.insert(TICKETS).returning(TICKETS.c.id)
def address_list(addresses: tuple[str, ...]) -> str | None:
    """Addresses as stored in an action's address columns (``services.tickets`` splits them)."""
    return ", ".join(dict.fromkeys(addresses)) or None


_NEW_ACTION = sa.insert(ACTIONS).returning(ACTIONS.c.id)
_NEW_ATTACHMENT = sa.insert(ATTACHMENTS)
_TICKET_STATUS = sa.select(TICKETS.c.status).where(TICKETS.c.id == sa.bindparam("b_id"))
_TOUCH = (sa.update(TICKETS).where(TICKETS.c.id == sa.bindparam("b_id"))
          .values(updated_at=sa.bindparam("b_now")))
_REOPEN = _TOUCH.values(status="open")


def apply_to_ticket(ctx: MessageContext) -> Outcome:
    sender = ctx.sender
    assert sender is not None, "classify runs before apply"
    if ctx.to_inbox:
        return place_in_inbox(ctx)
    if ctx.ticket_id is None:
        ticket_id = ctx.db.execute(_NEW_TICKET, {
            "type": ctx.new_ticket_type or ctx.mailbox.ticket_type, "status": "open",
            "details": ctx.message.text,
            "summary": clean_summary(ctx.message.subject, ctx.mailbox.ticket_id_tags)[:2000],
            "mailbox": ctx.mailbox.name, "user_id": sender.user_id,
            "client_id": sender.client_id, "site_id": sender.site_id, "agent_id": None,
            "created_at": ctx.now, "updated_at": ctx.now,
        }).scalar_one()
        action_id = _add_action(ctx, ticket_id)
        reason = "; ".join(ctx.notes) or "new ticket"
        return Outcome("ticket_created", "processed", reason, ticket_id, action_id)
    status = ctx.db.execute(_TICKET_STATUS, {"b_id": ctx.ticket_id}).scalar_one()
    if status == "closed":
        ctx.notes.append("reopened closed ticket")
    ctx.db.execute(_REOPEN if status == "closed" else _TOUCH,
                   {"b_id": ctx.ticket_id, "b_now": ctx.now})
    action_id = _add_action(ctx, ctx.ticket_id)
    reason = "; ".join(ctx.notes) or f"action on #{ctx.ticket_id}"
    return Outcome("action_added", "processed", reason, ctx.ticket_id, action_id)


def _add_action(ctx: MessageContext, ticket_id: int) -> int:
    message, sender = ctx.message, ctx.sender
    assert sender is not None
    action_id = ctx.db.execute(_NEW_ACTION, {
        "ticket_id": ticket_id, "kind": "email", "sender_kind": sender.kind,
        "user_created": sender.user_created, "from_address": message.from_address,
        "from_name": (message.from_name or "")[:255] or None,
        "to_address": address_list(message.to), "cc_address": address_list(message.cc),
        "reply_to_address": address_list(message.reply_to), "subject": message.subject,
        "body_text": message.text, "body_html": message.html, "message_id": message.message_id,
        "inbound_message_id": ctx.inbound_id, "created_at": ctx.now,
    }).scalar_one()
    if message.attachments:
        ctx.db.execute(_NEW_ATTACHMENT, [
            {"action_id": action_id, "filename": a.filename, "content_type": a.content_type,
             "size": a.size, "sha256": a.sha256, "content": a.content,
             "content_id": a.content_id, "inline": a.inline}
            for a in message.attachments
        ])
    return int(action_id)
