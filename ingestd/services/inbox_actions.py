"""What an agent makes of a My Inbox item: an action on a ticket, a new ticket, a CRM note.

Each function runs inside the caller's transaction and starts with
``claim`` (the item leaves ``open``). Any error after it (no such ticket or
client, a message that no longer parses) propagates, the caller's
transaction rolls back, and the item is open again: nothing changed.

The stored message is parsed again with today's limits, its sender read as
the parse stage reads it (the envelope sender when no header has one) and
classified as processing would (``judge_sender``, with the sender
authentication verdict judged again from the stored row), so an attached or
converted item looks like mail that reached the ticket directly. An item
cannot be held: ``on_fail: quarantine`` makes an unproven sender unknown here.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ingestd.addresses import domain_of
from ingestd.authentication.verdict import Verdict, judge
from ingestd.config.settings import IngestdSettings, TicketIdTags
from ingestd.db.models import utcnow
from ingestd.db.tables import CLIENT_DOMAINS, CLIENTS, CRM_NOTES, INBOUND
from ingestd.errors import DnsUnavailable, Forbidden, InvalidRequest, LimitExceeded, NotFound
from ingestd.pipeline.context import Sender
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.apply import add_email_action, new_ticket, touch_ticket
from ingestd.pipeline.stages.classify import judge_sender
from ingestd.pipeline.stages.parse import parse_message, with_envelope_sender
from ingestd.pipeline.summary import clean_summary
from ingestd.services.inbox_items import Actor, claim, find_item, item_record, link
from ingestd.services.retention import stored_raw

# A new ticket from an item whose mailbox is no longer configured.
DEFAULT_TYPE = "opportunity"


def attach(conn: sa.Connection, settings: IngestdSettings, item_id: int, ticket_id: int,
           actor: Actor) -> dict[str, Any]:
    now = utcnow()
    item = claim(conn, item_id, actor, "attached", now)
    message, verdict = _stored_message(conn, settings, item)
    # Mail attached to a closed ticket reopens it, as the same mail arriving
    # with the ticket's tag would: someone wrote about it again.
    if touch_ticket(conn, ticket_id, now) is None:
        raise NotFound(f"no ticket with id {ticket_id}")
    sender = _sender(conn, settings, message, verdict)
    add_email_action(conn, ticket_id, message, sender, item.inbound_message_id, now)
    link(conn, item_id, ticket_id=ticket_id)
    return item_record(find_item(conn, item_id, actor))


def convert(conn: sa.Connection, settings: IngestdSettings, item_id: int, actor: Actor,
            summary: str | None = None) -> dict[str, Any]:
    if summary is not None and not summary.strip():
        raise InvalidRequest("a summary must not be empty (leave it out to use the subject)")
    now = utcnow()
    item = claim(conn, item_id, actor, "converted", now)
    message, verdict = _stored_message(conn, settings, item)
    mailbox = settings.mailbox(item.mailbox)
    tags = mailbox.ticket_id_tags if mailbox is not None else TicketIdTags()
    sender = _sender(conn, settings, message, verdict)
    ticket_id = new_ticket(
        conn, message, sender, now,
        ticket_type=mailbox.match_type if mailbox is not None else DEFAULT_TYPE,
        summary=" ".join(summary.split()) if summary else clean_summary(message.subject, tags),
        mailbox=item.mailbox, agent_id=actor.agent_id,
    )
    add_email_action(conn, ticket_id, message, sender, item.inbound_message_id, now)
    link(conn, item_id, ticket_id=ticket_id)
    return item_record(find_item(conn, item_id, actor))


def note(conn: sa.Connection, settings: IngestdSettings, item_id: int, actor: Actor,
         client: str | None = None) -> dict[str, Any]:
    if client is not None and not client.strip():
        raise InvalidRequest("a client name must not be empty")
    now = utcnow()
    item = claim(conn, item_id, actor, "noted", now)
    message, _ = _stored_message(conn, settings, item, judged=False)
    client_id = _client_for(conn, client, message.from_address or item.from_address)
    note_id = conn.execute(sa.insert(CRM_NOTES).values(
        client_id=client_id, agent_id=actor.agent_id, inbox_item_id=item_id,
        body=note_body(message), created_at=now,
    ).returning(CRM_NOTES.c.id)).scalar_one()
    link(conn, item_id, crm_note_id=int(note_id))
    return item_record(find_item(conn, item_id, actor))


def delete(conn: sa.Connection, item_id: int, actor: Actor) -> dict[str, Any]:
    if not actor.admin:
        find_item(conn, item_id, actor)  # another agent's item stays unseen: NotFound
        raise Forbidden(f"only administrators delete inbox items; {actor.email} is not one")
    claim(conn, item_id, actor, "deleted", utcnow())
    return item_record(find_item(conn, item_id, actor))


def note_body(message: ParsedMessage) -> str:
    """The note's text: a line naming sender and subject, then the mail's text."""
    sender = message.from_address or "an unknown sender"
    if message.from_name:
        sender = f"{message.from_name} <{sender}>"
    subject = message.subject or "(no subject)"
    return f"Email from {sender}, subject: {subject}\n\n{message.text.strip()}\n"


def _client_for(conn: sa.Connection, name: str | None, sender: str | None) -> int:
    if name is not None:
        found = conn.execute(
            sa.select(CLIENTS.c.id).where(CLIENTS.c.name == name.strip())).scalar()
        if found is None:
            raise NotFound(f"no client named {name.strip()!r}")
        return int(found)
    domain = domain_of(sender) if sender and "@" in sender else None
    found = conn.execute(
        sa.select(CLIENT_DOMAINS.c.client_id).where(CLIENT_DOMAINS.c.domain == domain)
    ).scalar() if domain else None
    if found is None:
        owner = f"the sender's domain {domain}" if domain else "the sender's address"
        raise InvalidRequest(f"no client owns {owner}: name the client to note this on")
    return int(found)


def _sender(conn: sa.Connection, settings: IngestdSettings, message: ParsedMessage,
            verdict: Verdict | None) -> Sender:
    sender, _, refused = judge_sender(conn, settings, message,
                                      verdict.verified if verdict is not None else None)
    if refused is not None and verdict is not None and verdict.deferred:
        raise DnsUnavailable(f"cannot verify the {refused} {sender.address} now: DNS did "
                             "not answer")
    return sender


def _stored_message(conn: sa.Connection, settings: IngestdSettings, item: Any, *,
                    judged: bool = True) -> tuple[ParsedMessage, Verdict | None]:
    """The stored message, and the sender authentication verdict on it (None: off, or
    not ``judged``: a CRM note needs none)."""
    stored = conn.execute(
        sa.select(INBOUND.c.envelope_from, INBOUND.c.source, INBOUND.c.peer)
        .where(INBOUND.c.id == item.inbound_message_id)).first()
    if stored is None:
        raise InvalidRequest(f"item {item.id} has no stored message")
    raw = stored_raw(conn, item.inbound_message_id)
    try:
        parsed = parse_message(raw, settings.processing.limits)
    except LimitExceeded as exc:
        raise InvalidRequest(
            f"item {item.id}: the stored message breaks processing limit {exc.which}"
        ) from exc
    message = with_envelope_sender(parsed, stored.envelope_from)
    policy = settings.sender_authentication
    if not policy.enabled or not judged:
        return message, None
    return message, judge(raw, message.from_address, policy,
                          source=str(stored.source), peer=stored.peer)
