"""HTML bodies under a bound: hostile markup is not rendered, ordinary HTML still is (defect 12)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.config.settings import ProcessingLimits
from ingestd.db.tables import ACTIONS
from ingestd.pipeline.stages.parse import parse_message
from ingestd.pipeline.stages.parse.html import HTML_LIMITS, MAX_HTML_CHARS, strip_tags
from ingestd.pipeline.stages.parse.htmlshape import HtmlLimits, measure

# Generous for a loaded two-core machine; unbounded, these inputs take from
# seconds to minutes (500 KB of nested <div> kept nh3 busy for two minutes).
SECONDS = 3.0


def _html_message(html: str, subject: str = "hostile") -> bytes:
    return (f"From: Alice <alice@acme.example>\r\nTo: support@example.com\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{subject}-{len(html)}@acme.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            f"{html}\r\n").encode()


def _timed(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def _nested_divs(size: int = 500_000) -> str:
    levels = size // 11
    return "<div>" * levels + "Please reset my password" + "</div>" * levels


# Shapes that make nh3 or inscriptis super-linear, each a little under 1 MB.
HOSTILE = {
    "nested div": (_nested_divs(990_000), "nesting depth"),
    "unclosed div": ("<div>" * 190_000 + "Please reset my password", "nesting depth"),
    "nested lists": ("<ul><li>" * 110_000 + "Please reset my password", "nesting depth"),
    "open font tags": ("".join(f"<font size={i % 7} class=c{i}>" for i in range(35_000))
                       + "Please reset my password", "nesting depth"),
    "formatting re-opened in every block": (
        "<div>" + "".join(f"<b class=c{i}>" for i in range(90)) + "</div>"
        + "<div>Please reset my password</div>" * 25_000, "elements"),
    "one attribute copied into every block": (
        '<div><b title="' + "A" * 20_000 + '"></div>'
        + "<div>Please reset my password</div>" * 25_000, "re-opened formatting"),
    "tables in tables": ("<table><tr><td>" * 25 + "Please reset my password "
                         + "<table><tr><td>x</td></tr></table>" * 20_000, "tables nested"),
    "a tag with many attributes": ("<div " + " ".join(f"a{i}=x" for i in range(100_000))
                                   + ">Please reset my password</div>", "attributes"),
    "divs hidden in quoted attributes": ('<div title="</div>">' * 45_000
                                         + "Please reset my password", "nesting depth"),
    "divs hidden behind a script": ("<div><script></div></script>" * 30_000
                                    + "Please reset my password", "nesting depth"),
    "many flat elements": ("<span>Please reset my password</span>" * 25_000, "elements"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_html_is_not_rendered(name: str) -> None:
    """Each hostile shape parses in bounded time: no HTML, its text kept, the reason recorded."""
    html, reason = HOSTILE[name]
    assert len(html) <= MAX_HTML_CHARS
    parsed, seconds = _timed(lambda: parse_message(_html_message(html), ProcessingLimits()))
    assert seconds < SECONDS, f"{name}: {seconds:.2f} s"
    assert parsed.html is None
    assert "Please reset my password" in parsed.text
    [defect] = [d for d in parsed.defects if d.startswith("HTML body not rendered")]
    assert reason in defect


def test_nested_div_defect_names_the_limit() -> None:
    """500 KB of nested <div> (defect 12): the defect says which limit, and the text survives."""
    parsed = parse_message(_html_message(_nested_divs()), ProcessingLimits())
    assert parsed.defects == (f"HTML body not rendered: nesting depth over {HTML_LIMITS.depth}",)
    assert parsed.text == "Please reset my password"


def test_ordinary_html_is_still_sanitised() -> None:
    """A newsletter-like body inside the limits is sanitised and rendered as before."""
    row = ("<tr><td style='padding:4px'><font face=Arial><b>Item</b> &amp; price</font>"
           "</td><td><a href='https://shop.example/item'>buy</a></td></tr>")
    html = ("<html><head><style>p{color:red}</style></head><body>"
            "<script>alert(1)</script><img src='https://tracker.example/p.gif'>"
            "<img src='cid:logo@x'>"
            + "<table><tr><td>" * 8 + "<table>" + row * 300 + "</table>"
            + "</td></tr></table>" * 8
            + "<p onclick='x()'>Thanks,<br>Alice</p></body></html>")
    parsed = parse_message(_html_message(html), ProcessingLimits())
    assert parsed.defects == ()
    assert parsed.html is not None
    assert "<script" not in parsed.html and "onclick" not in parsed.html
    assert "tracker.example" not in parsed.html and 'src="cid:logo@x"' in parsed.html
    assert 'href="https://shop.example/item"' in parsed.html
    assert "Item & price" in parsed.text and "Alice" in parsed.text


def test_html_beside_plain_text_keeps_the_plain_text() -> None:
    """With a text/plain alternative, hostile HTML is dropped and the plain text is the body."""
    raw = (b"From: alice@acme.example\r\nSubject: alt\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nthe plain text\r\n"
           b"--b\r\nContent-Type: text/html\r\n\r\n" + _nested_divs().encode() + b"\r\n--b--\r\n")
    parsed = parse_message(raw, ProcessingLimits())
    assert parsed.html is None and parsed.text.strip() == "the plain text"
    assert any(d.startswith("HTML body not rendered") for d in parsed.defects)


ADVERSARIAL = {
    "lone <": "<" * 5_000_000,
    "unclosed comments": "<!--" * 1_250_000,
    "unterminated tags": "<a " * 1_600_000,
    "tag starts without names": "</" * 2_500_000,
    "unclosed scripts": "<script" * 700_000,
    "script never ended": "<script>" + "</scrip" * 700_000,
    "block tags without >": "<p" * 2_500_000,
    "entities": "&#" * 2_500_000,
    "blank lines": "\n \n" * 1_250_000,
    "unclosed quote": '<div a="' + "<div>" * 1_000_000,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_tag_strip_and_measure_are_linear(name: str) -> None:
    """5 MB of input that makes backtracking patterns quadratic is stripped and measured quickly."""
    html = ADVERSARIAL[name]
    _, strip_seconds = _timed(lambda: strip_tags(html))
    _, measure_seconds = _timed(lambda: measure(html, HTML_LIMITS))
    assert strip_seconds < SECONDS and measure_seconds < SECONDS, (
        f"{name}: strip {strip_seconds:.2f} s, measure {measure_seconds:.2f} s")


def test_tag_strip_text() -> None:
    """The strip drops tags, comments, scripts and styles, decodes entities, keeps block breaks."""
    html = ("<html><head><style>p{color:red}</style></head><body><p>Hello &amp; "
            "<b>wel</b>come</p><div>two<br>lines</div><!-- hidden --><script>x<y</script>"
            "end &lt;3 &#x263A;</body></html>")
    assert strip_tags(html) == "Hello & welcome\n\ntwo\nlines\nend <3 \u263a"


def test_measure_follows_html_structure() -> None:
    """Closed, implicitly closed and table-scoped markup is shallow; open markup is deep."""
    big = HtmlLimits(depth=10**9, elements=10**9, attributes=10**9, tables=10**9,
                     copied=10**9)
    shallow = ["<div>x</div>" * 50, "<p>x" * 50, "<ul>" + "<li>x" * 50 + "</ul>",
               "<table>" + "<tr><td><font face=a>x" * 50 + "</table>",
               "<div><font face=x>t</div>" * 50, "<p><b><i>x</b>y</i></p>" * 50,
               "<!-- <div> -->" * 50, "<style><div></style>" * 50]
    for html in shallow:
        assert measure(html, big).depth <= 5, html[:40]
    deep = ["<div>" * 50, "<b>" * 50, "<ul><li>" * 25, '<div title="<">' * 50,
            "<table><tr><td>" * 17, "".join(f"<div><b class=c{i}></div>" for i in range(50))]
    for html in deep:
        assert measure(html, big).depth >= 50, html[:40]
    # Shapes where an end tag or an implied end closes nothing in HTML, found by
    # comparing with html5lib's tree building: each nests at least once a round.
    nests = ["<span><div></span>", "<div><table><tr><td></div>", "<b><table><tr><td></b>",
             "<form><center></form>", "<a><i><a>", "<option><pre>", "<td><center><h1>",
             "<dt><a class=x><dl><a class=x>", "<svg><title><font><math>x<nobr>",
             "<math><th>", "<a><svg></br>", "<math><font></dd><tbody>",
             "</dt></font><em class=c2><dt class=c3></dd><math>"]
    for unit in nests:
        assert measure(unit * 50, big).depth >= 50, unit
    hidden = "<svg><foreignObject>" + "<div><script></div></script>" * 50
    assert measure(hidden, big).depth >= 50
    assert measure("<table><tr><td>" * 17, big).tables == 17
    assert measure('<div a=1 b="2>" c=\'3\' d e/ f = "x">', big).attributes == 6


def test_real_html_in_the_corpora_is_within_the_limits() -> None:
    """No HTML body of the third-party corpora is refused rendering by the bound."""
    from ingestd.pipeline.stages.parse.attachments import part_text
    from ingestd.pipeline.stages.parse.limits import read_tree
    from tests.corpora import manifest, require_corpora

    root = require_corpora()
    refused, seen = [], 0
    for entry in manifest(root):
        try:
            tree, _ = read_tree(entry.path.read_bytes(), ProcessingLimits())
        except Exception:
            continue  # refused by the MIME limits, or not mail: not this test's concern
        for part in tree.walk():
            if part.get_content_type() == "text/html" and (html := part_text(part)):
                seen += 1
                reason = measure(html, HTML_LIMITS).over(HTML_LIMITS)
                if reason is not None:
                    refused.append(f"{entry.path.relative_to(root)}: {reason}")
    assert seen > 100
    assert refused == []


def test_hostile_html_becomes_a_ticket(env: Any) -> None:
    """Delivered for real, nested divs make a processed ticket with the text, not a quarantine."""
    row = env.deliver("hostile", raw=_html_message(_nested_divs(), "nested-divs"))
    assert row.status == "processed", row.reason
    assert row.ticket_id is not None and row.attempts == 1
    assert any("nesting depth" in d for d in row.defects)
    with env.engine.connect() as conn:
        action = conn.execute(sa.select(ACTIONS).where(ACTIONS.c.id == row.action_id)).one()
    assert action.body_text == "Please reset my password"
    assert action.body_html is None
