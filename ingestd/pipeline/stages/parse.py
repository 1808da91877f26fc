"""parse: raw bytes → ``ParsedMessage``, with hard limits in front of the parser.

The stdlib parser (compat32, which mail-parser also uses) builds the tree;
we walk it once to enforce the limits, then hand it to mail-parser for the
decoded header and body fields. Attachments come straight from the tree so
their bytes are exact. Nothing here trusts the message: names are sanitised,
charsets decode with replacement, NUL never survives.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import quopri
import re
import unicodedata
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

import inscriptis
import mailparser
import nh3

from ingestd.config.settings import ProcessingLimits
from ingestd.errors import LimitExceeded
from ingestd.intake.headers import header_length
from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.parsed import ParsedAttachment, ParsedMessage

MAX_HTML_CHARS = 1_000_000
_TAG = re.compile(r"<[^>]{0,10000}>")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LOOSE_BOUNDARY = re.compile(r'\bboundary\s*=\s*(?:"([^"]+)"|([^\s;]+))', re.IGNORECASE)
_BODY_TYPES = ("text/plain", "text/html")


class _LenientMessage(Message):
    """compat32 Message that reads two boundary faults the way mail clients do."""

    def get_content_type(self) -> str:
        # "multipart/mixed boundary=x" (the ';' missing): the type is the first token.
        kind = super().get_content_type()
        return kind.split()[0] if kind.split() else kind

    def get_boundary(self, failobj: Any = None) -> Any:
        missing = object()
        boundary = super().get_boundary(missing)
        if boundary is missing:
            found = _LOOSE_BOUNDARY.search(str(self.get("content-type", "")))
            if found is None:
                return failobj
            boundary = found.group(1) or found.group(2)
        # A quoted boundary folded over two lines (RFC 5322 2.2.3): unfold it.
        return _FOLD.sub("", str(boundary))


def parse_message(raw: bytes, limits: ProcessingLimits) -> ParsedMessage:
    if header_length(raw, limits.max_header_bytes) > limits.max_header_bytes:
        raise LimitExceeded("header-bytes")
    try:
        tree = BytesParser(_class=_LenientMessage, policy=compat32).parsebytes(raw)
    except RecursionError as exc:
        raise LimitExceeded("depth") from exc
    parts = _check_shape(tree, limits)
    try:
        parsed: Any = mailparser.MailParser(tree)
    except RecursionError as exc:
        raise LimitExceeded("depth") from exc
    except Exception as exc:
        # mail-parser trips over some malformed structures the stdlib tree
        # holds fine; read the fields from the tree ourselves rather than
        # quarantine a message that is readable.
        parsed = _StdlibFields(tree, f"mail-parser failed: {type(exc).__name__}")
    return _build(tree, parsed, parts)


class _StdlibFields:
    """The fields ``_build`` reads from mail-parser, taken from the stdlib tree instead."""

    def __init__(self, tree: Message, defect: str) -> None:
        self.defects_categories = [defect, *(type(d).__name__ for d in tree.defects)]
        self.subject = _decoded_header(tree.get("Subject"))
        self.from_ = _addresses(tree.get_all("From") or ())
        self.to = _addresses(tree.get_all("To") or ())
        self.cc = _addresses(tree.get_all("Cc") or ())


def _decoded_header(value: object) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:
        return str(value)


def _addresses(values: Any) -> list[tuple[str, str]]:
    return [(_decoded_header(name), address)
            for name, address in getaddresses([str(v) for v in values])]


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except (LookupError, UnicodeError, ValueError):
        # Unknown charsets, and codecs such as idna or punycode that are not text
        # encodings and fail whatever the error handler.
        return payload.decode("utf-8", "replace")


_Leaf = tuple[Message, int]  # the part, and its index among its parent's parts


def _check_shape(tree: Message, limits: ProcessingLimits) -> list[_Leaf]:
    """The parts of this message, after checking part count and nesting depth.

    A message/* part (an attached or forwarded message, a digest entry, a
    bounce's copy of the original) is one part: what is inside belongs to that
    message, not to this one (RFC 8621 4.1.4), so the leaves stop there. The
    limits still count what is inside: an enclosed message is no cheaper to
    store and show than the same parts at the top.
    """
    leaves: list[_Leaf] = []
    count = 0
    # (part, depth, index among siblings, whether it is one of this message's leaves)
    stack: list[tuple[Message, int, int, bool]] = [(tree, 1, 0, True)]
    while stack:
        part, depth, index, own = stack.pop()
        count += 1
        if count > limits.max_parts:
            raise LimitExceeded("parts")
        if depth > limits.max_depth:
            raise LimitExceeded("depth")
        _strip_transfer_encoding(part)
        payload = _payload(part)
        enclosed = part.get_content_maintype() == "message"
        if own and (not isinstance(payload, list) or enclosed):
            leaves.append((part, index))
        if isinstance(payload, list):
            inside = own and not enclosed
            stack.extend((child, depth + 1, i, inside)
                         for i, child in reversed(list(enumerate(payload))))
    return leaves


def _strip_transfer_encoding(part: Message) -> None:
    """ "base64 " decodes as base64: the stdlib compares the value unstripped."""
    value = part.get("Content-Transfer-Encoding")
    if value is not None and str(value) != str(value).strip():
        part.replace_header("Content-Transfer-Encoding", str(value).strip())


def _build(tree: Message, parsed: Any, leaves: list[_Leaf]) -> ParsedMessage:
    defects = [clean_text(str(d)) for d in parsed.defects_categories or ()]
    from_pairs = list(parsed.from_ or [])
    if len(from_pairs) > 1:
        defects.append("several From addresses; the first is used")
    name, address = from_pairs[0] if from_pairs else ("", "")
    address = clean_text(address).strip().lower() or None
    if address is not None and "@" not in address:
        defects.append(f"From address without @: {address[:100]}")
    if address is not None and len(address) > 254:
        # RFC 5321 caps a path at 256 octets; nothing this long names a real sender.
        defects.append(f"From address of {len(address)} characters ignored")
        address = None
    bodies = [(part, _part_text(part)) for part, index in leaves if _is_body(part, index)]
    html_parts = [clean_text(t) for part, t in bodies
                  if t and part.get_content_type() == "text/html"]
    text = "\n".join(clean_text(t) for part, t in bodies
                     if t and part.get_content_type() == "text/plain")
    html_source = "\n".join(html_parts)
    if len(html_source) > MAX_HTML_CHARS:
        # The sanitiser and the HTML-to-text step are super-linear on hostile
        # markup (deep nesting); past this size, keep the text and drop the HTML.
        defects.append(f"HTML body of {len(html_source)} characters not rendered")
        if not text.strip():
            text = clean_text(_TAG.sub(" ", html_source))
        html_parts, html_source = [], ""
    if not text.strip() and html_parts:
        text = clean_text(inscriptis.get_text(html_source))
    if not text.strip() and not html_parts:
        text = _forwarded_text(leaves)
    html = sanitise_html(html_source) if html_parts else None
    return ParsedMessage(
        subject=clean_text(parsed.subject or "").replace("\r", " ").replace("\n", " ").strip(),
        from_address=address,
        from_name=clean_text(name).strip() or None,
        to=tuple(clean_text(a).lower() for _, a in parsed.to or () if a),
        cc=tuple(clean_text(a).lower() for _, a in parsed.cc or () if a),
        date=_date(tree.get("Date")),
        message_id=_first_id(next(iter(_raw_header(tree, "message-id")), None)),
        in_reply_to=_ids(_raw_header(tree, "in-reply-to")),
        references=_ids(_raw_header(tree, "references")),
        text=text,
        html=html,
        attachments=tuple(a for part, i in leaves if (a := _attachment(part, i)) is not None),
        defects=tuple(defects),
    )


def clean_text(value: object) -> str:
    """Text safe for any database: valid UTF-8, no NUL."""
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def sanitise_html(html: str) -> str:
    """Allow-list sanitising; images only from inline (cid:) parts, no remote loads."""

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src" and not value.lower().startswith("cid:"):
            return None
        return value

    return nh3.clean(html, attribute_filter=keep, url_schemes={"http", "https", "mailto", "cid"})


def _payload(part: Message) -> Any:
    """The payload, without the charset decoding that fails for codecs like idna."""
    try:
        return part.get_payload()
    except (LookupError, UnicodeError, ValueError):
        return part.get_payload(decode=True) or b""


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


def _date(value: object) -> Any:
    if value is None:
        return None
    try:
        return parsedate_to_datetime(clean_text(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _is_attachment(part: Message) -> bool:
    try:
        disposition = (part.get_content_disposition() or "").lower()
        filename = part.get_filename()
    except Exception:
        return True
    return disposition == "attachment" or bool(filename)


def _forwarded_text(leaves: list[_Leaf]) -> str:
    """The text of the first enclosed message, for mail that is nothing but a forward.

    Enclosed messages are attachments, but an agent must still see something
    of a message whose only content is one.
    """
    for part, _ in leaves:
        payload = _payload(part)
        if part.get_content_type() != "message/rfc822" or not isinstance(payload, list):
            continue
        inner = [p for p in payload[0].walk() if not p.is_multipart()] if payload else []
        for kind in _BODY_TYPES:
            for piece in inner:
                if piece.get_content_type() == kind and _is_body(piece, 0):
                    text = _part_text(piece)
                    return clean_text(inscriptis.get_text(text) if kind == "text/html" else text)
    return ""


def _is_body(part: Message, index: int) -> bool:
    """text/plain or text/html that is not an attachment (RFC 8621 4.1.4).

    A named text part is a file the sender attached, unless it is the first
    part of its multipart (some mailers name the body itself).
    """
    if part.get_content_type() not in _BODY_TYPES:
        return False
    try:
        disposition = (part.get_content_disposition() or "").lower()
        named = bool(part.get_filename())
    except Exception:
        return False
    return disposition != "attachment" and (not named or index == 0)


def _attachment(part: Message, index: int) -> ParsedAttachment | None:
    content_type = part.get_content_type()
    payload = _payload(part)
    if content_type in _BODY_TYPES and _is_body(part, index):
        return None
    if (part.get_content_maintype() == "multipart" and not isinstance(payload, list)
            and not str(payload or "").strip()):
        return None  # a boundary never found, and no text to keep as a file
    if part.get_content_maintype() == "message" and isinstance(payload, list):
        # message/delivery-status holds several header blocks; the others one message.
        content = b"".join(m.as_bytes() for m in payload)
        encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        if encoding in ("base64", "quoted-printable") and payload:
            # RFC 2046 5.2.1 forbids encoding message/rfc822, but senders do it; the
            # stdlib then parsed the encoded text as a message. Keep the decoded bytes.
            with contextlib.suppress(binascii.Error, ValueError):
                encoded = content.lstrip(b"\r\n")
                content = (base64.b64decode(encoded) if encoding == "base64"
                           else quopri.decodestring(encoded))
    else:
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
    return ParsedAttachment(
        filename=safe_filename(_filename(part), content_type),
        content_type=clean_text(content_type)[:255],
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
    )


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    if name and "=?" in name:
        # Encoded words are not allowed in parameters (RFC 2047 5), but Outlook
        # and others send them; decoding shows the name the sender saw.
        with contextlib.suppress(Exception):
            name = str(make_header(decode_header(name)))
    return name


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


def parse(ctx: MessageContext) -> Outcome | None:
    """The stage: parse the raw bytes under the configured limits."""
    ctx.parsed = parse_message(ctx.raw, ctx.settings.processing.limits)
    return None
