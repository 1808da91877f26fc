"""HTML bodies: sanitised for display (nh3), turned into text (inscriptis).

Both libraries are super-linear on hostile markup: nh3 on deep nesting and on
formatting elements left open, inscriptis on tags with many attributes and on
tables inside tables. A message of 500 KB of nested <div> kept nh3 busy for
two minutes, past the worker's timeout, on every retry. So the work is bounded
first, by a cheap linear measure (``htmlshape``); past the bound the HTML is
not kept at all (unsanitised HTML is never stored for display), the text
comes from a linear tag strip, and the message records why.
"""

from __future__ import annotations

import html as stdlib_html
import re
from dataclasses import dataclass

import inscriptis
import nh3

from ingestd.mailtext import clean_text
from ingestd.pipeline.stages.parse.htmlshape import HtmlLimits, measure

# Past this size nothing is measured or rendered at all.
MAX_HTML_CHARS = 1_000_000
# Measured 2026-12-04 (nh3 0.3.8, inscriptis 2.7.6): real mail in the corpora
# (221 HTML bodies, 169 HTML files) reaches depth 45, 4,085 elements, 74
# attributes in a tag, tables 7 deep; the worst hostile shapes found that stay
# just inside these limits render in under 0.6 s (nh3 and inscriptis together).
# tests/test_parse_html.py holds those shapes and the corpus check.
HTML_LIMITS = HtmlLimits(
    # nh3's time grows with elements x depth; 150 leaves newsletters and long
    # reply chains (each quoting the last in one more block) room to spare.
    depth=150,
    # inscriptis costs 10-30 microseconds an element: 20,000 is under 0.6 s.
    elements=20_000,
    # lxml checks each attribute of a tag against the others (quadratic).
    attributes=300,
    # inscriptis lays out a table's text once for every table around it.
    tables=20,
    # Formatting re-opened in every block copies its attributes each time:
    # 80 KB of input can become 100 MB of output.
    copied=1_000_000,
)

# The tag strip: only possessive repeats and searches that stop at the next
# "<", so no input makes it go back over text it has passed. Comments and
# script/style content go; unterminated ones run to the end, as in HTML.
_INVISIBLE = re.compile(
    r"<!--.*?(?:-->|\Z)|<(script|style)\b[^<>]*+>.*?(?:</\1[^<>]*+>|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_BREAK = re.compile(
    r"<(?=/?[A-Za-z])/?(?:address|article|blockquote|br|center|dd|div|dl|dt|footer|form|h[1-6]|header|hr"
    r"|li|ol|p|pre|section|table|tr|ul)\b[^<>]*+>?",
    re.IGNORECASE,
)
_TAG = re.compile(r"<[A-Za-z/!?][^<>]*+>?")
_SPACES = re.compile(r"[^\S\n]++")
_BLANK_LINES = re.compile(r"(?: ?\n ?){3,}+")


@dataclass(frozen=True)
class RenderedHtml:
    html: str | None  # sanitised; None when the source was not rendered
    text: str  # the text of the HTML, when asked for ("" otherwise)
    defect: str | None = None  # why the source was not rendered


def render(source: str, want_text: bool) -> RenderedHtml:
    """Sanitise ``source`` for display and, if ``want_text``, turn it into text."""
    reason = _too_costly(source)
    if reason is not None:
        return RenderedHtml(None, strip_tags(source) if want_text else "", reason)
    text = clean_text(inscriptis.get_text(source)) if want_text else ""
    return RenderedHtml(sanitise_html(source), text)


def html_text(source: str) -> str:
    """The text of an HTML document: laid out by inscriptis, or stripped if too costly."""
    if _too_costly(source) is not None:
        return strip_tags(source)
    return clean_text(inscriptis.get_text(source))


def _too_costly(source: str) -> str | None:
    """Why rendering ``source`` could take too long, or None."""
    if len(source) > MAX_HTML_CHARS:
        return f"HTML body of {len(source)} characters not rendered"
    reason = measure(source, HTML_LIMITS).over(HTML_LIMITS)
    return None if reason is None else f"HTML body not rendered: {reason}"


def strip_tags(source: str) -> str:
    """The text of HTML in linear time: tags removed, entities decoded, blocks on lines."""
    text = _INVISIBLE.sub("", source)
    text = _BREAK.sub("\n", text)
    text = _TAG.sub("", text)
    text = stdlib_html.unescape(text)
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return clean_text(text).strip()


def sanitise_html(html: str) -> str:
    """Allow-list sanitising; images only from inline (cid:) parts, no remote loads."""

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src" and not value.lower().startswith("cid:"):
            return None
        return value

    return nh3.clean(html, attribute_filter=keep, url_schemes={"http", "https", "mailto", "cid"})
