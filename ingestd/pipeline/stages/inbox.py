"""My Inbox: a sales mailbox's mail with matching off waits for its owner's triage.

The item holds what the owner needs to decide (sender, subject, a preview)
and points at the stored message; attaching it to a ticket or converting it
later re-reads that message, so nothing about it is lost by waiting here.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from ingestd.db.tables import AGENTS, INBOUND, INBOX_ITEMS
from ingestd.pipeline.context import MessageContext, Outcome

PREVIEW_CHARACTERS = 300
_SPACE = re.compile(r"\s+")

# Received: when intake took the message, not when a worker got to it.
_NEW_ITEM = sa.insert(INBOX_ITEMS).values(received_at=(
    sa.select(INBOUND.c.received_at).where(INBOUND.c.id == sa.bindparam("b_inbound"))
    .scalar_subquery()
)).returning(INBOX_ITEMS.c.id)
_OWNER = sa.select(AGENTS.c.id).where(AGENTS.c.email == sa.bindparam("b_email"))


def preview(text: str) -> str:
    """The first words of a body on one line, cut at a word where it can be."""
    flat = _SPACE.sub(" ", text).strip()
    if len(flat) <= PREVIEW_CHARACTERS:
        return flat
    cut = flat[:PREVIEW_CHARACTERS].rsplit(" ", 1)[0] or flat[:PREVIEW_CHARACTERS]
    return cut + " …"


def place_in_inbox(ctx: MessageContext) -> Outcome:
    message, owner = ctx.message, ctx.mailbox.owner
    agent_id = ctx.db.execute(_OWNER, {"b_email": owner}).scalar_one_or_none()
    if agent_id is None:
        # Kept all the same: administrators see every item, and the directory
        # can be fixed later; the reason says why the owner will not see it.
        ctx.notes.append(f"owner {owner} is not an agent in the directory")
    item_id = ctx.db.execute(_NEW_ITEM, {
        "agent_id": agent_id, "mailbox": ctx.mailbox.name,
        "inbound_message_id": ctx.inbound_id, "status": "open",
        "from_address": message.from_address,
        "from_name": (message.from_name or "")[:255] or None,
        "subject": message.subject, "message_id": message.message_id,
        "preview": preview(message.text), "b_inbound": ctx.inbound_id,
        "created_at": ctx.now, "updated_at": ctx.now,
    }).scalar_one()
    reason = "; ".join(ctx.notes)
    return Outcome("inbox_item", "processed", reason, inbox_item_id=int(item_id))
