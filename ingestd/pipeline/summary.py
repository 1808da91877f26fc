"""A ticket summary from a subject: reply/forward prefixes and our tags removed."""

from __future__ import annotations

import re

from ingestd.config.settings import TicketIdTags
from ingestd.pipeline.stages.tag import tag_pattern

# Reply and forward prefixes in the languages mail clients use, e.g. "Re:",
# "AW:" (German), "SV:" (Nordic), "TR:" (French), "RV:" (Spanish), "回复:".
_PREFIXES = (
    "re", "fw", "fwd", "aw", "wg", "sv", "vs", "vb", "tr", "rv", "enc", "res", "rif", "r",
    "antw", "doorst", "odp", "pd", "ynt", "ilt", "απ", "σχετ", "προωθ", "ha", "továbbítás",
    "回复", "回覆", "答复", "转发", "轉寄", "返信", "転送",
)
_WORDS = "|".join(re.escape(p) for p in _PREFIXES)
# "Re:", "RE :", "Re[2]:", "AW(3):", repeated: "Re: Fwd: AW:".
_PREFIX = re.compile(rf"^\s*(?:(?:{_WORDS})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+", re.IGNORECASE)


def clean_summary(subject: str, tags: TicketIdTags) -> str:
    text = tag_pattern(tags).sub(" ", subject)
    previous = None
    while previous != text:
        previous = text
        text = _PREFIX.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text or "(no subject)"


# "[EXTERNAL]", "[SPAM?]", "[list-name]": banners gateways and lists put in front.
_BANNER = re.compile(r"^\s*\[[^\[\]]{1,40}\]\s*")


def matching_subject(subject: str, tags: TicketIdTags) -> str:
    """A subject (or summary) as opportunity matching compares it.

    Our tags, reply/forward prefixes and leading bracketed banners removed in
    any order and number, white space collapsed, case folded: "[EXTERNAL] AW:
    RE: Quote  for  Acme" and "quote for acme" compare equal.
    """
    text = tag_pattern(tags).sub(" ", subject)
    previous = None
    while previous != text:
        previous = text
        text = _BANNER.sub("", _PREFIX.sub("", text))
    return re.sub(r"\s+", " ", text).strip().casefold()
