"""Tickets as the CLI shows them, and the two changes operators make by hand.

The dictionaries built here are the ``--json`` contract of ``ingestd tickets``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ingestd.db.models import Action, Agent, Attachment, Client, Site, Ticket, User, utcnow
from ingestd.errors import NotFound

_TICKETS = Ticket.__table__  # type: ignore[attr-defined]
_ACTIONS = Action.__table__  # type: ignore[attr-defined]
_ATTACHMENTS = Attachment.__table__  # type: ignore[attr-defined]
_USERS = User.__table__  # type: ignore[attr-defined]
_CLIENTS = Client.__table__  # type: ignore[attr-defined]
_SITES = Site.__table__  # type: ignore[attr-defined]
_AGENTS = Agent.__table__  # type: ignore[attr-defined]

TICKET_STATUSES = ("open", "closed")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _ticket_query() -> sa.Select[Any]:
    return (
        sa.select(
            _TICKETS, _USERS.c.email.label("user_email"), _CLIENTS.c.name.label("client_name"),
            _SITES.c.name.label("site_name"), _AGENTS.c.email.label("agent_email"),
        )
        .outerjoin(_USERS, _USERS.c.id == _TICKETS.c.user_id)
        .outerjoin(_CLIENTS, _CLIENTS.c.id == _TICKETS.c.client_id)
        .outerjoin(_SITES, _SITES.c.id == _TICKETS.c.site_id)
        .outerjoin(_AGENTS, _AGENTS.c.id == _TICKETS.c.agent_id)
    )


def _ticket_record(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "type": row.type, "status": row.status, "summary": row.summary,
        "mailbox": row.mailbox, "user_email": row.user_email, "client": row.client_name,
        "site": row.site_name, "agent_email": row.agent_email,
        "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at),
    }


def list_tickets(conn: sa.Connection, status: str | None = None,
                 mailbox: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    query = _ticket_query().order_by(_TICKETS.c.id.desc()).limit(limit)
    if status:
        query = query.where(_TICKETS.c.status == status)
    if mailbox:
        query = query.where(_TICKETS.c.mailbox == mailbox)
    return [_ticket_record(row) for row in conn.execute(query)]


def show_ticket(conn: sa.Connection, ticket_id: int) -> dict[str, Any]:
    row = conn.execute(_ticket_query().where(_TICKETS.c.id == ticket_id)).first()
    if row is None:
        raise NotFound(f"no ticket with id {ticket_id}")
    record = _ticket_record(row)
    actions = conn.execute(
        sa.select(_ACTIONS).where(_ACTIONS.c.ticket_id == ticket_id).order_by(_ACTIONS.c.id)
    ).all()
    files = conn.execute(
        sa.select(_ATTACHMENTS.c.id, _ATTACHMENTS.c.action_id, _ATTACHMENTS.c.filename,
                  _ATTACHMENTS.c.content_type, _ATTACHMENTS.c.size, _ATTACHMENTS.c.sha256)
        .where(_ATTACHMENTS.c.action_id.in_([a.id for a in actions]))
        .order_by(_ATTACHMENTS.c.id)
    ).all()
    record["actions"] = [
        {
            "id": a.id, "kind": a.kind, "sender_kind": a.sender_kind,
            "user_created": a.user_created, "from": a.from_address, "subject": a.subject,
            "body_text": a.body_text, "message_id": a.message_id,
            "created_at": _iso(a.created_at),
            "attachments": [
                {"id": f.id, "filename": f.filename, "content_type": f.content_type,
                 "size": f.size, "sha256": f.sha256}
                for f in files if f.action_id == a.id
            ],
        }
        for a in actions
    ]
    return record


def set_status(conn: sa.Connection, ticket_id: int, status: str) -> None:
    result = conn.execute(
        sa.update(_TICKETS).where(_TICKETS.c.id == ticket_id)
        .values(status=status, updated_at=utcnow())
    )
    if result.rowcount != 1:
        raise NotFound(f"no ticket with id {ticket_id}")


def normalise_message_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") and value.endswith(">") else f"<{value.strip('<>')}>"


def add_outgoing(conn: sa.Connection, ticket_id: int, message_id: str, to: str,
                 subject: str | None) -> int:
    """Record mail the helpdesk sent, so replies naming its Message-ID find the ticket."""
    if conn.execute(sa.select(_TICKETS.c.id).where(_TICKETS.c.id == ticket_id)).first() is None:
        raise NotFound(f"no ticket with id {ticket_id}")
    return int(conn.execute(
        sa.insert(_ACTIONS).values(
            ticket_id=ticket_id, kind="outgoing", sender_kind="agent", user_created=False,
            to_address=to, subject=subject, message_id=normalise_message_id(message_id),
            created_at=utcnow(),
        ).returning(_ACTIONS.c.id)
    ).scalar_one())


def attachment_content(conn: sa.Connection, attachment_id: int) -> bytes:
    content = conn.execute(
        sa.select(_ATTACHMENTS.c.content).where(_ATTACHMENTS.c.id == attachment_id)
    ).scalar()
    if content is None:
        raise NotFound(f"no attachment with id {attachment_id}")
    return bytes(content)
