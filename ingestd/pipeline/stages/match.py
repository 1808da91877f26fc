"""match: a sales mailbox's mail finds its open opportunity, or waits in My Inbox.

Runs after ``classify`` and before ``apply``, for mailboxes with a
``matching`` section only. A ticket already found by its tag or by
In-Reply-To / References always wins, matching on or off: a customer's
reply to an opportunity lands on it, not in My Inbox. Otherwise, with
matching off the message becomes an item in the owner's My Inbox; with it
on, an open ticket of the mailbox's ``match_type`` is looked for by sender
address and subject, or by the sender's domain; never when the sender is
doubtful (several From headers). Every decision is a note, so it ends up in
the inbound row's reason.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ingestd.addresses import domain_of
from ingestd.db.tables import TICKETS, USERS
from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.summary import matching_subject

# Candidates looked at per message: a contact with more open opportunities
# than this is not a case matching can decide well anyway.
_MAX_CANDIDATES = 200


def match_opportunity(ctx: MessageContext) -> Outcome | None:
    matching = ctx.mailbox.matching
    if matching is None or ctx.ticket_id is not None:
        return None
    if not matching.enabled:
        ctx.to_inbox = True
        ctx.notes.append(f"matching off: My Inbox of {ctx.mailbox.owner}")
        return None
    ctx.new_ticket_type = ctx.mailbox.match_type
    if ctx.message.sender_doubtful:
        # Several From headers: the address shown may be borrowed, and must
        # not pull the mail onto that contact's (or domain's) opportunity.
        ctx.notes.append(f"sender doubtful (several From headers): never matched by sender; "
                         f"new {ctx.mailbox.match_type}")
        return None
    address = ctx.sender.address if ctx.sender is not None else None
    if not address or "@" not in address:
        ctx.notes.append(f"no sender address to match: new {ctx.mailbox.match_type}")
        return None
    if matching.type == "address_and_subject":
        found = _by_address_and_subject(ctx, address)
        what = f"from {address} with this subject"
    else:
        domain = domain_of(address)
        if domain in ctx.settings.agent_domains or domain in ctx.settings.free_mail_domains:
            kind = "our own" if domain in ctx.settings.agent_domains else "a free-mail"
            ctx.notes.append(f"{domain} is {kind} domain: never matched by domain; "
                             f"new {ctx.mailbox.match_type}")
            return None
        found = _by_domain(ctx, domain)
        what = f"for domain {domain}"
    if not found:
        ctx.notes.append(f"no open {ctx.mailbox.match_type} {what}: new {ctx.mailbox.match_type}")
        return None
    ctx.ticket_id = found[0]
    note = f"matched by {matching.type} to #{found[0]}"
    if len(found) > 1:
        others = ", ".join(f"#{t}" for t in found[1:6]) + (" …" if len(found) > 6 else "")
        note += f" (most recently updated of {len(found)}; also {others})"
    ctx.notes.append(note)
    return None


def _open_tickets(ctx: MessageContext) -> Any:
    return (
        sa.select(TICKETS.c.id, TICKETS.c.summary)
        .join(USERS, USERS.c.id == TICKETS.c.user_id)
        .where(TICKETS.c.type == ctx.mailbox.match_type, TICKETS.c.status == "open")
        .order_by(TICKETS.c.updated_at.desc(), TICKETS.c.id.desc())
        .limit(_MAX_CANDIDATES)
    )


def _by_address_and_subject(ctx: MessageContext, address: str) -> list[int]:
    wanted = matching_subject(ctx.message.subject, ctx.mailbox.ticket_id_tags)
    if not wanted:
        return []
    rows = ctx.db.execute(_open_tickets(ctx).where(USERS.c.email == address)).all()
    tags = ctx.mailbox.ticket_id_tags
    return [int(r.id) for r in rows if matching_subject(r.summary, tags) == wanted]


def _by_domain(ctx: MessageContext, domain: str) -> list[int]:
    pattern = "%@" + domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = ctx.db.execute(_open_tickets(ctx).where(USERS.c.email.like(pattern, escape="\\")))
    return [int(r.id) for r in rows]
