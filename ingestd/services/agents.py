"""Agents' bearer tokens for the HTTP API: issue, revoke, and find who holds one.

A token is 32 random bytes, shown once when issued; only its SHA-256 is
stored, so a copy of the database does not hand out access. SHA-256 rather
than a slow password hash is enough here: the token is random and long, not
something a person chose, so there is nothing to guess from the hash.
A revoked token, an expired one and one whose agent is no longer active all
authenticate nobody.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ingestd.addresses import normalise_address
from ingestd.db.models import utcnow
from ingestd.db.tables import AGENTS, API_TOKENS
from ingestd.errors import NotFound
from ingestd.services.inbox_items import Actor, actor_by_email

# Marks what the string is (in a leaked log or a secret scanner's view).
TOKEN_PREFIX = "ingestd_"
# Longer than any real token: a caller sending megabytes gets no hashing work.
MAX_TOKEN_LENGTH = 200


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def issue_token(conn: sa.Connection, email: str, name: str | None = None,
                valid_for: timedelta | None = None) -> tuple[str, dict[str, Any]]:
    """A new token for the active agent ``email``: the token itself, and its record.

    With ``valid_for`` the token authenticates nobody once that much time has passed.
    """
    actor = actor_by_email(conn, email)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + valid_for if valid_for is not None else None
    label = (name or f"issued {now:%Y-%m-%d %H:%M} UTC")[:255]
    token_id = conn.execute(sa.insert(API_TOKENS).values(
        agent_id=actor.agent_id, name=label, token_sha256=token_hash(token), created_at=now,
        expires_at=expires_at,
    ).returning(API_TOKENS.c.id)).scalar_one()
    return token, {"id": int(token_id), "agent_email": actor.email, "name": label,
                   "created_at": now.isoformat(),
                   "expires_at": expires_at.isoformat() if expires_at else None}


def revoke_tokens(conn: sa.Connection, email: str) -> int:
    """Withdraw every live token of ``email`` (active or not); how many were withdrawn."""
    address = normalise_address(email)
    agent_id = conn.execute(sa.select(AGENTS.c.id).where(AGENTS.c.email == address)).scalar()
    if agent_id is None:
        raise NotFound(f"no agent with address {address}")
    return int(conn.execute(
        sa.update(API_TOKENS)
        .where(API_TOKENS.c.agent_id == agent_id, API_TOKENS.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount)


def actor_for_token(conn: sa.Connection, token: str, now: datetime | None = None
                    ) -> Actor | None:
    """The active agent holding this live token; ``None`` for anything else."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    moment = now or utcnow()
    row = conn.execute(
        sa.select(AGENTS.c.id, AGENTS.c.email, AGENTS.c.admin)
        .join(API_TOKENS, API_TOKENS.c.agent_id == AGENTS.c.id)
        .where(API_TOKENS.c.token_sha256 == token_hash(token),
               API_TOKENS.c.revoked_at.is_(None),
               sa.or_(API_TOKENS.c.expires_at.is_(None), API_TOKENS.c.expires_at > moment),
               AGENTS.c.active.is_(True))
    ).first()
    if row is None:
        return None
    return Actor(agent_id=int(row.id), email=row.email, admin=bool(row.admin))

