"""A cheap, linear measure of how deep and how big an HTML document is.

nh3 (html5ever) walks the stack of open elements for many tags, so its time
grows with elements times depth; lxml (under inscriptis) checks every attribute
of a tag against the others; inscriptis lays out every table inside every
table around it. ``measure`` estimates those numbers from the tags alone: a
tokenizer that follows HTML's rules for where a tag, a quoted attribute value,
a comment or a script ends (so markup cannot hide elements from it), made of
anchored possessive patterns and searches that only move forward, and a model
of HTML's tree building that it stops as soon as a limit is passed. So hostile
input costs no more than ordinary mail of the same size. It is an estimate,
not a parser: where it differs from HTML's tree building it errs on the deep
side.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_SPACE = "\t\n\f\r "
_TAG_START = re.compile(r"<(?:[!?]|/?[A-Za-z])")  # any other "<" is text
_NAME = re.compile(f"[^{_SPACE}/>]*+")
_BETWEEN = re.compile(f"[{_SPACE}/]*+")
_ATTRIBUTE = re.compile(f"[^{_SPACE}/>][^{_SPACE}/>=]*+[{_SPACE}]*+")
_EQUALS = re.compile(f"=[{_SPACE}]*+")
_UNQUOTED = re.compile(f"[^{_SPACE}>]*+")
_COMMENT_END = re.compile(r"--!?>")
# Elements whose content is text, not markup, up to their own end tag.
_RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                       "noframes", "noscript"})
_RAW_END = {name: re.compile(f"</{name}(?=[{_SPACE}/>])", re.IGNORECASE) for name in _RAW_TEXT}

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
                       "applet", "marquee", "object", "template", "svg", "math"})
# Block starts: they close an open paragraph, and (unlike inline elements and
# text) do not re-open the active formatting elements.
_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div",
    "dl", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hgroup", "hr", "li", "dd", "dt", "listing", "main", "menu", "nav", "ol",
    "p", "pre", "section", "summary", "table", "ul", "caption", "colgroup", "tbody", "thead",
    "tfoot", "tr", "td", "th",
})
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
            _tags(html, limits.attributes), 1):
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
        # Each re-opened element carries a copy of its attributes into the
        # output: a long attribute re-opened in every block multiplies.
        self.copied = 0

    def start(self, name: str, rest: str) -> None:
        self.elements += 1
        if name not in _BLOCK:
            self.reconstruct()
        if name in _VOID:
            return
        if name in _FORMATTING:
            self._start_formatting(name, rest)
        else:
            self._implied_ends(name)
        element = _Open(name, rest, len(self.formatting))
        self.stack.append(element)
        if name in _FORMATTING:
            self.formatting.append(element)
        elif name == "table":
            self.tables = max(self.tables, sum(1 for e in self.stack if e.name == "table"))
        self.depth = max(self.depth, len(self.stack))

    def end(self, name: str) -> None:
        if name in _FORMATTING:
            for element in reversed(self.formatting[self._scope():]):
                if element.name == name:
                    # The adoption agency, in its simple form: close it and what is inside.
                    self.formatting.remove(element)
                    if element.open:
                        self._pop_to(self.stack.index(element))
                    return
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index].name == name:
                self._pop_to(index)
                return

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

    def _scope(self) -> int:
        """Where the active formatting elements of the innermost open marker begin."""
        for element in reversed(self.stack):
            if element.name in _MARKERS:
                return element.marker_at
        return 0

    def _start_formatting(self, name: str, rest: str) -> None:
        scope = self._scope()
        if name in ("a", "nobr"):
            # A second <a> closes the first.
            for element in reversed(self.formatting[scope:]):
                if element.name == name:
                    self.end(name)
                    break
        same = [e for e in self.formatting[scope:] if e.name == name and e.rest == rest]
        if len(same) >= _NOAHS_ARK:
            self.formatting.remove(same[0])

    def _implied_ends(self, name: str) -> None:
        closes = _CLOSES.get(name, _CLOSES["p"] if name in _BLOCK else frozenset())
        index = len(self.stack) - 1
        while index >= 0 and closes:
            below = self.stack[index].name
            if below in closes:
                self._pop_to(index)
            elif below in _BARRIERS or (below in _BLOCK and name not in ("li", "dt", "dd")):
                return
            index -= 1

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


Tag = tuple[str, str, int, str, bool]  # start/end/comment, name, attributes, their text,
#                                       whether text other than white space came before it
_NOT_SPACE = re.compile(f"[^{_SPACE}]")


def _tags(html: str, max_attributes: int) -> Iterator[Tag]:
    """The tags and comments of ``html`` in order, as HTML tokenizes them.

    Every step starts where the last one ended, so the work is linear in the
    length of the text, whatever it holds.
    """
    at = 0
    while (found := _TAG_START.search(html, at)) is not None:
        after_text = _NOT_SPACE.search(html, at, found.start()) is not None
        at = found.start()
        if html[at + 1] in "!?":
            if html.startswith(("<!-->", "<!--->"), at):
                end = html.find(">", at + 4) + 1  # an empty comment, closed at once
            elif html.startswith("<!--", at):
                shut = _COMMENT_END.search(html, at + 4)
                end = 0 if shut is None else shut.end()
            else:
                end = html.find(">", at) + 1
            if not end:
                return  # an unclosed comment runs to the end
            at = end
            yield "comment", "", 0, "", after_text
            continue
        kind = "end" if html[at + 1] == "/" else "start"
        start = at + 2 if kind == "end" else at + 1
        name_end = _NAME.match(html, start).end()  # type: ignore[union-attr]
        name = html[start:name_end].lower()
        count, at = _attributes(html, name_end, max_attributes)
        if count > max_attributes:
            yield kind, name, count, "", after_text
            return
        if at == -1:
            return  # a tag cut off by the end of the text is dropped, as HTML does
        yield kind, name, count, html[name_end:at], after_text
        if kind == "start" and name in _RAW_TEXT:
            shut = _RAW_END[name].search(html, at)
            if shut is None:
                return
            at = shut.start()


def _attributes(html: str, at: int, limit: int) -> tuple[int, int]:
    """(attributes, index after the ">" ending the tag), or (attributes, -1) at the end.

    Counting stops one past ``limit``.
    """
    count = 0
    while count <= limit:
        at = _BETWEEN.match(html, at).end()  # type: ignore[union-attr]
        if at >= len(html):
            return count, -1
        if html[at] == ">":
            return count, at + 1
        at = _ATTRIBUTE.match(html, at).end()  # type: ignore[union-attr]
        count += 1
        equals = _EQUALS.match(html, at)
        if equals is None:
            continue
        at = equals.end()
        quote = html[at:at + 1]
        if quote in ('"', "'"):
            at = html.find(quote, at + 1)
            if at == -1:
                return count, -1
            at += 1
        else:
            at = _UNQUOTED.match(html, at).end()  # type: ignore[union-attr]
    return count, -1
