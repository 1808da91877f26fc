"""Inline parts: the Content-ID an HTML body refers to (``cid:``), and whether to show it there."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from email.message import Message

from ingestd.mailtext import clean_text, header_text

MAX_CONTENT_ID = 250
_BRACKETED = re.compile(r"<([^<>]*)>")


def content_id(part: Message) -> str | None:
    """The part's Content-ID without its angle brackets, or None if it has none.

    Comments and folding around the brackets go; so does anything that
    cannot be in a ``cid:`` URL anyway (white space, control characters).
    """
    value = part.get("Content-ID")
    if value is None:
        return None
    text = clean_text(header_text(value))
    bracketed = _BRACKETED.search(text)
    if bracketed is not None:
        text = bracketed.group(1)
    text = "".join(ch for ch in text
                   if not ch.isspace() and unicodedata.category(ch)[0] != "C")
    return text.strip("<>")[:MAX_CONTENT_ID] or None


def is_inline(part: Message, cid: str | None, in_related: Callable[[Message], bool]) -> bool:
    """Whether the sender meant the part shown in the body rather than as a file.

    Said so (``inline``), or implied: no disposition, a Content-ID, and a
    multipart/related around it, which is how mailers put images in HTML.
    """
    try:
        disposition = (part.get_content_disposition() or "").strip()
    except Exception:
        return False
    if disposition:
        return disposition == "inline"
    return cid is not None and in_related(part)
