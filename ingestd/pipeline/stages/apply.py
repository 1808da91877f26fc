"""apply: write the new ticket, or the action on an existing ticket.

The writing helpers are public: My Inbox (``services/inbox_actions.py``)
attaches and converts stored mail with the same rows processing writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ingestd.addresses import joined_addresses
from ingestd.db.tables import ACTIONS, ATTACHMENTS, TICKETS
from ingestd.pipeline.context import MessageContext, Outcome, Sender
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.inbox import place_in_inbox
from ingestd.pipeline.stages.rules import is_vip
from ingestd.pipeline.summary import clean_summary
from ingestd.rules.assign import agent_by_address, fewest_open_agent
from ingestd.rules.plan import TicketPlan

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
    auto = ctx.auto_reply
    if auto is not None and ctx.ticket_id is None and not ctx.mailbox.auto_replies.open_tickets:
        # An out-of-office or autoresponder never opens a ticket (nor a My Inbox item).
        return Outcome("ignored", "ignored", "auto-reply")
    if ctx.to_inbox:
        return place_in_inbox(ctx)
    plan = ctx.plan
    routed = ctx.settings.mailbox(plan.route) if plan.route else None
    if ctx.ticket_id is None:
        home = routed or ctx.mailbox
        default_type = home.ticket_type if routed else (ctx.new_ticket_type or home.ticket_type)
        ticket_id = new_ticket(
            ctx.db, ctx.message, sender, ctx.now,
            ticket_type=plan.ticket_type or default_type,
            summary=clean_summary(ctx.message.subject, ctx.mailbox.ticket_id_tags),
            mailbox=home.name,
            agent_id=planned_agent(ctx.db, plan, ctx.notes),
            extra={**planned_columns(plan),
                   "vip": is_vip(ctx.db, sender.user_id, sender.client_id),
                   "linked_ticket_id": ctx.linked_ticket_id},
        )
        action_id = add_email_action(ctx.db, ticket_id, ctx.message, sender,
                                     ctx.inbound_id, ctx.now, kind=_kind(ctx))
        reason = "; ".join(ctx.notes) or "new ticket"
        return Outcome("ticket_created", "processed", reason, ticket_id, action_id)
    if auto is not None:
        # An auto-reply never reopens a closed ticket (an out-of-office would, every time).
        if touch_ticket(ctx.db, ctx.ticket_id, ctx.now, reopen=False) == "closed":
            ctx.notes.append(f"auto-reply ({auto}): closed ticket not reopened")
        else:
            ctx.notes.append(f"auto-reply ({auto})")
    elif touch_ticket(ctx.db, ctx.ticket_id, ctx.now) == "closed":
        ctx.notes.append("reopened closed ticket")
    if plan.changes_ticket:
        update_planned(ctx.db, ctx.ticket_id, plan, ctx.notes)
    action_id = add_email_action(ctx.db, ctx.ticket_id, ctx.message, sender,
                                 ctx.inbound_id, ctx.now, kind=_kind(ctx))
    reason = "; ".join(ctx.notes) or f"action on #{ctx.ticket_id}"
    return Outcome("action_added", "processed", reason, ctx.ticket_id, action_id)


def new_ticket(db: sa.Connection, message: ParsedMessage, sender: Sender, now: datetime, *,
               ticket_type: str, summary: str, mailbox: str,
               agent_id: int | None = None, extra: dict[str, Any] | None = None) -> int:
    """An open ticket for ``message``: its sender the contact, its text the details.

    ``extra``: further columns (priority, tags, fields, vip ... from rules).
    """
    return int(db.execute(_NEW_TICKET, {
        "type": ticket_type, "status": "open", "details": message.text,
        "summary": summary[:2000], "mailbox": mailbox, "user_id": sender.user_id,
        "client_id": sender.client_id, "site_id": sender.site_id, "agent_id": agent_id,
        "created_at": now, "updated_at": now, **(extra or {}),
    }).scalar_one())


def planned_columns(plan: TicketPlan) -> dict[str, Any]:
    """The ticket columns a rule plan sets (none of them when no rule set it)."""
    columns: dict[str, Any] = {}
    for name in ("priority", "status", "category", "team"):
        if getattr(plan, name) is not None:
            columns[name] = getattr(plan, name)
    if plan.tags:
        columns["tags"] = list(plan.tags)
    if plan.fields:
        columns["fields"] = dict(plan.fields)
    return columns


def planned_agent(db: sa.Connection, plan: TicketPlan, notes: list[str]) -> int | None:
    """The agent a rule assigned: by address, or the team's agent with the fewest open."""
    if plan.agent_address is not None:
        agent = agent_by_address(db, plan.agent_address)
        notes.append(f"assigned to {plan.agent_address}" if agent is not None else
                     f"no active agent {plan.agent_address} to assign")
        return agent
    if plan.assign_team is not None:
        agent = fewest_open_agent(db, plan.assign_team)
        notes.append(f"assigned to agent {agent} (fewest open in {plan.assign_team})"
                     if agent is not None else f"team {plan.assign_team} has no active agent")
        return agent
    return None


def update_planned(db: sa.Connection, ticket_id: int, plan: TicketPlan,
                   notes: list[str]) -> None:
    """Rules on an update: set what they set on the existing ticket; tags and fields add up."""
    values = planned_columns(plan)
    if plan.ticket_type is not None:
        values["type"] = plan.ticket_type
    if "tags" in values or "fields" in values:
        row = db.execute(sa.select(TICKETS.c.tags, TICKETS.c.fields)
                         .where(TICKETS.c.id == ticket_id)).first()
        if row is not None:
            if "tags" in values:
                values["tags"] = [*(t for t in (row.tags or []) if t not in plan.tags),
                                  *plan.tags]
            if "fields" in values:
                values["fields"] = {**(row.fields or {}), **plan.fields}
    if plan.agent_address is not None or plan.assign_team is not None:
        current = db.execute(sa.select(TICKETS.c.agent_id)
                             .where(TICKETS.c.id == ticket_id)).scalar()
        if current is None:
            agent = planned_agent(db, plan, notes)
            if agent is not None:
                values["agent_id"] = agent
        else:
            # A reply must not move a ticket between agents (nor undo a manual assignment).
            notes.append("assignment skipped: the ticket has an agent")
    if values:
        db.execute(sa.update(TICKETS).where(TICKETS.c.id == ticket_id).values(**values))


def touch_ticket(db: sa.Connection, ticket_id: int, now: datetime, *,
                 reopen: bool = True) -> str | None:
    """Mark a ticket updated by new mail, reopening it if closed (unless ``reopen`` is off).

    Returns its status before, or None when there is no such ticket.
    """
    status = db.execute(_TICKET_STATUS, {"b_id": ticket_id}).scalar_one_or_none()
    if status is not None:
        statement = _REOPEN if status == "closed" and reopen else _TOUCH
        db.execute(statement, {"b_id": ticket_id, "b_now": now})
    return status


def _kind(ctx: MessageContext) -> str:
    return "auto_reply" if ctx.auto_reply is not None else "email"


def add_email_action(db: sa.Connection, ticket_id: int, message: ParsedMessage, sender: Sender,
                     inbound_id: int | None, now: datetime, kind: str = "email") -> int:
    """The ``email`` action recording ``message`` on a ticket, with its attachments."""
    action_id = db.execute(_NEW_ACTION, {
        "ticket_id": ticket_id, "kind": kind, "sender_kind": sender.kind,
        "user_created": sender.user_created, "from_address": message.from_address,
        "from_name": (message.from_name or "")[:255] or None,
        "to_address": joined_addresses(message.to), "cc_address": joined_addresses(message.cc),
        "reply_to_address": joined_addresses(message.reply_to), "subject": message.subject,
        "body_text": message.text, "body_html": message.html, "message_id": message.message_id,
        "inbound_message_id": inbound_id, "created_at": now,
        "sender_verified": sender.verified,
    }).scalar_one()
    if message.attachments:
        db.execute(_NEW_ATTACHMENT, [
            {"action_id": action_id, "filename": a.filename, "content_type": a.content_type,
             "size": a.size, "sha256": a.sha256, "content": a.content,
             "content_id": a.content_id, "inline": a.inline}
            for a in message.attachments
        ])
    return int(action_id)
