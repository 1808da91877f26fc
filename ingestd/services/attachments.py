"""Attachment contents (their metadata is part of a ticket's record)."""

from __future__ import annotations

import sqlalchemy as sa

from ingestd.db.tables import ATTACHMENTS
from ingestd.errors import NotFound


def attachment_content(conn: sa.Connection, attachment_id: int) -> bytes:
    """The stored bytes of one attachment."""
    content = conn.execute(
        sa.select(ATTACHMENTS.c.content).where(ATTACHMENTS.c.id == attachment_id)
    ).scalar()
    if content is None:
        raise NotFound(f"no attachment with id {attachment_id}")
    return bytes(content)
