"""The few header values intake reads cheaply (subject and Message-ID for the log).

Full parsing happens later, in a worker; this must never fail, so any oddity
yields ``None`` rather than an exception.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser

from ingestd.mailbytes import header_block, header_length
from ingestd.mailtext import POLICY, decode_words

# header_length is re-exported: it was defined here before ingestd.mailbytes.
__all__ = ["header_block", "header_length", "summary_headers"]


def summary_headers(raw: bytes) -> tuple[str | None, str | None]:
    """(subject, message_id) decoded for display, or None where absent or unreadable."""
    try:
        # POLICY reads raw 8-bit bytes as UTF-8, else windows-1252 (as processing does).
        headers = BytesHeaderParser(policy=POLICY).parsebytes(header_block(raw))
    except Exception:
        return None, None
    return _decoded(headers.get("Subject")), _message_id(headers.get("Message-ID"))


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; line breaks in a log field only confuse.
    return text.replace("\x00", "").replace("\r", " ").replace("\n", " ").strip()


def _decoded(value: object) -> str | None:
    if value is None:
        return None
    try:
        text = decode_words(str(value))
    except Exception:
        text = str(value)
    text = _clean(text.encode("utf-8", "replace").decode("utf-8"))
    return text[:2000]


def _message_id(value: object) -> str | None:
    if value is None:
        return None
    text = _clean(str(value).encode("utf-8", "replace").decode("utf-8"))
    return text[:998] or None
