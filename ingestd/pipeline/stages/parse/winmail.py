"""A TNEF attachment (Outlook's winmail.dat) as the attachments it carries.

``tnef`` reads the stream; here its files become attachments like any
other: names sanitised, types guessed from the names with the same
built-in table, and the limits of the message applied.
"""

from __future__ import annotations

import hashlib
import re

from ingestd.mailtext import clean_text
from ingestd.pipeline.parsed import ParsedAttachment
from ingestd.pipeline.stages.parse.attachments import _TYPES, TNEF_TYPES, safe_filename
from ingestd.pipeline.stages.parse.tnef import NotTnef, read_tnef

_MIME_TAG = re.compile(r"[a-z]+/[a-z0-9][a-z0-9.+_-]{0,100}")


def expanded(tnef: ParsedAttachment, defects: list[str], *, room: int, want_body: bool
             ) -> list[ParsedAttachment]:
    """The files inside ``tnef`` (at most ``room``), and its body when ``want_body``."""
    label = f"TNEF attachment {tnef.filename}"
    try:
        # The files are pieces of the stream and so no larger than it; nor may
        # the body be, which can grow when its RTF is decompressed.
        content = read_tnef(tnef.content, max_files=max(room, 0),
                            max_bytes=len(tnef.content), want_body=want_body)
    except NotTnef:
        if tnef.content_type in TNEF_TYPES:
            defects.append(f"{label} is not TNEF; kept as it is")
        return []
    except Exception as exc:  # hostile bytes must not cost the message; the original stays
        defects.append(f"{label} unreadable ({type(exc).__name__}); kept as it is")
        return []
    defects.extend(f"{label}: {defect}" for defect in content.defects)
    if content.files_left_out:
        defects.append(f"{label}: {content.files_left_out} files over the part limit or "
                       "size budget not expanded; they stay inside it")
    found = []
    for file in content.files:
        kind = (_TYPES.guess_type(file.name, strict=False)[0]
                or ("application/vnd.ms-tnef" if file.embedded_message else None)
                or _mime_type(file.mime_tag) or "application/octet-stream")
        name = file.name or f"attachment{_TYPES.guess_extension(kind) or '.bin'}"
        found.append(_attachment(name, kind, file.data, file.content_id, file.hidden))
    # One body file, the richest: the message has no body of its own to show.
    body = next(((name, kind, data) for name, kind, data in (
        ("body.html", "text/html", content.body_html),
        ("body.rtf", "application/rtf", content.body_rtf),
        ("body.txt", "text/plain", content.body_text.encode() if content.body_text else None),
    ) if data), None)
    if body is not None:
        found.append(_attachment(*body, None, False))
    return found


def _attachment(name: str, kind: str, data: bytes, content_id: str | None, inline: bool
                ) -> ParsedAttachment:
    cid = clean_text(content_id).strip().strip("<>")[:255] if content_id else ""
    return ParsedAttachment(
        filename=safe_filename(name, kind), content_type=kind, content=data,
        sha256=hashlib.sha256(data).hexdigest(), content_id=cid or None, inline=inline,
    )


def _mime_type(tag: str | None) -> str | None:
    """The type Outlook recorded for a file, when it is a well-formed one."""
    tag = (tag or "").strip().lower()
    return tag if _MIME_TAG.fullmatch(tag) else None
