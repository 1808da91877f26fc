"""tag: find this mailbox's ticket ID tag (``[ID:1234]``) in the subject, or the body."""

from __future__ import annotations

import re
from functools import lru_cache

from ingestd.config.settings import TicketIdTags
from ingestd.pipeline.context import MessageContext, Outcome, TicketTag


def find_tag(ctx: MessageContext) -> Outcome | None:
    tags = ctx.mailbox.ticket_id_tags
    ctx.tag = find_ticket_tag(ctx.message.subject, tags, "subject")
    if ctx.tag is None and tags.search_body:
        ctx.tag = find_ticket_tag(ctx.message.text, tags, "body")
    return None


def find_ticket_tag(text: str, tags: TicketIdTags, where: str) -> TicketTag | None:
    """The earliest tag of any of the mailbox's styles in ``text``."""
    match = tag_pattern(tags).search(text)
    if match is None:
        return None
    digits = next(g for g in match.groups() if g is not None)
    return TicketTag(int(digits), match.group(0), where)  # type: ignore[arg-type]


@lru_cache(maxsize=256)
def tag_pattern(tags: TicketIdTags) -> re.Pattern[str]:
    """One alternation of every style, so the leftmost tag wins whatever its style."""
    pairs = [(tags.start, tags.end), *((t.start, t.end) for t in tags.extra)]
    # Digits only, optional spaces inside the tag: "[ID:1234]" and "[ID: 1234]".
    alternatives = [rf"{re.escape(s)}\s*(\d{{1,18}})\s*{re.escape(e)}" for s, e in pairs]
    return re.compile("|".join(alternatives), re.IGNORECASE)
