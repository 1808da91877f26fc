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
    with inscriptis, as ``parse_message`` does; image/audio/video parts (stalwart
    lists inline media in the body too) are skipped, because no parser puts
    pixels into a text column. Empty parts are dropped, as mail-parser does,
    and the rest joined with "\\n", as ``parse_message`` joins the text parts.
    NUL is removed from the expected text (``clean_text`` never lets it
    through).

    Comparison, on both sides: line endings become "\\n", trailing white space
    is removed from every line, runs of blank lines become one, and the whole
    is stripped. When every expected part is ``Text`` the results must then be
    equal. When any expected part is ``Html`` the layout comes from two
    different HTML-to-text converters, so only the sequence of
    whitespace-separated words must be equal.

    Where stalwart could not decode bytes it wrote U+FFFD; ours may decode
    them (a fallback charset), so each U+FFFD of the expected text matches any
    one character of ours, and the rest must be equal.

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
    * ``Message`` bodies (a message/rfc822 part) pair with one of our
      attachments of type message/rfc822 whose bytes parse to a message with
      the same Subject (when stalwart's inner message has one): stalwart keeps
      only the parsed inner message, not its bytes, and we keep the inner
      message re-serialised by the stdlib, so nothing byte-exact is compared;
    * a body stalwart keeps undecoded pairs with the attachment holding its
      decoding (made fair on 2026-12-04: both sides read the same part, only
      stalwart stops short of decoding it): an x-uuencoded part (``begin``
      ... ``end``; stalwart does not decode x-uuencode, legacy/017, 026, 048)
      pairs with its uudecoding, and a base64 part stalwart flags
      ``is_encoding_problem`` and keeps as raw text because it is no base64
      (rfc/000's audio and image parts are RFC 2046's placeholder sentences,
      "... base64-encoded image data goes here ...") pairs with the lenient
      decoding of its base64 letters, padded or with the incomplete
      quantum dropped, which is what the stdlib gives.

    Nested messages are counted differently on the two sides. Stalwart counts
    a message/rfc822 part as ONE attachment of the outer message whatever its
    disposition, and the inner message's own text and attachments belong to
    the inner message only (its ``Message`` body holds its own ``text_body``
    and ``attachments``), so they never appear in the outer lists. Ours does
    the same since the shape check (``parse/limits.py``) stops its leaves at
    an enclosed message; where an older expectation still differs, the
    reasons name the case.

Reasons
    Every disagreement carries a short reason: the expected part kinds and
    sizes, the first differing words, and the unmatched parts on each side
    (``#N`` is stalwart's part index). Two causes are recognised and named:
    text of a nested message or of a text attachment that ours has in the
    body and stalwart does not, and expected parts stalwart flags
    ``is_encoding_problem`` (see the conventions).

Conventions of ours that stay misses
    Where an agent would otherwise see an empty body or lose text, ingestd
    reads on purpose otherwise than stalwart; these are counted as misses,
    and their reasons name them:

    * forward only: a message with no body of its own but an enclosed message
      shows the enclosed message's text (``parse/attachments.forwarded_text``);
      stalwart leaves the body empty;
    * broken multipart: a multipart whose boundary never appears, with no
      other body, shows its text as the body (also ``forwarded_text``);
      stalwart lists that text as an attachment only;
    * flagged part: a part after which no delimiter comes (the message ends,
      or an enclosing multipart's delimiter ends it), or whose base64 does not
      decode, is read as what its headers say, so a text part stays the body;
      stalwart flags it ``is_encoding_problem`` and lists it as an attachment,
      which would leave the body empty while a text part has text;
    * empty plain text: an alternative whose text/plain part is empty shows
      its HTML part's text (``parse_message``); stalwart's text body is the
      empty plain part.

Line endings
    The expectation files' part offsets match the .eml with every line ending
    made LF (``NNN.json``) or CRLF (``NNN.crlf.json``), so ``line_ending_variant``
    rebuilds exactly the bytes stalwart parsed. ``parse_failures`` also runs
    the files as stored (some mix both endings), for crash-freedom only.

``Report.format()`` gives the rates and every disagreement with its reason.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.policy import compat32
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
    # Stalwart's text body is empty while ours has text from one of the
    # message's parts: agreeing would need the empty body that issue 16's
    # rule forbids ("an empty body_text while the message has a non-empty
    # text or HTML part is a bug").
    empty_expected: bool = False


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
    def text_empty_expected(self) -> int:
        """Text misses where only an empty body would agree (see ``Verdict``)."""
        return sum(not r.text.agree and r.text.empty_expected for r in self.results)

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
            f"    misses where stalwart's body is empty and ours has text: "
            f"{self.text_empty_expected}; agreed of the rest:"
            f" {self.text_agreed}/{self.total - self.text_empty_expected}",
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


def parse_failures(corpus_root: Path) -> list[tuple[str, str]]:
    """(name, exception) for every corpus message, as stored on disk, that parse_message raises on.

    The stored files mix LF, CRLF and both; ``compare_stalwart`` only sees the
    normalised forms, so crash-freedom is checked on the bytes as they are too.
    """
    limits = ProcessingLimits()
    failures = []
    for name, eml in stalwart_messages(corpus_root):
        try:
            parse_message(eml.read_bytes(), limits)
        except Exception as exc:
            failures.append((name, f"{type(exc).__name__}: {exc}"))
    return failures


# -- expected parts ----------------------------------------------------------------


def _header(part: dict[str, Any], name: str) -> Any:
    for header in part.get("headers") or ():
        if header.get("name") == name:
            return header.get("value")
    return None


def content_type(part: dict[str, Any]) -> str:
    """The part's type/subtype as stalwart read it.

    Without a Content-Type header that is text/plain (RFC 2045 5.2), except for
    a part stalwart parsed as a message: in multipart/digest the default is
    message/rfc822 (RFC 2046 5.1.5).
    """
    value = _header(part, "content_type")
    if isinstance(value, dict) and "ContentType" in value:
        ct = value["ContentType"]
        return f"{ct.get('c_type') or ''}/{ct.get('c_subtype') or ''}".lower()
    return "message/rfc822" if "Message" in part["body"] else "text/plain"


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
    if "\ufffd" in theirs and not had_html and _fills_replacements(ours, theirs):
        return Verdict(True)
    kinds = [next(iter(expected["parts"][i]["body"])) for i in expected.get("text_body") or ()]
    reason = [f"expected parts {kinds or 'none'}", f"ours {len(ours)} chars",
              f"expected {len(theirs)} chars"]
    if words_equal:
        reason.append("layout only (same words)")
    else:
        reason.append(_first_difference(ours.split(), theirs.split()))
    reason += notes
    reason += _text_hints(ours, theirs, expected)
    return Verdict(False, "; ".join(reason), empty_expected=not theirs and bool(ours))


def _fills_replacements(ours: str, theirs: str) -> bool:
    """Ours equals stalwart's text where each U+FFFD it could not decode is one character.

    Bytes stalwart replaced (a Latin-1 body labelled otherwise, say) that we
    read in a fallback charset are not a disagreement: the rest must match.
    """
    pattern = ".".join(re.escape(piece) for piece in theirs.split("\ufffd"))
    return re.fullmatch(pattern, ours, re.DOTALL) is not None


def _text_hints(ours: str, theirs: str, expected: dict[str, Any]) -> list[str]:
    """Name the expected parts whose text is in ours but not in the expected body."""
    hints = []
    for index, part in enumerate(expected["parts"]):
        kind, body = next(iter(part["body"].items()))
        if kind == "Message":
            texts = [normalise_layout(t) for t in _nested_texts(body)]
            if any(t and t in ours and t not in theirs for t in texts):
                hints.append(f"ours includes the text of nested message #{index}"
                             f" ({_describe(part)}), which stalwart keeps inside that message")
        elif kind == "Text" and index in (expected.get("attachments") or ()):
            text = normalise_layout(body)
            if text and text in ours and text not in theirs:
                hints.append(f"ours includes attachment #{index} ({_describe(part)}) in the body")
    return hints + _quarantine_hints(expected, expected.get("attachments") or ())


def _nested_texts(message: dict[str, Any]) -> list[str]:
    texts = []
    for index in message.get("text_body") or ():
        kind, body = next(iter(message["parts"][index]["body"].items()))
        if kind == "Text":
            texts.append(body)
    for part in message["parts"]:
        if "Message" in part["body"]:
            texts += _nested_texts(part["body"]["Message"])
    return texts


def _first_difference(ours: list[str], theirs: list[str]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if a != b:
            return (f"first differing word {i}: ours {_snippet(ours[i:])}"
                    f" vs expected {_snippet(theirs[i:])}")
    if len(ours) > len(theirs):
        return f"ours has {len(ours) - len(theirs)} more words: {_snippet(ours[len(theirs):])}"
    return f"expected has {len(theirs) - len(ours)} more words: {_snippet(theirs[len(ours):])}"


def _snippet(words: list[str]) -> str:
    text = " ".join(words[:8])
    return repr(text if len(text) <= 80 else text[:77] + "...")


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
    if ours.content in _decodings(part):
        return True
    if kind in ("Binary", "InlineBinary"):
        return ours.sha256 == hashlib.sha256(bytes(body)).hexdigest()
    if kind in ("Text", "Html"):
        return _text_matches(ours, body, _attribute(part, "content_type", "charset"))
    if kind == "Message":
        return ours.content_type == "message/rfc822" and _same_subject(ours.content, body)
    return False


def _same_subject(content: bytes, message: dict[str, Any]) -> bool:
    """Whether our .eml bytes hold the message stalwart parsed, judged by its Subject."""
    root = message["parts"][0] if message.get("parts") else {}
    subject = _header(root, "subject")
    if not (isinstance(subject, dict) and isinstance(subject.get("Text"), str)):
        return True  # nothing to compare beyond the type
    try:
        ours = BytesParser(policy=compat32).parsebytes(content).get("Subject")
        ours = str(make_header(decode_header(str(ours)))) if ours is not None else ""
    except Exception:
        return False
    return bool(ours.split() == subject["Text"].split())


def _ours(attachment: ParsedAttachment) -> str:
    kind = attachment.content_type
    kind = kind if kind.isprintable() and " " not in kind else repr(kind)
    return f"{kind} {attachment.size} B {attachment.filename!r}"


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
    reason += _quarantine_hints(expected, [i for i, _ in unpaired])
    return Verdict(False, "; ".join(reason))


def _decodings(part: dict[str, Any]) -> list[bytes]:
    """What ours may hold for a part stalwart kept undecoded; see the module docstring."""
    data = _body_bytes(part)
    found = [decoded] if (decoded := _uudecode(data)) is not None else []
    encoding = _header(part, "content_transfer_encoding")
    if part.get("is_encoding_problem") and isinstance(encoding, dict) \
            and str(encoding.get("Text", "")).lower() == "base64":
        letters = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        for quanta in (letters[:len(letters) - len(letters) % 4],
                       letters + b"=" * (-len(letters) % 4)):
            with contextlib.suppress(binascii.Error):
                found.append(binascii.a2b_base64(quanta))
    return found


def _quarantine_hints(expected: dict[str, Any], indices: Iterable[int]) -> list[str]:
    """Name the expected attachments stalwart lists only because it flags them as broken."""
    flagged = [i for i in indices if expected["parts"][i].get("is_encoding_problem")]
    if not flagged:
        return []
    return [f"stalwart flags #{', #'.join(map(str, flagged))} is_encoding_problem and lists it"
            " as an attachment (convention: flagged part)"]


def _body_bytes(part: dict[str, Any]) -> bytes:
    kind, body = next(iter(part["body"].items()))
    if kind in ("Binary", "InlineBinary"):
        return bytes(body)
    return body.encode("utf-8", "surrogatepass") if isinstance(body, str) else b""


def _uudecode(data: bytes) -> bytes | None:
    """The bytes of a "begin ... end" uuencoded block, or None if it is not one."""
    lines = data.replace(b"\r\n", b"\n").strip().split(b"\n")
    if not lines or not lines[0].startswith(b"begin "):
        return None
    out = bytearray()
    for line in lines[1:]:
        if line.strip() == b"end":
            return bytes(out)
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            return None
    return None


def _where(expected: dict[str, Any], index: int) -> str:
    also = [name for name in ("text_body", "html_body") if index in (expected.get(name) or ())]
    return f" (also in {'+'.join(also)})" if also else ""


def _listing(items: Iterable[str]) -> str:
    return "[" + ", ".join(items) + "]"
