"""Leaves of the tree: which are the body, which are attachments, and their names.

Attachments come straight from the stdlib tree so their bytes are exact.
Names are display names only: sanitised so they cannot act as a path, hide
their extension, or be empty.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import quopri
import re
import unicodedata
from email.message import Message
from email.utils import collapse_rfc2231_value

from ingestd.config.settings import ProcessingLimits
from ingestd.mailcharsets import body_text, labelled_text
from ingestd.mailtext import clean_text, decode_words, header_text
from ingestd.pipeline.parsed import ParsedAttachment
from ingestd.pipeline.stages.parse.html import html_text
from ingestd.pipeline.stages.parse.inline import content_id, is_inline
from ingestd.pipeline.stages.parse.limits import Leaf, declared_charset, payload
from ingestd.pipeline.stages.parse.rawparts import RawParts
from ingestd.pipeline.stages.parse.transfer import base64_bytes, decoded_payload

BODY_TYPES = ("text/plain", "text/html")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


def bodies(leaves: list[Leaf], defects: list[str]) -> tuple[str, list[str]]:
    """(the plain text, the HTML parts) of the body leaves, decoded and cleaned.

    A part whose charset was missing or wrong adds to ``defects`` how it was read.
    """
    found = [(part, part_text(part, defects)) for part, index in leaves if is_body(part, index)]
    html_parts = [clean_text(t) for part, t in found
                  if t and part.get_content_type() == "text/html"]
    text = "\n".join(clean_text(t) for part, t in found
                     if t and part.get_content_type() == "text/plain")
    return text, html_parts


def attachments(leaves: list[Leaf], defects: list[str],
                limits: ProcessingLimits | None = None,
                source: RawParts | None = None, *,
                has_body: bool | None = None) -> tuple[ParsedAttachment, ...]:
    """The attachments among ``leaves``; what had to be repaired is added to ``defects``.

    ``source`` (the raw message) gives enclosed messages their bytes as sent.
    A TNEF part (Outlook's winmail.dat) is kept, followed by the files it
    carries; these count towards the part limit, and its body counts as the
    message's only when ``has_body`` (whether ``bodies`` found text or HTML;
    worked out here if not given) is false.
    """
    files: list[ParsedAttachment] = []
    room: int | None = None
    for part, index in leaves:
        found = attachment(part, index, defects, source)
        if found is None:
            continue
        files.append(found)
        if found.content_type in TNEF_TYPES or found.filename.lower() == "winmail.dat":
            from ingestd.pipeline.stages.parse.winmail import expanded  # Outlook mail only

            if room is None:
                room = (limits or ProcessingLimits()).max_parts - len(leaves)
            if has_body is None:
                # Once, not per TNEF part: decoding every body again for each
                # of many winmail.dat parts made this quadratic.
                has_body = any_body(*bodies(leaves, []))  # its defects are recorded already
            inside = expanded(found, defects, room=room, want_body=not has_body)
            room -= len(inside)
            files.extend(inside)
    return tuple(files)


TNEF_TYPES = ("application/ms-tnef", "application/vnd.ms-tnef")


def any_body(text: str, html_parts: list[str]) -> bool:
    """Whether ``bodies`` found any text or HTML."""
    return bool(text.strip()) or any(map(str.strip, html_parts))


def part_text(part: Message, defects: list[str] | None = None) -> str:
    """The part's text: its charset as senders mean it, else the fallbacks (``body_text``)."""
    content = decoded_payload(part, defects if defects is not None else [])
    return body_text(content, declared_charset(part), defects)


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


def attachment(part: Message, index: int, defects: list[str],
               source: RawParts | None = None) -> ParsedAttachment | None:
    """The part as an attachment, or None for a body part or an empty broken multipart."""
    content_type = part.get_content_type()
    content = payload(part)
    if content_type in BODY_TYPES and is_body(part, index):
        return None
    if (part.get_content_maintype() == "multipart" and not isinstance(content, list)
            and not str(content or "").strip()):
        return None  # a boundary never found, and no text to keep as a file
    if part.get_content_maintype() == "message" and isinstance(content, list):
        data = _enclosed_bytes(part, content, source, defects)
    else:
        data = decoded_payload(part, defects)
    return ParsedAttachment(
        filename=safe_filename(_filename(part) or _name_for(part, content_type, content),
                               content_type),
        content_type=clean_text(content_type)[:255],
        content=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_id=(cid := content_id(part)),
        inline=is_inline(part, cid, source.in_related if source else lambda _: False),
    )


def _enclosed_bytes(part: Message, messages: list[Message], source: RawParts | None,
                    defects: list[str]) -> bytes:
    """The body of a message/* part as sent, transfer-decoded if the sender encoded it."""
    data = source.body(part) if source is not None else None
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if data is None:
        # Boundaries the walk could not follow: the tree's bytes, re-serialised.
        data = b"".join(m.as_bytes() for m in messages)
        if source is not None:
            _defect(defects, f"{clean_text(part.get_content_type())} part not found in the "
                             "raw message; stored re-serialised")
        if encoding in ("base64", "quoted-printable"):
            data = data.lstrip(b"\r\n")  # as_bytes of a message with no header block
    # RFC 2046 5.2.1 forbids encoding message/rfc822, but senders do it; the
    # stdlib then parsed the encoded text as a message. Keep the decoded bytes.
    if encoding == "quoted-printable":
        return quopri.decodestring(data)  # binascii: keeps the lines' CRLF
    if encoding == "base64":
        return base64_bytes(data, defects, clean_text(part.get_content_type()))
    return data


def _defect(defects: list[str], defect: str) -> None:
    if defect not in defects:
        defects.append(defect)


def _filename(part: Message) -> str | None:
    """The part's filename (or name) parameter as the sender wrote it.

    As ``Message.get_filename``, except that an RFC 2231 value
    (``filename*=gb2312''...``) decodes like an encoded word: with the charset
    its sender meant, and the fallbacks when that fails, never with U+FFFD.
    """
    try:
        value = part.get_param("filename", None, "content-disposition")
        if value is None:
            value = part.get_param("name", None, "content-type")
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, tuple):
        label, _, text = value
        with contextlib.suppress(UnicodeEncodeError):  # else already text
            text = labelled_text(text.encode("latin-1"), label, "filename")
        name = text.strip()
    else:
        name = collapse_rfc2231_value(value).strip()
    # Encoded words are not allowed in parameters (RFC 2047 5), but Outlook
    # and others send them; decoding shows the name the sender saw.
    return decode_words(header_text(name, "filename")) if name else name


# Built-in table only (no /etc/mime.types): the same names on every machine.
_TYPES = mimetypes.MimeTypes(filenames=())
_TEXT_STEMS = {"plain": "text", "html": "text", "calendar": "calendar"}
# What mail carries that the built-in table lacks.
_EXTENSIONS = {"text/calendar": ".ics", "application/ics": ".ics",
               "application/ms-tnef": ".dat", "application/vnd.ms-tnef": ".dat",
               "application/x-excel": ".xls",
               # Not registered types, but common in mail.
               "image/jpg": ".jpg", "image/pjpeg": ".jpg", "audio/mp3": ".mp3",
               "video/avi": ".avi"}
# Whole names mail clients give these parts, so the agent recognises them.
_WHOLE_NAMES = {
    "application/pkcs7-signature": "smime.p7s", "application/x-pkcs7-signature": "smime.p7s",
    "application/pkcs7-mime": "smime.p7m", "application/x-pkcs7-mime": "smime.p7m",
    "application/pgp-signature": "signature.asc", "application/pgp-encrypted": "encrypted.asc",
    "application/pgp-keys": "key.asc",
}
_SUBTYPE_STEM = re.compile(r"^(?:x-|vnd\.)?([a-z0-9][a-z0-9.+-]{0,40})$")


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
    if content_type in _WHOLE_NAMES:
        return _WHOLE_NAMES[content_type]
    if maintype == "multipart":
        # A multipart whose boundary never came: its text is kept as it was sent.
        return f"multipart-{subtype}.txt"
    if extension and content_type != "application/octet-stream":
        return f"attachment{extension}"
    stem = _SUBTYPE_STEM.match(subtype)
    if stem is not None and content_type != "application/octet-stream":
        # A type we have no table entry for still says more than "attachment".
        return f"{stem.group(1)}.bin"
    return None  # application/octet-stream says nothing more: attachment.bin


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
