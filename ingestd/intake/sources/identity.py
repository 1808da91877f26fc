"""Message-ID and From read from a header block exactly as processing reads them.

A resync that finds mail under new ids (a new IMAP UIDVALIDITY) skips what
the dedupe keys already hold; the keys must then be computed the way the
``dedupe`` stage computes them, so the parser itself reads the header.
"""

from __future__ import annotations

from ingestd.config.settings import ProcessingLimits
from ingestd.errors import PermanentError
from ingestd.intake.sources.pull import MessageKeys
from ingestd.message_keys import message_id_key

_LIMITS = ProcessingLimits()


def message_keys_of(header: bytes) -> MessageKeys:
    """The keys of a message whose header block (or a part of it) is ``header``."""
    # Imported here: the parser is heavy and only a resync needs it in intake.
    from ingestd.pipeline.stages.parse import parse_message

    try:
        parsed = parse_message(header.rstrip(b"\r\n") + b"\r\n\r\n", _LIMITS)
    except PermanentError:
        return MessageKeys(None, None)
    return MessageKeys(parsed.message_id, parsed.from_address)


def dedupe_key(keys: MessageKeys) -> str | None:
    if keys.message_id and keys.from_address:
        return message_id_key(keys.message_id, keys.from_address)
    return None
