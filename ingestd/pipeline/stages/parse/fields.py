"""Header fields: subject, sender, recipients, date and the threading ids.

mail-parser parses the address headers; when it trips over a structure the
stdlib tree holds fine, ``_StdlibFields`` reads the same fields from the tree
so that a readable message is not quarantined. The tree's policy has already
turned raw 8-bit header bytes into text (``text.POLICY``), so neither sees
surrogate escapes; the subject is decoded here (``decode_words``), because
mail-parser drops or escapes 8-bit text beside encoded words. Message-ID,
In-Reply-To and References are read from the raw header values, because
distinct 8-bit ids must stay distinct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

import mailparser

from ingestd.errors import LimitExceeded
from ingestd.mailtext import clean_text, decode_words, header_text
from ingestd.pipeline.stages.parse.addresslists import bound_address_fields
from ingestd.pipeline.stages.parse.sender import (
    FALLBACK_HEADERS,
    address_pairs,
    read_fallback,
    read_sender,
)

_LINE_BREAK = re.compile(r"\r?\n(?=[ \t])")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")


@dataclass(frozen=True)
class HeaderFields:
    subject: str
    from_address: str | None
    from_name: str | None
    sender_doubtful: bool
    sender_header: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    date: datetime | None
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    defects: tuple[str, ...]


def header_fields(tree: Message) -> HeaderFields:
    """The header fields of ``tree``, with the parser's defects and our own findings."""
    cut = bound_address_fields(tree)
    try:
        parsed: Any = mailparser.MailParser(tree)
    except RecursionError as exc:
        raise LimitExceeded("depth") from exc
    except Exception as exc:
        parsed = _StdlibFields(tree, f"mail-parser failed: {type(exc).__name__}")
    defects = [clean_text(str(d)) for d in parsed.defects_categories or ()]
    defects.extend(cut)
    from_pairs = list(parsed.from_ or [])
    if len(from_pairs) > 1:
        defects.append("several From addresses; the first is used")
    from_values = [str(v) for v in tree.get_all("From") or ()]
    sender = read_sender(from_values, from_pairs[0] if from_pairs else None)
    sender_header = read_fallback(sender, {
        "From": from_values,
        **{name: [str(v) for v in tree.get_all(name) or ()] for name in FALLBACK_HEADERS},
    })
    defects.extend(sender.defects)
    return HeaderFields(
        subject=_subject(tree),
        from_address=sender.address,
        from_name=sender.name,
        sender_doubtful=sender.doubtful,
        sender_header=sender_header,
        to=tuple(clean_text(a).lower() for _, a in parsed.to or () if a),
        cc=tuple(clean_text(a).lower() for _, a in parsed.cc or () if a),
        reply_to=tuple(clean_text(a).lower().strip("<>") for _, a
                       in _addresses(tree.get_all("Reply-To") or ()) if "@" in a),
        date=_date(tree.get("Date")),
        message_id=_first_id(next(iter(_raw_header(tree, "message-id")), None)),
        in_reply_to=_ids(_raw_header(tree, "in-reply-to")),
        references=_ids(_raw_header(tree, "references")),
        defects=tuple(defects),
    )


class _StdlibFields:
    """The fields ``header_fields`` reads from mail-parser, taken from the stdlib tree instead."""

    def __init__(self, tree: Message, defect: str) -> None:
        self.defects_categories = [defect, *(type(d).__name__ for d in tree.defects)]
        self.from_ = _addresses(tree.get_all("From") or ())
        self.to = _addresses(tree.get_all("To") or ())
        self.cc = _addresses(tree.get_all("Cc") or ())


def _subject(tree: Message) -> str:
    value = tree.get("Subject")
    text = "" if value is None else clean_text(decode_words(header_text(value)))
    # Unfolding removes the line break and keeps the white space after it (RFC 5322 2.2.3).
    return _LINE_BREAK.sub("", text).replace("\r", " ").replace("\n", " ").strip()


def _addresses(values: Any) -> list[tuple[str, str]]:
    return [(decode_words(name), address)
            for name, address in address_pairs([header_text(v) for v in values])]


def _raw_header(tree: Message, name: str) -> list[str]:
    """Header values as parsed, before the policy replaces 8-bit bytes."""
    return [value for key, value in tree.raw_items() if key.lower() == name]


def _id_text(value: object) -> str:
    """A Message-ID header as text, keeping distinct 8-bit ids distinct.

    The parser hands 8-bit bytes over as surrogate escapes; replacing them
    would make <order-ä@x> and <order-ü@x> one id (and one a "duplicate"),
    so bytes that are not UTF-8 are read as Latin-1, which maps every byte
    to its own character.
    """
    raw = str(value).encode("utf-8", "surrogateescape")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\x00", "")


def _ids(values: Any) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        for mid in _MESSAGE_ID.findall(_id_text(value)):
            if mid not in found:
                found.append(mid)
    return tuple(found)


def _first_id(value: object) -> str | None:
    if value is None:
        return None
    ids = _ids([value])
    if ids:
        return ids[0]
    text = _id_text(value).strip()
    return text[:998] or None


def _date(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        return parsedate_to_datetime(clean_text(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
