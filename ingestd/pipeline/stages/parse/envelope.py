"""The last resort for who sent a message: the SMTP envelope sender (MAIL FROM).

Only the message's journey knows it, not its bytes, so it is applied after
``parse_message``: by the ``parse`` stage, and by My Inbox when it parses a
stored message again (an attached or converted item must name the sender
processing named).
"""

from __future__ import annotations

from dataclasses import replace

from ingestd.pipeline.context import normalised_envelope
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse.sender import usable


def with_envelope_sender(parsed: ParsedMessage, envelope_from: str | None) -> ParsedMessage:
    """``parsed`` with the envelope sender when no header gave a usable address.

    ``envelope_from`` as stored (``<a@b>``, ``a@b``, empty for a bounce) or
    already normalised; each use is a defect.
    """
    if usable(parsed.from_address):
        return parsed
    address = normalised_envelope(envelope_from)
    if not usable(address):
        return parsed
    what = "no From header" if parsed.from_address is None and not parsed.from_name \
        else "no usable From"
    return replace(parsed, from_address=address, sender_header="envelope",
                   defects=(*parsed.defects, f"{what}; sender read from the envelope"))

