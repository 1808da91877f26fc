"""A cheap, linear measure of how deep and how big an HTML document is.

nh3 (html5ever) walks the stack of open elements for many tags, so its time
grows with elements times depth; lxml (under inscriptis) checks every attribute
of a tag against the others; inscriptis lays out every table inside every
table around it. ``measure`` estimates those numbers from the tags alone: the
tokenizer of htmltags.py (where HTML ends a tag, a quoted value, a comment or a
script, so markup cannot hide elements from it) feeds a model of HTML's tree
building, stopped as soon as a limit is passed. So hostile
input costs no more than ordinary mail of the same size. It is an estimate,
not a parser: where it differs from HTML's tree building it errs on the deep
side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingestd.pipeline.stages.parse.htmltags import RAW_TEXT, SPACE, tags

# Elements that never have content, and those html5ever ignores when nested
# (several HTML parts of one message are joined, each with its <html><body>).
_VOID = frozenset({"area", "base", "basefont", "bgsound", "br", "col", "embed", "frame",
                   "hr", "image", "img", "input", "keygen", "link", "meta", "param",
                   "source", "track", "wbr"})
_IGNORED = frozenset({"html", "head", "body"})
# Formatting elements stay "active" after the element around them closes and
# are re-opened at the next text (HTML's "reconstruct the active formatting
# elements"): left open, they are built again inside every later block.
_FORMATTING = frozenset({"a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small",
                         "strike", "strong", "tt", "u"})
# Elements whose end drops the formatting elements opened inside them.
_MARKERS = frozenset({"td", "th", "caption", "applet", "marquee", "object", "template"})
# A start tag closes open elements of these kinds, the way HTML's optional
# end tags work: <li> closes the <li> before it, <tr> the cell and the row
# before it, looking down the stack past inline elements but not past these
# barriers (a list inside a list item keeps that item open).
_CELL = frozenset({"td", "th", "p", "li", "dt", "dd"})
_CLOSES = {
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
_BARRIERS = frozenset({"table", "ul", "ol", "dl", "select", "td", "th", "caption", "button",
                       "applet", "marquee", "object", "template", "foreignobject", "desc",
                       "mi", "mo", "mn", "ms", "mtext", "annotation-xml"})
# Block starts: they close an open paragraph, and (unlike inline elements and
# text) do not re-open the active formatting elements.
_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div",
    "dl", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hgroup", "hr", "li", "dd", "dt", "listing", "main", "menu", "nav", "ol",
    "p", "pre", "section", "summary", "table", "ul", "caption", "colgroup", "tbody", "thead",
    "tfoot", "tr", "td", "th",
})
# An end tag closes its element only if none of these lies in between
# (HTML's "has an element in scope"); one that is not closed stays open.
_SCOPE = frozenset({"applet", "caption", "html", "table", "td", "th", "marquee", "object",
                    "template", "foreignobject", "desc", "mi", "mo", "mn", "ms", "mtext",
                    "annotation-xml"})
_TABLE_PARTS = frozenset({"table", "tbody", "thead", "tfoot", "tr", "td", "th", "caption",
                          "colgroup"})
_TABLE_SCOPE = frozenset({"html", "table", "template"})
# Elements an end tag of an inline element cannot close ("special" in HTML).
_SPECIAL = _BLOCK | _BARRIERS | RAW_TEXT | _SCOPE
# Inside SVG and MathML every tag is an element of its own, nested as written
# (no optional end tags, no raw text, "/>" closes), until one of these HTML
# tags breaks out. These elements inside them hold HTML again.
_FOREIGN = frozenset({"svg", "math"})
_BREAKOUT = frozenset({
    "b", "big", "blockquote", "body", "br", "center", "code", "dd", "div", "dl", "dt", "em",
    "embed", "h1", "h2", "h3", "h4", "h5", "h6", "head", "hr", "i", "img", "li", "listing",
    "menu", "meta", "nobr", "ol", "p", "pre", "ruby", "s", "small", "span", "strong",
    "strike", "sub", "sup", "table", "tt", "u", "ul", "var",
})
# <font> breaks out only with one of these attributes.
_FONT_BREAKOUT = re.compile(f"(?:^|[{SPACE}/])(?:color|face|size)(?:[{SPACE}/=]|$)", re.I)
_INTEGRATION = frozenset({"foreignobject", "desc", "title", "mi", "mo", "mn", "ms", "mtext",
                          "annotation-xml"})
# inscriptis spends on one table about what it spends on three other elements.
_TABLE_WEIGHT = 3
# HTML keeps at most three identical formatting elements active (the
# "Noah's Ark" clause); the rest stay open but are not re-opened.
_NOAHS_ARK = 3


@dataclass(frozen=True)
class HtmlLimits:
    depth: int  # open elements at once
    elements: int  # elements built, counting formatting elements HTML re-opens
    attributes: int  # attributes in one tag
    tables: int  # tables open inside one another
    copied: int  # characters of attributes copied into re-opened formatting elements


@dataclass(frozen=True)
class HtmlShape:
    """What ``measure`` saw; it stops counting one past a limit."""

    depth: int
    elements: int
    attributes: int
    tables: int
    copied: int

    def over(self, limits: HtmlLimits) -> str | None:
        """Which limit this shape breaks, as a defect text, or None."""
        if self.depth > limits.depth:
            return f"nesting depth over {limits.depth}"
        if self.tables > limits.tables:
            return f"tables nested over {limits.tables} deep"
        if self.elements > limits.elements:
            return f"over {limits.elements} elements"
        if self.attributes > limits.attributes:
            return f"a tag with over {limits.attributes} attributes"
        if self.copied > limits.copied:
            return f"over {limits.copied} characters of re-opened formatting"
        return None


def measure(html: str, limits: HtmlLimits) -> HtmlShape:
    """Depth, elements, widest tag and table nesting of ``html``, until a limit is passed."""
    tree = _Tree()
    attributes = 0
    # Comments and end tags cost a little each too: budget every token.
    for tokens, (kind, name, count, rest, after_text) in enumerate(
            tags(html, limits.attributes, tree.raw_text_allowed), 1):
        if tokens > 3 * limits.elements:
            tree.elements = limits.elements + 1
            break
        attributes = max(attributes, count)
        if after_text:
            tree.reconstruct()
        if kind == "start" and name not in _IGNORED:
            tree.start(name, rest)
        elif kind == "end" and name not in _IGNORED:
            tree.end(name)
        if (tree.depth > limits.depth or tree.elements > limits.elements
                or attributes > limits.attributes or tree.tables > limits.tables
                or tree.copied > limits.copied):
            break
    return HtmlShape(tree.depth, tree.elements, attributes, tree.tables, tree.copied)


class _Open:
    """An open element; for a formatting element, also its entry in the active list."""

    __slots__ = ("marker_at", "name", "open", "rest")

    def __init__(self, name: str, rest: str, marker_at: int) -> None:
        self.name = name
        self.rest = rest  # attribute text: identical formatting elements are one kind
        self.marker_at = marker_at  # for a marker: where its active formatting begins
        self.open = True  # on the stack of open elements


class _Tree:
    """HTML's stack of open elements and list of active formatting elements, roughly."""

    def __init__(self) -> None:
        self.stack: list[_Open] = []
        self.formatting: list[_Open] = []  # active formatting elements, oldest first
        self.depth = self.elements = self.tables = 0
        self.foreign_start = False  # the last start tag opened an SVG or MathML element
        self.form = False  # HTML's form element pointer: a form is open
        # Each re-opened element carries a copy of its attributes into the
        # output: a long attribute re-opened in every block multiplies.
        self.copied = 0

    def raw_text_allowed(self) -> bool:
        """Whether the <script>, <style> ... just opened holds text: not in SVG or MathML."""
        return not self.foreign_start

    def _foreign(self) -> int | None:
        """Where the SVG or MathML element around the current node is, if it is foreign."""
        for index in range(len(self.stack) - 1, -1, -1):
            name = self.stack[index].name
            if name in _INTEGRATION:
                return None
            if name in _FOREIGN:
                return index
        return None

    def start(self, name: str, rest: str) -> None:
        # Every start tag counts, even one HTML drops: lxml (under inscriptis)
        # builds an element for it. A table costs inscriptis a layout of its own.
        self.elements += _TABLE_WEIGHT if name == "table" else 1
        foreign = self._foreign()
        breakout = name in _BREAKOUT or (name == "font" and _FONT_BREAKOUT.search(rest))
        self.foreign_start = foreign is not None and not breakout
        if foreign is not None:
            if not breakout:
                if not rest.rstrip().endswith("/"):
                    self.stack.append(_Open(name, rest, len(self.formatting)))
                    self.depth = max(self.depth, len(self.stack))
                return
            while foreign is not None:  # back to HTML: the foreign elements close
                self._pop_to(foreign)
                foreign = self._foreign()
        if name in _TABLE_PARTS and name != "table" and not self._open("table"):
            return  # a cell or row outside any table is dropped
        if name == "form":
            if self.form:
                return  # a form inside a form is dropped
            self.form = True
        if name in ("a", "nobr"):
            # A second <a> closes the first (before the others are re-opened).
            for element in reversed(self.formatting[self._scope():]):
                if element.name == name:
                    self.end(name)
                    break
        if name not in _BLOCK:
            self.reconstruct()
        if name in _VOID:
            return
        if name in _FORMATTING:
            self._noahs_ark(name, rest)
        else:
            self._implied_ends(name)
            if name in ("td", "th", "tr"):
                self._implied_rows(name)
        element = _Open(name, rest, len(self.formatting))
        self.stack.append(element)
        if name in _FORMATTING:
            self.formatting.append(element)
        elif name == "table":
            self.tables = max(self.tables, sum(1 for e in self.stack if e.name == "table"))
        self.depth = max(self.depth, len(self.stack))

    def end(self, name: str) -> None:
        foreign = self._foreign()
        if foreign is not None:
            if name in ("br", "p"):
                self.elements += 1  # an element inserted where we are; nothing closes
                return
            for index in range(len(self.stack) - 1, foreign - 1, -1):
                if self.stack[index].name == name:
                    self._pop_to(index)
                    return
        if name == "br":
            self.start("br", "")  # HTML reads </br> as <br>
            return
        if name == "form":
            # Only the form element itself closes; what is open inside it stays open.
            self.form = False
            for index in range(len(self.stack) - 1, -1, -1):
                if self.stack[index].name == "form":
                    self.stack[index].open = False
                    del self.stack[index]
                    return
                if self.stack[index].name in _SCOPE:
                    return
            return
        if name in _FORMATTING and self._end_formatting(name):
            return
        if name in _TABLE_PARTS:
            boundary = _TABLE_SCOPE
        elif name in _SPECIAL:
            boundary = _SCOPE | {"ul", "ol"} if name == "li" else _SCOPE | {"button"}
        else:
            boundary = _SPECIAL
        for index in range(len(self.stack) - 1, -1, -1):
            below = self.stack[index].name
            if below == name:
                self._pop_to(index)
                return
            if below in boundary:
                break  # not in scope: the end tag is ignored
        if name == "p":
            self.elements += 1  # HTML makes an empty paragraph for a </p> it cannot match

    def _end_formatting(self, name: str) -> bool:
        """HTML's adoption agency, roughly; False if ``name`` is not active."""
        for element in reversed(self.formatting[self._scope():]):
            if element.name != name:
                continue
            if not element.open:
                self.formatting.remove(element)
                return True
            index = self.stack.index(element)
            above = self.stack[index + 1:]
            if any(e.name in _SCOPE for e in above):
                return True  # not in scope: ignored, and it stays active
            block = next((i for i, e in enumerate(above, index + 1) if e.name in _SPECIAL), None)
            if block is None:
                self.formatting.remove(element)
                self._pop_to(index)  # close it and what is inside
                return True
            # A block inside it stays open; a copy of the element moves inside
            # that block (around the block's content) and stays active.
            copy = _Open(element.name, element.rest, element.marker_at)
            self.formatting[self.formatting.index(element)] = copy
            self.stack.insert(block + 1, copy)
            del self.stack[index]
            element.open = False
            self.elements += 1
            self.copied += len(element.rest)
            return True
        return False

    def reconstruct(self) -> None:
        """Open again the active formatting elements that were closed (before text)."""
        for position in range(self._scope(), len(self.formatting)):
            element = self.formatting[position]
            if not element.open:
                again = _Open(element.name, element.rest, element.marker_at)
                self.formatting[position] = again
                self.stack.append(again)
                self.elements += 1
                self.copied += len(element.rest)
        self.depth = max(self.depth, len(self.stack))

    def _open(self, name: str) -> bool:
        return any(e.name == name for e in self.stack)

    def _scope(self) -> int:
        """Where the active formatting elements of the innermost open marker begin."""
        for element in reversed(self.stack):
            if element.name in _MARKERS:
                return element.marker_at
        return 0

    def _noahs_ark(self, name: str, rest: str) -> None:
        same = [e for e in self.formatting[self._scope():] if e.name == name and e.rest == rest]
        if len(same) >= _NOAHS_ARK:
            self.formatting.remove(same[0])  # no longer active; still open

    def _implied_ends(self, name: str) -> None:
        # Tables do not close a paragraph: mail has no doctype (quirks mode).
        paragraph = name in _BLOCK and name != "table"
        closes = _CLOSES.get(name, _CLOSES["p"] if paragraph else frozenset())
        index = len(self.stack) - 1
        while index >= 0 and closes:
            below = self.stack[index].name
            if below in closes:
                self._pop_to(index)
            elif (below in _BARRIERS or name in ("option", "optgroup")
                  or (name in ("li", "dt", "dd") and below in _SPECIAL
                      and below not in ("address", "div", "p"))):
                return
            index -= 1

    def _implied_rows(self, name: str) -> None:
        """The <tbody> and <tr> HTML adds around a row or cell written without them."""
        nearest = next((e.name for e in reversed(self.stack) if e.name in _TABLE_PARTS), None)
        implied = ["tbody"] if nearest == "table" else []
        if name != "tr" and nearest in ("table", "tbody", "thead", "tfoot"):
            implied.append("tr")
        for part in implied:
            self.stack.append(_Open(part, "", len(self.formatting)))
            self.elements += 1

    def _pop_to(self, index: int) -> None:
        """Close the open elements from ``index`` up.

        The end of a marker (a table cell) drops the formatting opened inside
        it. Formatting elements closed with any other element stay active and
        HTML builds them again at the next text or inline element.
        """
        closed = self.stack[index:]
        del self.stack[index:]
        for element in closed:
            element.open = False
        for element in closed:
            if element.name in _MARKERS:
                del self.formatting[element.marker_at:]
                break
