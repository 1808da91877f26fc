"""parse: raw bytes → ``ParsedMessage``, with hard limits in front of the parser.

The stdlib parser (compat32, which mail-parser also uses) builds the tree;
``limits`` checks the header block before it and walks the tree once to
enforce the part and depth limits, ``fields`` reads the header fields
(through mail-parser), ``attachments`` sorts the leaves into body and
attachments, ``html`` sanitises and renders HTML inside the bound that
``htmlshape`` measures, and ``text`` makes any header or body text safe to
store (8-bit header bytes decoded, never kept as surrogate escapes). Nothing
here trusts the message: names are sanitised, a missing or wrong charset
falls back to what the message declares elsewhere (``ingestd.mailcharsets``,
a defect each time), NUL never survives.
"""

from __future__ import annotations

import re
from email.message import Message

from ingestd.config.settings import ProcessingLimits
from ingestd.mailcharsets import MessageCharsets, reading
from ingestd.mailtext import clean_text
from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse.attachments import (
    any_body,
    attachments,
    bodies,
    forwarded_text,
    safe_filename,
)
from ingestd.pipeline.stages.parse.envelope import with_envelope_sender
from ingestd.pipeline.stages.parse.fields import header_fields
from ingestd.pipeline.stages.parse.headerfolds import repair_folds
from ingestd.pipeline.stages.parse.html import render, sanitise_html, strip_tags
from ingestd.pipeline.stages.parse.limits import Leaf, read_tree
from ingestd.pipeline.stages.parse.rawparts import RawParts

__all__ = ["clean_text", "parse", "parse_message", "safe_filename", "sanitise_html",
           "with_envelope_sender"]


def parse_message(raw: bytes, limits: ProcessingLimits) -> ParsedMessage:
    """The parsed message, or ``LimitExceeded`` naming the limit it broke."""
    raw, fold_defect = repair_folds(raw, limits.max_header_bytes)
    tree, leaves = read_tree(raw, limits)
    # Every header read from here on (ours and mail-parser's) falls back to
    # the charsets this message declares, and records what it had to read so.
    with reading(tree) as charsets:
        # The raw walk must see the bytes the tree was parsed from (folds repaired).
        return _parsed(tree, leaves, charsets, limits, RawParts(raw, tree),
                       [fold_defect] if fold_defect else [])


def _parsed(tree: Message, leaves: list[Leaf], charsets: MessageCharsets,
            limits: ProcessingLimits, source: RawParts, defects: list[str]) -> ParsedMessage:
    fields = header_fields(tree)
    defects = [*fields.defects, *defects]
    text, html_parts = bodies(leaves, defects)
    has_body = any_body(text, html_parts)
    html = None
    if html_parts:
        html, html_text = _render_each(html_parts, want_text=not text.strip(), defects=defects)
        if not text.strip():
            text = html_text
    if not text.strip() and html is None:
        text = forwarded_text(leaves)
    files = attachments(leaves, defects, limits, source, has_body=has_body)
    defects.extend(d for d in charsets.defects if d not in defects)
    # One line ending in stored text, whatever the parts used (CRLF, CR CR LF, CR).
    text = _LINE_ENDS.sub("\n", text)
    return ParsedMessage(
        subject=fields.subject,
        from_address=fields.from_address,
        from_name=fields.from_name,
        sender_doubtful=fields.sender_doubtful,
        sender_header=fields.sender_header,
        to=fields.to,
        cc=fields.cc,
        reply_to=fields.reply_to,
        date=fields.date,
        message_id=fields.message_id,
        in_reply_to=fields.in_reply_to,
        references=fields.references,
        text=text,
        html=html,
        attachments=files,
        # Defects quote the message (types, names, addresses); stored as text,
        # where PostgreSQL refuses NUL, whichever module wrote them.
        defects=tuple(clean_text(d) for d in defects),
    )


_LINE_ENDS = re.compile(r"\r*\n|\r")


def _render_each(parts: list[str], *, want_text: bool, defects: list[str]
                 ) -> tuple[str | None, str]:
    """(sanitised HTML, text) of several HTML parts, each rendered on its own.

    Joined into one document, everything after the first part's ``</html>``
    would be lost to the text (inscriptis stops there): mail whose body is
    several HTML parts (forwarded, appended) would show only the first.
    """
    htmls, texts = [], []
    for part in parts:
        rendered = render(part, want_text=want_text)
        if rendered.html:
            htmls.append(rendered.html)
        if rendered.defect is not None and rendered.defect not in defects:
            defects.append(rendered.defect)
        piece = rendered.text
        if want_text and not piece.strip():
            # Broken or very deep markup can lay out to nothing; its words are
            # still there between the tags.
            piece = strip_tags(part)
            if piece.strip():
                defects.append("HTML rendered to no text; tags stripped instead")
        if piece.strip():
            texts.append(piece.strip("\n"))
    return ("\n".join(htmls) or None), "\n\n".join(texts)


def parse(ctx: MessageContext) -> Outcome | None:
    """The stage: parse the raw bytes under the configured limits."""
    parsed = parse_message(ctx.raw, ctx.settings.processing.limits)
    ctx.parsed = with_envelope_sender(parsed, ctx.envelope_from)
    return None
