"""HTML's tokenizer rules, reduced to what the shape measure needs: where tags end.

Where a tag, a quoted attribute value, a comment or a raw-text element
(script, style ...) ends, as HTML decides it, so that markup cannot hide
elements from ``htmlshape``. Anchored possessive patterns and searches that
only move forward: linear in the input, hostile input included.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

SPACE = "\t\n\f\r "
_TAG_START = re.compile(r"<(?:[!?]|/?[A-Za-z])")  # any other "<" is text
_NAME = re.compile(f"[^{SPACE}/>]*+")
_BETWEEN = re.compile(f"[{SPACE}/]*+")
_ATTRIBUTE = re.compile(f"[^{SPACE}/>][^{SPACE}/>=]*+[{SPACE}]*+")
_EQUALS = re.compile(f"=[{SPACE}]*+")
_UNQUOTED = re.compile(f"[^{SPACE}>]*+")
_COMMENT_END = re.compile(r"--!?>")
# Elements whose content is text, not markup, up to their own end tag.
RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                       "noframes", "noscript"})
_RAW_END = {name: re.compile(f"</{name}(?=[{SPACE}/>])", re.IGNORECASE) for name in RAW_TEXT}


Tag = tuple[str, str, int, str, bool]  # start/end/comment, name, attributes, their text,
#                                       whether text other than white space came before it
_NOTSPACE = re.compile(f"[^{SPACE}]")


def tags(html: str, max_attributes: int, raw_text: Callable[[], bool]) -> Iterator[Tag]:
    """The tags and comments of ``html`` in order, as HTML tokenizes them.

    Every step starts where the last one ended, so the work is linear in the
    length of the text, whatever it holds.
    """
    at = 0
    while (found := _TAG_START.search(html, at)) is not None:
        after_text = _NOTSPACE.search(html, at, found.start()) is not None
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
        if kind == "start" and name in RAW_TEXT and raw_text():
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
