"""Leaves of the tree: which are the body, which are attachments, and their names.

Attachments come straight from the stdlib tree so their bytes are exact.
Names are display names only: sanitised so they cannot act as a path, hide
their extension, or be empty.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import mimetypes
import quopri
import unicodedata
from email.message import Message

from ingestd.mailtext import clean_text, decode_words, header_text
from ingestd.pipeline.parsed import ParsedAttachment
from ingestd.pipeline.stages.parse.html import html_text
from ingestd.pipeline.stages.parse.limits import Leaf, payload

BODY_TYPES = ("text/plain", "text/html")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


def bodies(leaves: list[Leaf]) -> tuple[str, list[str]]:
    """(the plain text, the HTML parts) of the body leaves, decoded and cleaned."""
    found = [(part, part_text(part)) for part, index in leaves if is_body(part, index)]
    html_parts = [clean_text(t) for part, t in found
                  if t and part.get_content_type() == "text/html"]
    text = "\n".join(clean_text(t) for part, t in found
                     if t and part.get_content_type() == "text/plain")
    return text, html_parts


def attachments(leaves: list[Leaf], defects: list[str]) -> tuple[ParsedAttachment, ...]:
    """The attachments among ``leaves``; what had to be repaired is added to ``defects``."""
    return tuple(a for part, i in leaves if (a := attachment(part, i, defects)) is not None)


def part_text(part: Message) -> str:
    content = part.get_payload(decode=True)
    if not isinstance(content, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return content.decode(charset, "replace")
    except (LookupError, UnicodeError, ValueError):
        # Unknown charsets, and codecs such as idna or punycode that are not text
        # encodings and fail whatever the error handler.
        return content.decode("utf-8", "replace")


def is_body(part: Message, index: int) -> bool:
    """text/plain or text/html that is not an attachment (RFC 8621 4.1.4).

    A named text part is a file the sender attached, unless it is the first
    part of its multipart (some mailers name the body itself).
    """
    if part.get_content_type() not in BODY_TYPES:
        return False
    try:
        disposition = (part.get_content_disposition() or "").lower()
        named = bool(part.get_filename())
    except Exception:
        return False
    return disposition != "attachment" and (not named or index == 0)


def forwarded_text(leaves: list[Leaf]) -> str:
    """The text an agent sees of mail that has no body of its own.

    The first enclosed message's text (enclosed messages are attachments),
    or else the text of a multipart whose boundary never came: what the
    sender wrote is there, only its structure is broken.
    """
    for part, _ in leaves:
        content = payload(part)
        if part.get_content_type() != "message/rfc822" or not isinstance(content, list):
            continue
        inner = [p for p in content[0].walk() if not p.is_multipart()] if content else []
        for kind in BODY_TYPES:
            for piece in inner:
                if piece.get_content_type() == kind and is_body(piece, 0):
                    text = part_text(piece)
                    return html_text(text) if kind == "text/html" else clean_text(text)
    for part, _ in leaves:
        if part.get_content_maintype() == "multipart" and not part.is_multipart():
            text = clean_text(part_text(part))
            if text.strip():
                return text
    return ""


def attachment(part: Message, index: int, defects: list[str]) -> ParsedAttachment | None:
    """The part as an attachment, or None for a body part or an empty broken multipart."""
    content_type = part.get_content_type()
    content = payload(part)
    if content_type in BODY_TYPES and is_body(part, index):
        return None
    if (part.get_content_maintype() == "multipart" and not isinstance(content, list)
            and not str(content or "").strip()):
        return None  # a boundary never found, and no text to keep as a file
    if part.get_content_maintype() == "message" and isinstance(content, list):
        data = _enclosed_bytes(part, content)
    else:
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
    return ParsedAttachment(
        filename=safe_filename(_filename(part) or _name_for(part, content_type, content),
                               content_type),
        content_type=clean_text(content_type)[:255],
        content=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _enclosed_bytes(part: Message, messages: list[Message]) -> bytes:
    # message/delivery-status holds several header blocks; the others one message.
    data = b"".join(m.as_bytes() for m in messages)
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding in ("base64", "quoted-printable") and messages:
        # RFC 2046 5.2.1 forbids encoding message/rfc822, but senders do it; the
        # stdlib then parsed the encoded text as a message. Keep the decoded bytes.
        with contextlib.suppress(binascii.Error, ValueError):
            encoded = data.lstrip(b"\r\n")
            data = (base64.b64decode(encoded) if encoding == "base64"
                    else quopri.decodestring(encoded))
    return data


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    # Encoded words are not allowed in parameters (RFC 2047 5), but Outlook
    # and others send them; decoding shows the name the sender saw.
    return decode_words(header_text(name)) if name else name


# Built-in table only (no /etc/mime.types): the same names on every machine.
_TYPES = mimetypes.MimeTypes(filenames=())
_TEXT_STEMS = {"plain": "text", "html": "text", "calendar": "calendar"}
# What mail carries that the built-in table lacks.
_EXTENSIONS = {"text/calendar": ".ics", "application/ics": ".ics",
               "application/ms-tnef": ".dat", "application/vnd.ms-tnef": ".dat"}


def _name_for(part: Message, content_type: str, content: object) -> str | None:
    """A name for a part that has none: its description, its subject, or its type.

    An agent looking at five files all called attachment.bin cannot tell
    the invoice from the logo (the unnamed part's own words come first).
    """
    maintype, _, subtype = content_type.partition("/")
    extension = _EXTENSIONS.get(content_type) or _TYPES.guess_extension(content_type) or ""
    description = part.get("Content-Description")
    if description:
        text = " ".join(clean_text(decode_words(header_text(description))).split())[:100]
        if text:
            return text if "." in text[-6:] else text + extension
    if content_type == "message/rfc822" and isinstance(content, list) and content:
        subject = content[0].get("Subject")
        text = " ".join(clean_text(decode_words(header_text(subject))).split())[:100] \
            if subject else ""
        return f"{text or 'message'}.eml"
    if maintype == "message":
        return f"{subtype}.txt"  # delivery-status, disposition-notification: text
    if maintype in ("image", "audio", "video"):
        return f"{maintype}{extension or '.bin'}"
    if maintype == "text":
        return f"{_TEXT_STEMS.get(subtype, subtype)}{extension or '.txt'}"
    return f"attachment{extension}" if extension else None


def safe_filename(name: object, content_type: str = "application/octet-stream") -> str:
    """A display name that cannot act as a path, hide its extension, or be empty."""
    text = clean_text(name) if name else ""
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    # Control and format characters (including bidi overrides such as U+202E).
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = text.strip(" .")
    stem = text.split(".", 1)[0].upper()
    if not text or stem in _WINDOWS_RESERVED:
        extension = "eml" if content_type == "message/rfc822" else "bin"
        text = f"attachment.{extension}" if not text else f"_{text}"
    if len(text) > 200:
        base, dot, extension = text.rpartition(".")
        text = (base[:180] + dot + extension[:19]) if dot and len(extension) < 20 else text[:200]
    return text
