"""The last resort for who sent a message: the SMTP envelope sender (MAIL FROM).

Only the message's journey knows it, not its bytes, so it is applied after
``parse_message``: by the ``parse`` stage, and by My Inbox when it parses a
stored message again (an attached or converted item must name the sender
processing named). MAIL FROM is whatever the client sent: it is cleaned and
bounded here, because a value no address column takes must leave the mail
without a sender, not refused by the database.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ingestd.mailtext import clean_text
from ingestd.pipeline.context import normalised_envelope
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse.sender import MAX_ADDRESS, usable

# C0 and C1 controls (NUL among them): no mailbox has them, and PostgreSQL
# refuses NUL in text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def with_envelope_sender(parsed: ParsedMessage, envelope_from: str | None) -> ParsedMessage:
    """``parsed`` with the envelope sender when no header gave a usable address.

    ``envelope_from`` as stored (``<a@b>``, ``a@b``, empty for a bounce) or
    already normalised; each use is a defect, as is an envelope sender too
    long to be an address.
    """
    if usable(parsed.from_address):
        return parsed
    address = envelope_address(envelope_from)
    if address is not None and len(address) > MAX_ADDRESS:
        return replace(parsed, defects=(
            *parsed.defects, f"envelope sender of {len(address)} characters ignored"))
    if not usable(address):
        return parsed
    what = "no From header" if parsed.from_address is None and not parsed.from_name \
        else "no usable From"
    return replace(parsed, from_address=address, sender_header="envelope",
                   defects=(*parsed.defects, f"{what}; sender read from the envelope"))


def envelope_address(value: str | None) -> str | None:
    """MAIL FROM as an address: lower case, no brackets, no control characters."""
    return normalised_envelope(_CONTROL.sub("", clean_text(value or "")))
