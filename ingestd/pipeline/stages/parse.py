"""parse: raw bytes → ``ParsedMessage``, with hard limits in front of the parser.

The stdlib parser (compat32, which mail-parser also uses) builds the tree;
we walk it once to enforce the limits, then hand it to mail-parser for the
decoded header and body fields. Attachments come straight from the tree so
their bytes are exact. Nothing here trusts the message: names are sanitised,
charsets decode with replacement, NUL never survives.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from ingestd.intake.headers import header_block
from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.parsed import ParsedAttachment, ParsedMessage

_MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


def parse_message(raw: bytes, limits: ProcessingLimits) -> ParsedMessage:
    if len(header_block(raw)) > limits.max_header_bytes:
        raise LimitExceeded("header-bytes")
    try:
        tree = BytesParser(policy=compat32).parsebytes(raw)
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
        self.text_plain: list[str] = []
        self.text_html: list[str] = []
        for part in tree.walk():
            if part.is_multipart() or _is_attachment(part):
                continue
            kind = part.get_content_type()
            if kind in ("text/plain", "text/html"):
                target = self.text_plain if kind == "text/plain" else self.text_html
                target.append(_part_text(part))


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
    except LookupError:
        return payload.decode("utf-8", "replace")


def _check_shape(tree: Message, limits: ProcessingLimits) -> list[Message]:
    """Every leaf part, after checking part count and nesting depth."""
    leaves: list[Message] = []
    count = 0
    stack: list[tuple[Message, int]] = [(tree, 1)]
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > limits.max_parts:
            raise LimitExceeded("parts")
        if depth > limits.max_depth:
            raise LimitExceeded("depth")
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            if part.get_content_type() == "message/rfc822" and _is_attachment(part):
                leaves.append(part)
                continue
            stack.extend((child, depth + 1) for child in reversed(payload))
        else:
            leaves.append(part)
    return leaves


def _build(tree: Message, parsed: Any, leaves: list[Message]) -> ParsedMessage:
    defects = [clean_text(str(d)) for d in parsed.defects_categories or ()]
    from_pairs = list(parsed.from_ or [])
    if len(from_pairs) > 1:
        defects.append("several From addresses; the first is used")
    name, address = from_pairs[0] if from_pairs else ("", "")
    address = clean_text(address).strip().lower() or None
    if address is not None and "@" not in address:
        defects.append(f"From address without @: {address[:100]}")
    html_parts = [clean_text(h) for h in parsed.text_html or ()]
    text = "\n".join(clean_text(t) for t in parsed.text_plain or ())
    if not text.strip() and html_parts:
        text = clean_text(inscriptis.get_text("\n".join(html_parts)))
    html = sanitise_html("\n".join(html_parts)) if html_parts else None
    return ParsedMessage(
        subject=clean_text(parsed.subject or "").replace("\r", " ").replace("\n", " ").strip(),
        from_address=address,
        from_name=clean_text(name).strip() or None,
        to=tuple(clean_text(a).lower() for _, a in parsed.to or () if a),
        cc=tuple(clean_text(a).lower() for _, a in parsed.cc or () if a),
        date=_date(tree.get("Date")),
        message_id=_first_id(tree.get("Message-ID")),
        in_reply_to=_ids(tree.get_all("In-Reply-To") or ()),
        references=_ids(tree.get_all("References") or ()),
        text=text,
        html=html,
        attachments=tuple(a for leaf in leaves if (a := _attachment(leaf)) is not None),
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


def _ids(values: Any) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        for mid in _MESSAGE_ID.findall(clean_text(value)):
            if mid not in found:
                found.append(mid)
    return tuple(found)


def _first_id(value: object) -> str | None:
    if value is None:
        return None
    ids = _ids([value])
    if ids:
        return ids[0]
    text = clean_text(value).strip()
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


def _attachment(part: Message) -> ParsedAttachment | None:
    content_type = part.get_content_type()
    is_body_text = content_type in ("text/plain", "text/html") and not _is_attachment(part)
    if is_body_text or (part.is_multipart() and content_type != "message/rfc822"):
        return None
    if not _is_attachment(part) and content_type.startswith("text/"):
        return None
    if content_type == "message/rfc822":
        inner = part.get_payload()
        content = inner[0].as_bytes() if isinstance(inner, list) and inner else b""
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
