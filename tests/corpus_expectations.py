"""Compare ``parse_message`` with the expectations of stalwart's mail-parser test corpus.

The corpus (``stalwart-mail-parser/resources/eml/{rfc,legacy,malformed,thirdparty}``
under the corpora directory, Apache-2.0/MIT, never copied into this repository)
holds ``NNN.eml`` with ``NNN.json``, stalwart's result for the message with its
line endings made LF, and ``NNN.crlf.json``, its result with them made CRLF.
``compare_stalwart`` feeds exactly those bytes to ``parse_message`` under the
default ``ProcessingLimits`` and compares two things, per message.

Text body
    Expected: the parts stalwart lists in ``text_body``, in order. ``Text``
    parts are taken as they are; ``Html`` parts (stalwart puts an HTML part
    in ``text_body`` when it has no plain alternative) are turned into text
    with inscriptis, as ``_build`` does; image/audio/video parts (stalwart
    lists inline media in the body too) are skipped, because no parser puts
    pixels into a text column. Empty parts are dropped, as mail-parser does,
    and the rest joined with "\\n", as ``_build`` joins ``text_plain``.
    NUL is removed from the expected text (``clean_text`` never lets it
    through).

    Comparison, on both sides: line endings become "\\n", trailing white space
    is removed from every line, runs of blank lines become one, and the whole
    is stripped. When every expected part is ``Text`` the results must then be
    equal. When any expected part is ``Html`` the layout comes from two
    different HTML-to-text converters, so only the sequence of
    whitespace-separated words must be equal.

    A miss whose words agree but whose layout does not is still a miss; its
    reason says "layout only".

Attachments
    Expected: the parts stalwart lists in ``attachments`` (RFC 8621 section
    4.1.4, which also lists inline images that sit beside text and any part
    that is not text/plain, text/html or media). Ours: ``ParsedMessage.attachments``.
    They agree when the counts are equal and the two lists pair off one to one:

    * ``Binary``/``InlineBinary`` bodies (stalwart's decoded bytes) pair with
      the attachment whose sha256 is that of those bytes;
    * ``Text``/``Html`` bodies are already charset-decoded by stalwart, so they
      pair with an attachment whose bytes, decoded with the charset the part
      declares (UTF-8 if none; replacement for bad bytes), equal that text
      after line endings are made "\\n" and the ends stripped;
    * ``Message`` bodies (a message/rfc822 part) pair with any of our
      attachments of type message/rfc822: stalwart keeps only the parsed inner
      message, not its bytes, and we keep the inner message re-serialised by
      the stdlib, so there is nothing byte-exact to compare.

    Nested messages are counted differently on the two sides. Stalwart counts
    a message/rfc822 part as ONE attachment of the outer message whatever its
    disposition, and the inner message's own text and attachments belong to
    the inner message only (its ``Message`` body holds its own ``text_body``
    and ``attachments``), so they never appear in the outer lists. We count a
    message/rfc822 part as one attachment only when ``_is_attachment`` holds
    (Content-Disposition: attachment or a filename); otherwise ``_check_shape``
    walks into it, so the inner message's attachments become attachments of
    the outer message and, because mail-parser walks the whole tree, its
    text/plain parts join the outer text. The reasons name this case.

``Report.format()`` gives the rates and every disagreement with its reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import inscriptis

from ingestd.config.settings import ProcessingLimits
from ingestd.pipeline.parsed import ParsedAttachment, ParsedMessage
from ingestd.pipeline.stages.parse import parse_message

STALWART_EML = Path("stalwart-mail-parser") / "resources" / "eml"
SUITES = ("rfc", "legacy", "malformed", "thirdparty")
_MEDIA = ("image", "audio", "video")


@dataclass(frozen=True)
class Verdict:
    agree: bool
    reason: str = ""


@dataclass(frozen=True)
class FileResult:
    name: str  # e.g. "legacy/007"
    error: str | None  # what parse_message raised, if it raised
    text: Verdict
    attachments: Verdict
    seconds: float = 0.0


@dataclass
class Report:
    variant: str  # "lf" (NNN.json) or "crlf" (NNN.crlf.json)
    results: list[FileResult] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def text_agreed(self) -> int:
        return sum(r.text.agree for r in self.results)

    @property
    def attachments_agreed(self) -> int:
        return sum(r.attachments.agree for r in self.results)

    @property
    def errors(self) -> list[FileResult]:
        return [r for r in self.results if r.error is not None]

    def format(self) -> str:
        lines = [
            f"stalwart corpus ({self.variant.upper()} line endings): {self.total} messages",
            f"  text agreement:        {self.text_agreed}/{self.total}"
            f" ({_percent(self.text_agreed, self.total)})",
            f"  attachments agreement: {self.attachments_agreed}/{self.total}"
            f" ({_percent(self.attachments_agreed, self.total)})",
            f"  parse_message raised:  {len(self.errors)}",
        ]
        for result in self.errors:
            lines.append(f"  RAISED {result.name}: {result.error}")
        lines.append("  text disagreements:")
        lines += [f"    {r.name}: {r.text.reason}" for r in self.results if not r.text.agree]
        lines.append("  attachment disagreements:")
        lines += [f"    {r.name}: {r.attachments.reason}"
                  for r in self.results if not r.attachments.agree]
        slowest = max(self.results, key=lambda r: r.seconds, default=None)
        if slowest is not None:
            lines.append(f"  slowest: {slowest.name} {slowest.seconds:.3f}s")
        return "\n".join(lines)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def stalwart_messages(corpus_root: Path) -> list[tuple[str, Path]]:
    """(name, path of NNN.eml) for every message with an NNN.json, in a stable order."""
    base = corpus_root / STALWART_EML
    found = []
    for suite in SUITES:
        for eml in sorted((base / suite).glob("*.eml")):
            if eml.with_suffix(".json").is_file():
                found.append((f"{suite}/{eml.stem}", eml))
    return found


def line_ending_variant(raw: bytes, variant: str) -> bytes:
    """The bytes stalwart parsed for that expectation file: all LF, or all CRLF."""
    lf = raw.replace(b"\r\n", b"\n")
    return lf if variant == "lf" else lf.replace(b"\n", b"\r\n")


def compare_stalwart(corpus_root: Path, variant: str = "lf") -> Report:
    """Compare every stalwart corpus message that has expectations; see the module docstring."""
    if variant not in ("lf", "crlf"):
        raise ValueError(f"variant must be 'lf' or 'crlf', not {variant!r}")
    suffix = ".json" if variant == "lf" else ".crlf.json"
    report = Report(variant)
    limits = ProcessingLimits()
    for name, eml in stalwart_messages(corpus_root):
        expected = json.loads(eml.with_suffix(suffix).read_text(encoding="utf-8"))
        raw = line_ending_variant(eml.read_bytes(), variant)
        started = time.perf_counter()
        try:
            parsed = parse_message(raw, limits)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            failed = Verdict(False, f"parse_message raised {error}")
            report.results.append(FileResult(name, error, failed, failed,
                                             time.perf_counter() - started))
            continue
        seconds = time.perf_counter() - started
        report.results.append(FileResult(
            name, None, compare_text(parsed, expected), compare_attachments(parsed, expected),
            seconds,
        ))
    return report


# -- expected parts ----------------------------------------------------------------


def _header(part: dict[str, Any], name: str) -> Any:
    for header in part.get("headers") or ():
        if header.get("name") == name:
            return header.get("value")
    return None


def content_type(part: dict[str, Any]) -> str:
    """The part's type/subtype as stalwart read it; text/plain when absent (RFC 2045 5.2)."""
    value = _header(part, "content_type")
    if isinstance(value, dict) and "ContentType" in value:
        ct = value["ContentType"]
        return f"{ct.get('c_type') or ''}/{ct.get('c_subtype') or ''}".lower()
    return "text/plain"


def _attribute(part: dict[str, Any], header: str, name: str) -> str | None:
    value = _header(part, header)
    if isinstance(value, dict) and "ContentType" in value:
        for attribute in value["ContentType"].get("attributes") or ():
            if str(attribute.get("name", "")).lower() == name:
                return str(attribute.get("value"))
    return None


def _describe(part: dict[str, Any]) -> str:
    kind = next(iter(part["body"]), "?")
    body = part["body"].get(kind)
    size = len(body) if isinstance(body, (str, list)) else None
    disposition = _header(part, "content_disposition")
    disp = ""
    if isinstance(disposition, dict) and "ContentType" in disposition:
        disp = f" {disposition['ContentType'].get('c_type')}"
    name = _attribute(part, "content_disposition", "filename") or _attribute(
        part, "content_type", "name")
    named = f" {name!r}" if name else ""
    length = f" {size} {'chars' if isinstance(body, str) else 'B'}" if size is not None else ""
    return f"{content_type(part)} {kind}{length}{disp}{named}"


# -- text --------------------------------------------------------------------------


def normalise_layout(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def expected_text(expected: dict[str, Any]) -> tuple[str, bool, list[str]]:
    """(expected text, whether any HTML was converted, notes on skipped parts)."""
    parts = expected["parts"]
    pieces: list[str] = []
    notes: list[str] = []
    had_html = False
    for index in expected.get("text_body") or ():
        part = parts[index]
        kind, body = next(iter(part["body"].items()))
        if kind == "Text":
            piece = body
        elif kind == "Html":
            had_html = True
            piece = inscriptis.get_text(body)
        else:
            if not content_type(part).startswith(_MEDIA):
                notes.append(f"text_body part {index} ({_describe(part)}) skipped")
            continue
        piece = piece.replace("\x00", "")
        if piece:
            pieces.append(piece)
    return "\n".join(pieces), had_html, notes


def compare_text(parsed: ParsedMessage, expected: dict[str, Any]) -> Verdict:
    want, had_html, notes = expected_text(expected)
    ours, theirs = normalise_layout(parsed.text), normalise_layout(want)
    words_equal = ours.split() == theirs.split()
    if had_html:
        if words_equal:
            return Verdict(True)
    elif ours == theirs:
        return Verdict(True)
    kinds = [next(iter(expected["parts"][i]["body"])) for i in expected.get("text_body") or ()]
    reason = [f"expected parts {kinds or 'none'}", f"ours {len(ours)} chars",
              f"expected {len(theirs)} chars"]
    if words_equal:
        reason.append("layout only (same words)")
    else:
        reason.append(_first_difference(ours.split(), theirs.split()))
    reason += notes
    return Verdict(False, "; ".join(reason))


def _first_difference(ours: list[str], theirs: list[str]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            return (f"first differing word {i}: ours {' '.join(ours[i:i + 6])!r}"
                    f" vs expected {' '.join(theirs[i:i + 6])!r}")
    if len(ours) > len(theirs):
        return f"ours has {len(ours) - len(theirs)} more words: {' '.join(ours[len(theirs):][:8])!r}"
    return (f"expected has {len(theirs) - len(ours)} more words:"
            f" {' '.join(theirs[len(ours):][:8])!r}")


# -- attachments -------------------------------------------------------------------


def _text_matches(ours: ParsedAttachment, text: str, charset: str | None) -> bool:
    want = text.replace("\r\n", "\n").strip()
    for codec in (charset, "utf-8"):
        if not codec:
            continue
        try:
            got = ours.content.decode(codec, "replace")
        except LookupError:
            continue
        if got.replace("\r\n", "\n").strip() == want:
            return True
    return False


def _pairs_with(ours: ParsedAttachment, part: dict[str, Any]) -> bool:
    kind, body = next(iter(part["body"].items()))
    if kind in ("Binary", "InlineBinary"):
        return ours.sha256 == hashlib.sha256(bytes(body)).hexdigest()
    if kind in ("Text", "Html"):
        return _text_matches(ours, body, _attribute(part, "content_type", "charset"))
    if kind == "Message":
        return ours.content_type == "message/rfc822"
    return False


def _ours(attachment: ParsedAttachment) -> str:
    return f"{attachment.content_type} {attachment.size} B {attachment.filename!r}"


def compare_attachments(parsed: ParsedMessage, expected: dict[str, Any]) -> Verdict:
    parts = expected["parts"]
    wanted = [(i, parts[i]) for i in expected.get("attachments") or ()]
    unpaired_ours: list[ParsedAttachment] = []
    unpaired = list(wanted)
    for attachment in parsed.attachments:
        match = next((w for w in unpaired if _pairs_with(attachment, w[1])), None)
        if match is None:
            unpaired_ours.append(attachment)
        else:
            unpaired.remove(match)
    if not unpaired and not unpaired_ours:
        return Verdict(True)
    reason = [f"count ours {len(parsed.attachments)} vs expected {len(wanted)}"]
    if unpaired:
        reason.append("expected, unmatched: " + _listing(
            f"#{i} {_describe(p)}{_where(expected, i)}" for i, p in unpaired))
    if unpaired_ours:
        reason.append("ours, unmatched: " + _listing(_ours(a) for a in unpaired_ours))
    return Verdict(False, "; ".join(reason))


def _where(expected: dict[str, Any], index: int) -> str:
    also = [name for name in ("text_body", "html_body") if index in (expected.get(name) or ())]
    return f" (also in {'+'.join(also)})" if also else ""


def _listing(items: Iterable[str]) -> str:
    return "[" + ", ".join(items) + "]"
