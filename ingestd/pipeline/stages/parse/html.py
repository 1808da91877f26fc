"""HTML bodies: sanitised for display (nh3), turned into text (inscriptis).

Both libraries are super-linear on hostile markup, so the work is bounded
before either runs; past the bound the HTML is not kept and the text comes
from a linear tag strip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import inscriptis
import nh3

from ingestd.pipeline.stages.parse.text import clean_text

MAX_HTML_CHARS = 1_000_000
_TAG = re.compile(r"<[^>]{0,10000}>")


@dataclass(frozen=True)
class RenderedHtml:
    html: str | None  # sanitised; None when the source was not rendered
    text: str  # the text of the HTML, when asked for ("" otherwise)
    defect: str | None = None  # why the source was not rendered


def render(source: str, want_text: bool) -> RenderedHtml:
    """Sanitise ``source`` for display and, if ``want_text``, turn it into text."""
    if len(source) > MAX_HTML_CHARS:
        # The sanitiser and the HTML-to-text step are super-linear on hostile
        # markup (deep nesting); past this size, keep the text and drop the HTML.
        text = clean_text(_TAG.sub(" ", source)) if want_text else ""
        return RenderedHtml(None, text, f"HTML body of {len(source)} characters not rendered")
    text = clean_text(inscriptis.get_text(source)) if want_text else ""
    return RenderedHtml(sanitise_html(source), text)


def html_text(source: str) -> str:
    """The text of an HTML document."""
    return clean_text(inscriptis.get_text(source))


def sanitise_html(html: str) -> str:
    """Allow-list sanitising; images only from inline (cid:) parts, no remote loads."""

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src" and not value.lower().startswith("cid:"):
            return None
        return value

    return nh3.clean(html, attribute_filter=keep, url_schemes={"http", "https", "mailto", "cid"})
