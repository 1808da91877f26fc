"""apply: write the new ticket, or the action on an existing ticket.

The writing helpers are public: My Inbox (``services/inbox_actions.py``)
attaches and converts stored mail with the same rows processing writes.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ingestd.addresses import joined_addresses
from ingestd.db.tables import ACTIONS, ATTACHMENTS, TICKETS
from ingestd.pipeline.context import MessageContext, Outcome, Sender
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.inbox import place_in_inbox
from ingestd.pipeline.summary import clean_summary

# Built once; executed with a parameter dict per message.
_NEW_TICKET = sa.insert(TICKETS).returning(TICKETS.c.id)
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
        ticket_id = new_ticket(
            ctx.db, ctx.message, sender, ctx.now,
            ticket_type=ctx.new_ticket_type or ctx.mailbox.ticket_type,
            summary=clean_summary(ctx.message.subject, ctx.mailbox.ticket_id_tags),
            mailbox=ctx.mailbox.name,
        )
        action_id = add_email_action(ctx.db, ticket_id, ctx.message, sender,
                                     ctx.inbound_id, ctx.now)
        reason = "; ".join(ctx.notes) or "new ticket"
        return Outcome("ticket_created", "processed", reason, ticket_id, action_id)
    if touch_ticket(ctx.db, ctx.ticket_id, ctx.now) == "closed":
        ctx.notes.append("reopened closed ticket")
    action_id = add_email_action(ctx.db, ctx.ticket_id, ctx.message, sender,
                                 ctx.inbound_id, ctx.now)
    reason = "; ".join(ctx.notes) or f"action on #{ctx.ticket_id}"
    return Outcome("action_added", "processed", reason, ctx.ticket_id, action_id)


def new_ticket(db: sa.Connection, message: ParsedMessage, sender: Sender, now: datetime, *,
               ticket_type: str, summary: str, mailbox: str,
               agent_id: int | None = None) -> int:
    """An open ticket for ``message``: its sender the contact, its text the details."""
    return int(db.execute(_NEW_TICKET, {
        "type": ticket_type, "status": "open", "details": message.text,
        "summary": summary[:2000], "mailbox": mailbox, "user_id": sender.user_id,
        "client_id": sender.client_id, "site_id": sender.site_id, "agent_id": agent_id,
        "created_at": now, "updated_at": now,
    }).scalar_one())


def touch_ticket(db: sa.Connection, ticket_id: int, now: datetime) -> str | None:
    """Mark a ticket updated by new mail, reopening it if closed.

    Returns its status before, or None when there is no such ticket.
    """
    status = db.execute(_TICKET_STATUS, {"b_id": ticket_id}).scalar_one_or_none()
    if status is not None:
        db.execute(_REOPEN if status == "closed" else _TOUCH, {"b_id": ticket_id, "b_now": now})
    return status


def add_email_action(db: sa.Connection, ticket_id: int, message: ParsedMessage, sender: Sender,
                     inbound_id: int | None, now: datetime) -> int:
    """The ``email`` action recording ``message`` on a ticket, with its attachments."""
    action_id = db.execute(_NEW_ACTION, {
        "ticket_id": ticket_id, "kind": "email", "sender_kind": sender.kind,
        "user_created": sender.user_created, "from_address": message.from_address,
        "from_name": (message.from_name or "")[:255] or None,
        "to_address": joined_addresses(message.to), "cc_address": joined_addresses(message.cc),
        "reply_to_address": joined_addresses(message.reply_to), "subject": message.subject,
        "body_text": message.text, "body_html": message.html, "message_id": message.message_id,
        "inbound_message_id": inbound_id, "created_at": now,
    }).scalar_one()
    if message.attachments:
        db.execute(_NEW_ATTACHMENT, [
            {"action_id": action_id, "filename": a.filename, "content_type": a.content_type,
             "size": a.size, "sha256": a.sha256, "content": a.content,
             "content_id": a.content_id, "inline": a.inline}
            for a in message.attachments
        ])
    return int(action_id)
