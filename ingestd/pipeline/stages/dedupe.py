"""dedupe: the first message to own a key wins; later ones are duplicates.

Keys are inserted into ``dedupe_keys`` inside the message's transaction. The
primary key is the serialising point: on PostgreSQL a second transaction
inserting the same key waits for the first to commit or roll back; on SQLite
writers are serialised anyway. Comparing ids would not do: an id exists at
insert but is visible to others only at commit.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ingestd.db.tables import DEDUPE_KEYS
from ingestd.message_keys import CONTENT_PREFIX, content_key, describe, message_id_key
from ingestd.pipeline.context import MessageContext, Outcome


def dedupe(ctx: MessageContext) -> Outcome | None:
    if ctx.skip_dedupe:
        return None
    keys = [(ctx.source_key, describe(ctx.source_key))]
    if not ctx.source_key.startswith(CONTENT_PREFIX):
        # A pull keys by provider id; the same bytes under another id (a resync
        # after the ids changed, the same mail in two folders) are still one message.
        keys.append((content_key(ctx.raw), "same bytes"))
    message = ctx.message
    # Same Message-ID from another From is not a duplicate: a forged
    # Message-ID must not suppress someone else's mail.
    if message.message_id and message.from_address:
        keys.append((message_id_key(message.message_id, message.from_address), "message-id"))
    for key, why in keys:
        owner = _claim_key(ctx, key)
        if owner is not None:
            # Give back keys this message took, so they stay with the original.
            mine = DEDUPE_KEYS.c.inbound_message_id == ctx.inbound_id
            ctx.db.execute(sa.delete(DEDUPE_KEYS).where(mine))
            return Outcome(
                result="duplicate", status="duplicate", duplicate_of=owner,
                reason=f"duplicate of {owner} ({why})",
            )
    return None


_TAKE = {
    "postgresql": postgresql.insert(DEDUPE_KEYS).on_conflict_do_nothing(index_elements=["key"]),
    "sqlite": sqlite.insert(DEDUPE_KEYS).on_conflict_do_nothing(index_elements=["key"]),
}
_OWNER = sa.select(DEDUPE_KEYS.c.inbound_message_id).where(
    DEDUPE_KEYS.c.key == sa.bindparam("b_key"))


def _claim_key(ctx: MessageContext, key: str) -> int | None:
    """Insert ``key`` for this message; return the owner's id if another has it."""
    take = _TAKE[ctx.db.dialect.name]
    result = ctx.db.execute(take, {"key": key, "inbound_message_id": ctx.inbound_id})
    if result.rowcount == 1:
        return None
    owner = ctx.db.execute(_OWNER, {"b_key": key}).scalar_one()
    return None if owner == ctx.inbound_id else int(owner)
