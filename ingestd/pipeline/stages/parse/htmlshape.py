"""A cheap, linear measure of how deep and how big an HTML document is.

nh3 (html5ever) walks the stack of open elements for many tags, so its time
grows with elements times depth; lxml (under inscriptis) checks every attribute
of a tag against the others; inscriptis lays out every table inside every
table around it. ``measure`` estimates those numbers from the tags alone: the
tokenizer of htmltags.py (where HTML ends a tag, a quoted value, a comment or a
script, so markup cannot hide elements from it) feeds a model of HTML's tree
building (``htmltree``, on the element categories of ``htmlelements``),
stopped as soon as a limit is passed. So hostile input costs no more than
ordinary mail of the same size. It is an estimate, not a parser: where it
differs from HTML's tree building it errs on the deep side.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingestd.pipeline.stages.parse.htmlelements import IGNORED
from ingestd.pipeline.stages.parse.htmltags import tags
from ingestd.pipeline.stages.parse.htmltree import HtmlTree


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
    tree = HtmlTree()
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
        if kind == "start" and name not in IGNORED:
            tree.start(name, rest)
        elif kind == "end" and name not in IGNORED:
            tree.end(name)
        if (tree.depth > limits.depth or tree.elements > limits.elements
                or attributes > limits.attributes or tree.tables > limits.tables
                or tree.copied > limits.copied):
            break
    return HtmlShape(tree.depth, tree.elements, attributes, tree.tables, tree.copied)
