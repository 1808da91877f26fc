"""Tickets with their actions, and the two changes operators make by hand.

The dictionaries built here are the ``--json`` contract of ``ingestd tickets``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ingestd.addresses import split_addresses
from ingestd.db.models import utcnow
from ingestd.db.tables import ACTIONS, AGENTS, ATTACHMENTS, CLIENTS, SITES, TICKETS, USERS
from ingestd.errors import InvalidRequest, NotFound
from ingestd.services.page import Page, count_where
from ingestd.services.vocabulary import TICKET_STATUSES


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _ticket_query() -> sa.Select[Any]:
    return (
        sa.select(
            TICKETS, USERS.c.email.label("user_email"), CLIENTS.c.name.label("client_name"),
            SITES.c.name.label("site_name"), AGENTS.c.email.label("agent_email"),
        )
        .outerjoin(USERS, USERS.c.id == TICKETS.c.user_id)
        .outerjoin(CLIENTS, CLIENTS.c.id == TICKETS.c.client_id)
        .outerjoin(SITES, SITES.c.id == TICKETS.c.site_id)
        .outerjoin(AGENTS, AGENTS.c.id == TICKETS.c.agent_id)
    )


def _ticket_record(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "type": row.type, "status": row.status, "summary": row.summary,
        "mailbox": row.mailbox, "user_email": row.user_email, "client": row.client_name,
        "site": row.site_name, "agent_email": row.agent_email,
        "priority": row.priority, "category": row.category, "team": row.team,
        "tags": list(row.tags or []), "fields": dict(row.fields or {}), "vip": bool(row.vip),
        "linked_ticket_id": row.linked_ticket_id,
        "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at),
    }


def list_tickets(conn: sa.Connection, *, status: str | None = None,
                 mailbox: str | None = None, limit: int = 100) -> Page:
    """Tickets, newest first, at most ``limit``."""
    conditions = []
    if status:
        conditions.append(TICKETS.c.status == status)
    if mailbox:
        conditions.append(TICKETS.c.mailbox == mailbox)
    query = _ticket_query().where(*conditions).order_by(TICKETS.c.id.desc()).limit(max(limit, 0))
    records = [_ticket_record(row) for row in conn.execute(query)]
    return Page(records, count_where(conn, TICKETS, *conditions))


def show_ticket(conn: sa.Connection, ticket_id: int) -> dict[str, Any]:
    """One ticket with its actions, oldest first, and each action's attachments."""
    row = conn.execute(_ticket_query().where(TICKETS.c.id == ticket_id)).first()
    if row is None:
        raise NotFound(f"no ticket with id {ticket_id}")
    record = _ticket_record(row)
    actions = conn.execute(
        sa.select(ACTIONS).where(ACTIONS.c.ticket_id == ticket_id).order_by(ACTIONS.c.id)
    ).all()
    files = conn.execute(
        sa.select(ATTACHMENTS.c.id, ATTACHMENTS.c.action_id, ATTACHMENTS.c.filename,
                  ATTACHMENTS.c.content_type, ATTACHMENTS.c.size, ATTACHMENTS.c.sha256,
                  ATTACHMENTS.c.content_id, ATTACHMENTS.c.inline)
        .where(ATTACHMENTS.c.action_id.in_([a.id for a in actions]))
        .order_by(ATTACHMENTS.c.id)
    ).all()
    record["actions"] = [
        {
            "id": a.id, "kind": a.kind, "sender_kind": a.sender_kind,
            "user_created": a.user_created, "from": a.from_address, "from_name": a.from_name,
            "to": split_addresses(a.to_address), "cc": split_addresses(a.cc_address),
            "reply_to": split_addresses(a.reply_to_address), "subject": a.subject,
            "body_text": a.body_text, "message_id": a.message_id,
            "created_at": _iso(a.created_at), "sender_verified": a.sender_verified,
            **_delivery_failure(a),
            "attachments": [
                {"id": f.id, "filename": f.filename, "content_type": f.content_type,
                 "size": f.size, "sha256": f.sha256, "content_id": f.content_id,
                 "inline": bool(f.inline)}
                for f in files if f.action_id == a.id
            ],
        }
        for a in actions
    ]
    return record


def _delivery_failure(action: Any) -> dict[str, Any]:
    """A bounce's fields, on delivery_failure actions only."""
    if action.kind != "delivery_failure":
        return {}
    return {"failed_recipient": split_addresses(action.failed_recipient),
            "status": action.delivery_status, "hard": action.hard_bounce}


def set_status(conn: sa.Connection, ticket_id: int, status: str) -> None:
    """Open or close a ticket (what the helpdesk does)."""
    if status not in TICKET_STATUSES:
        raise InvalidRequest(f"a ticket's status is one of {', '.join(TICKET_STATUSES)}")
    result = conn.execute(
        sa.update(TICKETS).where(TICKETS.c.id == ticket_id)
        .values(status=status, updated_at=utcnow())
    )
    if result.rowcount != 1:
        raise NotFound(f"no ticket with id {ticket_id}")


def normalise_message_id(value: str) -> str:
    """``abc@x`` or ``<abc@x>`` → ``<abc@x>``, the form Message-ID headers have."""
    value = value.strip()
    return value if value.startswith("<") and value.endswith(">") else f"<{value.strip('<>')}>"


def add_outgoing(conn: sa.Connection, ticket_id: int, message_id: str, to: str,
                 subject: str | None) -> int:
    """Record mail the helpdesk sent, so replies naming its Message-ID find the ticket."""
    if conn.execute(sa.select(TICKETS.c.id).where(TICKETS.c.id == ticket_id)).first() is None:
        raise NotFound(f"no ticket with id {ticket_id}")
    return int(conn.execute(
        sa.insert(ACTIONS).values(
            ticket_id=ticket_id, kind="outgoing", sender_kind="agent", user_created=False,
            to_address=to, subject=subject, message_id=normalise_message_id(message_id),
            created_at=utcnow(),
        ).returning(ACTIONS.c.id)
    ).scalar_one())
