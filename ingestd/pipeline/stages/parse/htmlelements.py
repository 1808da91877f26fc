"""HTML's element categories, as its tree building uses them (what ``htmltree`` models).

Which elements are void, which are formatting elements HTML re-opens, which
start tags close which open elements (optional end tags), what bounds the
scope of an end tag, and where SVG and MathML content breaks back out to
HTML. The names follow the HTML standard's tree-construction section.
"""

from __future__ import annotations

import re

from ingestd.pipeline.stages.parse.htmltags import RAW_TEXT, SPACE

# Elements that never have content, and those html5ever ignores when nested
# (several HTML parts of one message are joined, each with its <html><body>).
VOID = frozenset({"area", "base", "basefont", "bgsound", "br", "col", "embed", "frame",
                  "hr", "image", "img", "input", "keygen", "link", "meta", "param",
                  "source", "track", "wbr"})
IGNORED = frozenset({"html", "head", "body"})
# Formatting elements stay "active" after the element around them closes and
# are re-opened at the next text (HTML's "reconstruct the active formatting
# elements"): left open, they are built again inside every later block.
FORMATTING = frozenset({"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small",
                        "strike", "strong", "tt", "u"})
# Elements whose end drops the formatting elements opened inside them.
MARKERS = frozenset({"td", "th", "caption", "applet", "marquee", "object", "template"})
# A start tag closes open elements of these kinds, the way HTML's optional
# end tags work: <li> closes the <li> before it, <tr> the cell and the row
# before it, looking down the stack past inline elements but not past these
# barriers (a list inside a list item keeps that item open).
_CELL = frozenset({"td", "th", "p", "li", "dt", "dd"})
CLOSES = {
    "p": frozenset({"p"}),
    "li": frozenset({"li", "p"}),
    "dt": frozenset({"dt", "dd", "p"}),
    "dd": frozenset({"dt", "dd", "p"}),
    "option": frozenset({"option"}),
    "optgroup": frozenset({"option", "optgroup"}),
    "td": _CELL,
    "th": _CELL,
    "tr": _CELL | {"tr"},
    "tbody": _CELL | {"tr", "tbody", "thead", "tfoot"},
    "thead": _CELL | {"tr", "tbody", "thead", "tfoot"},
    "tfoot": _CELL | {"tr", "tbody", "thead", "tfoot"},
}
BARRIERS = frozenset({"table", "ul", "ol", "dl", "select", "td", "th", "caption", "button",
                      "applet", "marquee", "object", "template", "foreignobject", "desc",
                      "mi", "mo", "mn", "ms", "mtext", "annotation-xml"})
# Block starts: they close an open paragraph, and (unlike inline elements and
# text) do not re-open the active formatting elements.
BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div",
    "dl", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hgroup", "hr", "li", "dd", "dt", "listing", "main", "menu", "nav", "ol",
    "p", "pre", "section", "summary", "table", "ul", "caption", "colgroup", "tbody", "thead",
    "tfoot", "tr", "td", "th",
})
# An end tag closes its element only if none of these lies in between
# (HTML's "has an element in scope"); one that is not closed stays open.
SCOPE = frozenset({"applet", "caption", "html", "table", "td", "th", "marquee", "object",
                   "template", "foreignobject", "desc", "mi", "mo", "mn", "ms", "mtext",
                   "annotation-xml"})
TABLE_PARTS = frozenset({"table", "tbody", "thead", "tfoot", "tr", "td", "th", "caption",
                         "colgroup"})
TABLE_SCOPE = frozenset({"html", "table", "template"})
# Elements an end tag of an inline element cannot close ("special" in HTML).
SPECIAL = BLOCK | BARRIERS | RAW_TEXT | SCOPE
# Inside SVG and MathML every tag is an element of its own, nested as written
# (no optional end tags, no raw text, "/>" closes), until one of these HTML
# tags breaks out. These elements inside them hold HTML again.
FOREIGN = frozenset({"svg", "math"})
BREAKOUT = frozenset({
    "b", "big", "blockquote", "body", "br", "center", "code", "dd", "div", "dl", "dt", "em",
    "embed", "h1", "h2", "h3", "h4", "h5", "h6", "head", "hr", "i", "img", "li", "listing",
    "menu", "meta", "nobr", "ol", "p", "pre", "ruby", "s", "small", "span", "strong",
    "strike", "sub", "sup", "table", "tt", "u", "ul", "var",
})
# <font> breaks out only with one of these attributes.
FONT_BREAKOUT = re.compile(f"(?:^|[{SPACE}/])(?:color|face|size)(?:[{SPACE}/=]|$)", re.I)
INTEGRATION = frozenset({"foreignobject", "desc", "title", "mi", "mo", "mn", "ms", "mtext",
                         "annotation-xml"})
