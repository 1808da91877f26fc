"""parse: raw bytes → ``ParsedMessage``, with hard limits in front of the parser.

The stdlib parser (compat32, which mail-parser also uses) builds the tree;
``limits`` checks the header block before it and walks the tree once to
enforce the part and depth limits, ``fields`` reads the header fields
(through mail-parser), ``attachments`` sorts the leaves into body and
attachments, ``html`` sanitises and renders HTML inside the bound that
``htmlshape`` measures, and ``text`` makes any header or body text safe to
store (8-bit header bytes decoded, never kept as surrogate escapes). Nothing
here trusts the message: names are sanitised, charsets decode with
replacement, NUL never survives.
"""

from __future__ import annotations

from ingestd.config.settings import ProcessingLimits
from ingestd.mailtext import clean_text
from ingestd.pipeline.context import MessageContext, Outcome
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse.attachments import (
    attachments,
    bodies,
    forwarded_text,
    safe_filename,
)
from ingestd.pipeline.stages.parse.fields import header_fields
from ingestd.pipeline.stages.parse.html import render, sanitise_html
from ingestd.pipeline.stages.parse.limits import read_tree

__all__ = ["clean_text", "parse", "parse_message", "safe_filename", "sanitise_html"]


def parse_message(raw: bytes, limits: ProcessingLimits) -> ParsedMessage:
    """The parsed message, or ``LimitExceeded`` naming the limit it broke."""
    tree, leaves = read_tree(raw, limits)
    fields = header_fields(tree)
    defects = list(fields.defects)
    text, html_parts = bodies(leaves)
    html = None
    if html_parts:
        rendered = render("\n".join(html_parts), want_text=not text.strip())
        html = rendered.html
        if rendered.defect is not None:
            defects.append(rendered.defect)
        if not text.strip():
            text = rendered.text
    if not text.strip() and html is None:
        text = forwarded_text(leaves)
    return ParsedMessage(
        subject=fields.subject,
        from_address=fields.from_address,
        from_name=fields.from_name,
        sender_doubtful=fields.sender_doubtful,
        to=fields.to,
        cc=fields.cc,
        date=fields.date,
        message_id=fields.message_id,
        in_reply_to=fields.in_reply_to,
        references=fields.references,
        text=text,
        html=html,
        attachments=attachments(leaves),
        defects=tuple(defects),
    )


def parse(ctx: MessageContext) -> Outcome | None:
    """The stage: parse the raw bytes under the configured limits."""
    ctx.parsed = parse_message(ctx.raw, ctx.settings.processing.limits)
    return None
