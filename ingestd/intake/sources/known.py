"""What a pulled mailbox already stored: by provider id, and (after ids were renamed) by
Message-ID and From."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestd.db.errors import translated
from ingestd.db.tables import DEDUPE_KEYS, INBOUND
from ingestd.intake.sources.identity import dedupe_key
from ingestd.intake.sources.pull import PullConnection
from ingestd.message_keys import provider_key

# Ids per IN (...) query when looking for what is already stored.
_LOOKUP_CHUNK = 500


def not_stored(engine: Engine, kind: str, mailbox: str, provider_ids: list[str]) -> list[str]:
    """The ids whose message this mailbox has not stored yet, in their order."""
    keys = {provider_key(kind, mailbox, pid): pid for pid in provider_ids}
    found: set[str] = set()
    listed = list(keys)
    with translated("look up stored messages"), engine.connect() as conn:
        for i in range(0, len(listed), _LOOKUP_CHUNK):
            part = listed[i:i + _LOOKUP_CHUNK]
            found.update(conn.execute(sa.select(INBOUND.c.source_key).where(
                INBOUND.c.source_key.in_(part))).scalars())
    return [pid for key, pid in keys.items() if key not in found]


def not_known_by_headers(engine: Engine, connection: PullConnection, folder: str,
                         provider_ids: list[str]) -> list[str]:
    """Renamed ids: drop those whose Message-ID and From the dedupe keys already hold."""
    keys = connection.message_keys(folder, provider_ids)
    by_key = {pid: dedupe_key(k) for pid, k in keys.items()}
    wanted_keys = [k for k in by_key.values() if k is not None]
    known: set[str] = set()
    if wanted_keys:
        with translated("look up dedupe keys"), engine.connect() as conn:
            known.update(conn.execute(sa.select(DEDUPE_KEYS.c.key).where(
                DEDUPE_KEYS.c.key.in_(wanted_keys))).scalars())
    return [pid for pid in provider_ids if by_key.get(pid) not in known or
            by_key.get(pid) is None]
