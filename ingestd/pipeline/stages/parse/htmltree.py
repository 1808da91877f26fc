"""A rough model of HTML's tree building: the open elements and the active formatting list.

``htmlshape.measure`` feeds it the tags of a document and reads back how deep
the tree grew, how many elements were built (formatting elements re-opened
in every block included) and how many tables were nested. It follows the
HTML standard's tree construction where that changes those numbers (optional
end tags, scope, the adoption agency, foreign content) and errs on the deep
side elsewhere.
"""

from __future__ import annotations

from ingestd.pipeline.stages.parse.htmlelements import (
    BARRIERS,
    BLOCK,
    BREAKOUT,
    CLOSES,
    FONT_BREAKOUT,
    FOREIGN,
    FORMATTING,
    INTEGRATION,
    MARKERS,
    SCOPE,
    SPECIAL,
    TABLE_PARTS,
    TABLE_SCOPE,
    VOID,
)

# inscriptis spends on one table about what it spends on three other elements.
_TABLE_WEIGHT = 3
# HTML keeps at most three identical formatting elements active (the
# "Noah's Ark" clause); the rest stay open but are not re-opened.
_NOAHS_ARK = 3


class OpenElement:
    """An open element; for a formatting element, also its entry in the active list."""

    __slots__ = ("marker_at", "name", "open", "rest")

    def __init__(self, name: str, rest: str, marker_at: int) -> None:
        self.name = name
        self.rest = rest  # attribute text: identical formatting elements are one kind
        self.marker_at = marker_at  # for a marker: where its active formatting begins
        self.open = True  # on the stack of open elements


class HtmlTree:
    """HTML's stack of open elements and list of active formatting elements, roughly."""

    def __init__(self) -> None:
        self.stack: list[OpenElement] = []
        self.formatting: list[OpenElement] = []  # active formatting elements, oldest first
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
            if name in INTEGRATION:
                return None
            if name in FOREIGN:
                return index
        return None

    def start(self, name: str, rest: str) -> None:
        # Every start tag counts, even one HTML drops: lxml (under inscriptis)
        # builds an element for it. A table costs inscriptis a layout of its own.
        self.elements += _TABLE_WEIGHT if name == "table" else 1
        foreign = self._foreign()
        breakout = name in BREAKOUT or (name == "font" and FONT_BREAKOUT.search(rest))
        self.foreign_start = foreign is not None and not breakout
        if foreign is not None:
            if not breakout:
                if not rest.rstrip().endswith("/"):
                    self.stack.append(OpenElement(name, rest, len(self.formatting)))
                    self.depth = max(self.depth, len(self.stack))
                return
            while foreign is not None:  # back to HTML: the foreign elements close
                self._pop_to(foreign)
                foreign = self._foreign()
        if name in TABLE_PARTS and name != "table" and not self._open("table"):
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
        if name not in BLOCK:
            self.reconstruct()
        if name in VOID:
            return
        if name in FORMATTING:
            self._noahs_ark(name, rest)
        else:
            self._implied_ends(name)
            if name in ("td", "th", "tr"):
                self._implied_rows(name)
        element = OpenElement(name, rest, len(self.formatting))
        self.stack.append(element)
        if name in FORMATTING:
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
                if self.stack[index].name in SCOPE:
                    return
            return
        if name in FORMATTING and self._end_formatting(name):
            return
        if name in TABLE_PARTS:
            boundary = TABLE_SCOPE
        elif name in SPECIAL:
            boundary = SCOPE | {"ul", "ol"} if name == "li" else SCOPE | {"button"}
        else:
            boundary = SPECIAL
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
            if any(e.name in SCOPE for e in above):
                return True  # not in scope: ignored, and it stays active
            block = next((i for i, e in enumerate(above, index + 1) if e.name in SPECIAL), None)
            if block is None:
                self.formatting.remove(element)
                self._pop_to(index)  # close it and what is inside
                return True
            # A block inside it stays open; a copy of the element moves inside
            # that block (around the block's content) and stays active.
            copy = OpenElement(element.name, element.rest, element.marker_at)
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
                again = OpenElement(element.name, element.rest, element.marker_at)
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
            if element.name in MARKERS:
                return element.marker_at
        return 0

    def _noahs_ark(self, name: str, rest: str) -> None:
        same = [e for e in self.formatting[self._scope():] if e.name == name and e.rest == rest]
        if len(same) >= _NOAHS_ARK:
            self.formatting.remove(same[0])  # no longer active; still open

    def _implied_ends(self, name: str) -> None:
        # Tables do not close a paragraph: mail has no doctype (quirks mode).
        paragraph = name in BLOCK and name != "table"
        closes = CLOSES.get(name, CLOSES["p"] if paragraph else frozenset())
        index = len(self.stack) - 1
        while index >= 0 and closes:
            below = self.stack[index].name
            if below in closes:
                self._pop_to(index)
            elif (below in BARRIERS or name in ("option", "optgroup")
                  or (name in ("li", "dt", "dd") and below in SPECIAL
                      and below not in ("address", "div", "p"))):
                return
            index -= 1

    def _implied_rows(self, name: str) -> None:
        """The <tbody> and <tr> HTML adds around a row or cell written without them."""
        nearest = next((e.name for e in reversed(self.stack) if e.name in TABLE_PARTS), None)
        implied = ["tbody"] if nearest == "table" else []
        if name != "tr" and nearest in ("table", "tbody", "thead", "tfoot"):
            implied.append("tr")
        for part in implied:
            self.stack.append(OpenElement(part, "", len(self.formatting)))
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
            if element.name in MARKERS:
                del self.formatting[element.marker_at:]
                break
