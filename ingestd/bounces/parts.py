"""Where things are in a bounce: its own prose, the returned message, the Message-IDs."""

from __future__ import annotations

import re
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from ingestd.bounces.dsn import status_text
from ingestd.bounces.text import report_section
from ingestd.mailbytes import header_block
from ingestd.mailtext import bytes_text

DSN_TYPES = {"message/delivery-status", "message/global-delivery-status"}
_ORIGINAL_TYPES = {"message/rfc822", "text/rfc822-headers", "message/global",
                   "message/global-headers", "text/rfc822-header"}
# A pasted header line, not a quoted one ("> Message-ID:" is someone else's mail).
_MESSAGE_ID = re.compile(r"^[ \t]*Message-ID:[ \t]*(<[^<>\s]{1,500}>)",
                         re.IGNORECASE | re.MULTILINE)


def report_text(message: Message) -> str:
    """The bounce's own prose: its text parts outside any returned message, report part cut."""
    texts: list[str] = []
    collect_text(message, texts)
    text = "\n".join(texts)
    if not text.strip():
        # A multipart whose boundary never appears (the header names another):
        # its whole body is one preamble, which the parts above do not include.
        text = part_text(body_as_text(message))
    return report_section(text)


def body_as_text(message: Message) -> Message:
    """The message's whole body as one text/plain part, for reports whose MIME is broken."""
    body = Message()
    body.set_payload(message.preamble or "" if message.is_multipart() else "")
    if not message.is_multipart():
        body.set_payload(message.get_payload())
    body["Content-Type"] = "text/plain"
    return body


def collect_text(part: Message, texts: list[str]) -> None:
    kind = part.get_content_type()
    if kind in _ORIGINAL_TYPES:
        return
    if part.is_multipart():
        for child in part.get_payload():
            if isinstance(child, Message):
                collect_text(child, texts)
        return
    if kind in DSN_TYPES:
        texts.append(status_text(part))
    elif part.get_content_maintype() == "text":
        text = part_text(part)
        # Bounded: "<<<<..." must not make every "<" scan to the end.
        texts.append(re.sub(r"<[^<>]{0,2000}>", " ", text) if kind == "text/html" else text)


def part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def returned_headers(message: Message) -> Message | None:
    """The returned message's header block, pasted into the report's text after it."""
    texts: list[str] = []
    collect_text(message, texts)
    text = "\n".join(texts)
    rest = text[len(report_section(text)):]
    start = re.search(r"^(?:Received|Return-Path|From|To|Message-ID|Date|Subject):", rest,
                      re.IGNORECASE | re.MULTILINE)
    if start is None:
        return None
    return HeaderParser(policy=compat32).parsestr(rest[start.start():])


def original_part(message: Message) -> Message | None:
    """The returned message (or its headers), when the bounce encloses it as a part."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind not in _ORIGINAL_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            return HeaderParser(policy=compat32).parsestr(bytes_text(header_block(data)))
    return None


def message_ids(message: Message, original: Message | None) -> tuple[str, ...]:
    """Most reliable first: the returned message's own Message-ID, one pasted into the
    report, then the bounce's own references."""
    ids: list[str] = []
    if original is not None:
        ids += re.findall(r"<[^<>\s]{1,500}>", str(original.get("Message-ID") or "")[:1000])
    texts: list[str] = []
    collect_text(message, texts)
    ids += _MESSAGE_ID.findall("\n".join(texts))[:10]
    for name in ("In-Reply-To", "References"):
        ids += re.findall(r"<[^<>\s]{1,500}>", str(message.get(name) or "")[:4096])
    own = str(message.get("Message-ID") or "").strip()
    return tuple(i for i in dict.fromkeys(ids) if i != own)[:20]


def header_text(headers: Message, name: str) -> str | None:
    value = headers.get(name)
    return " ".join(str(value).split()) if value is not None else None
