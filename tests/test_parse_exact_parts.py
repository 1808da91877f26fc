"""Attachments hold the bytes that were sent: enclosed messages, reports, inline images.

Every expected slice is cut here with plain bytes operations on the fixture,
independently of ``rawparts``: from the end of the part's header block to the
line ending before the next boundary line (which belongs to the boundary,
RFC 2046 5.1.1).
"""

from __future__ import annotations

import base64
import hashlib
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path

import pytest

from ingestd.config.settings import ProcessingLimits
from ingestd.errors import LimitExceeded
from ingestd.mailtext import POLICY
from ingestd.pipeline.parsed import ParsedAttachment, ParsedMessage
from ingestd.pipeline.stages.parse import parse_message
from ingestd.pipeline.stages.parse.inline import MAX_CONTENT_ID, content_id
from ingestd.pipeline.stages.parse.limits import LenientMessage, read_tree
from ingestd.pipeline.stages.parse.rawparts import RawParts, message_spans
from tests.corpora import manifest, require_corpora

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "emails"
LIMITS = ProcessingLimits()
FALLBACK = "part not found in the raw message; stored re-serialised"


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _between(raw: bytes, after: bytes, before: bytes) -> bytes:
    """raw from the end of ``after`` to the start of the next ``before``."""
    start = raw.index(after) + len(after)
    return raw[start:raw.index(before, start)]


def _only(parsed: ParsedMessage, content_type: str) -> ParsedAttachment:
    found = [a for a in parsed.attachments if a.content_type == content_type]
    assert len(found) == 1, parsed.attachments
    return found[0]


def _assert_exact(attachment: ParsedAttachment, expected: bytes) -> None:
    assert attachment.content == expected
    assert attachment.sha256 == hashlib.sha256(expected).hexdigest()


def _mixed(*parts: bytes, close: bool = True) -> bytes:
    head = b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    return head + b"".join(b"--b\r\n" + p + b"\r\n" for p in parts) + (b"--b--\r\n" if close
                                                                      else b"")


ENCLOSED = b"Subject: inner\r\n\r\nline one\r\n"


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r"], ids=["crlf", "lf", "cr"])
def test_enclosed_message_with_nested_multiparts_is_the_exact_slice(eol: bytes) -> None:
    """Folded and over-long header lines, line endings, the inner parts: all as sent."""
    raw = _fixture("enclosed-crlf.eml").replace(b"\r\n", eol)
    parsed = parse_message(raw, LIMITS)

    expected = _between(raw, b"Content-Disposition: attachment" + eol * 2,
                        eol + b"--outer-1--")
    enclosed = _only(parsed, "message/rfc822")
    _assert_exact(enclosed, expected)
    # What as_bytes() used to change: a 150-character References line kept whole,
    # the sender's own fold, and the line ending after the inner close boundary.
    references = next(line for line in expected.split(eol) if line.startswith(b"References:"))
    assert len(references) > 78
    assert b"southern region" + eol + b" and the overseas" in expected
    assert expected.endswith(b"--inner-2--" + eol)
    assert not any(d.endswith(FALLBACK) for d in parsed.defects)


def test_lf_file_enclosed_message_and_8bit_leaf() -> None:
    """An LF file: the enclosed message as sent; an 8bit leaf keeps its mixed line endings."""
    raw = _fixture("enclosed-lf.eml")
    parsed = parse_message(raw, LIMITS)

    message = _only(parsed, "message/rfc822")
    _assert_exact(message, _between(raw, b"Content-Type: message/rfc822\n\n", b"\n--lf-outer\n"))
    assert message.content.endswith(b"It jams again.\n")  # its own blank line is the boundary's
    notes = _only(parsed, "application/octet-stream")
    _assert_exact(notes, _between(raw, b"Content-Transfer-Encoding: 8bit\n\n",
                                  b"\n--lf-outer--"))
    assert notes.content == b"line1\r\nline2\rline3\n"


def test_base64_encoded_enclosed_message_is_decoded_from_the_sent_text() -> None:
    """message/rfc822 in base64 (RFC 2046 forbids it; senders do it): the decoded bytes."""
    raw = _fixture("enclosed-base64.eml")
    parsed = parse_message(raw, LIMITS)

    encoded = _between(raw, b"Content-Transfer-Encoding: base64\r\n\r\n", b"\r\n--b64-outer--")
    message = _only(parsed, "message/rfc822")
    _assert_exact(message, base64.b64decode(encoded))
    assert message.content.startswith(b"From: Erin Example <erin@example.com>\r\nTo: ")
    assert message.content.endswith(b"An enclosed message sent in base64.\r\n")


def test_quoted_printable_enclosed_message_keeps_its_crlf() -> None:
    raw = _mixed(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable"
                 b"\r\n\r\nSubject: caf=C3=A9\r\n\r\nA long line, soft-=\r\nbroken.\r\n")
    message = _only(parse_message(raw, LIMITS), "message/rfc822")
    assert message.content == "Subject: café\r\n\r\nA long line, soft-broken.\r\n".encode()


def test_invalid_base64_enclosed_message_is_decoded_as_far_as_possible() -> None:
    whole = base64.b64encode(b"Subject: cut\r\n\r\nbody text")
    raw = _mixed(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                 + whole[:-3] + b"*\r\n")  # the last group cut short, a stray character
    parsed = parse_message(raw, LIMITS)
    assert _only(parsed, "message/rfc822").content.startswith(b"Subject: cut\r\n\r\nbody te")
    assert ("invalid base64 in message/rfc822 part: 1 non-base64 characters removed, truncated: "
            "a lone last character dropped; decoded as far as possible") in parsed.defects


def test_delivery_status_and_returned_headers_are_exact() -> None:
    """A DSN's report blocks and the returned header block, each exactly as sent."""
    raw = _fixture("dsn-report.eml")
    parsed = parse_message(raw, LIMITS)

    status = _only(parsed, "message/delivery-status")
    _assert_exact(status, _between(raw, b"Content-Type: message/delivery-status\r\n\r\n",
                                   b"\r\n--dsn-b\r\n"))
    assert status.content.count(b"Final-Recipient:") == 2
    assert status.content.endswith(b"552 5.2.2 mailbox full\r\n")
    headers = _only(parsed, "text/rfc822-headers")
    _assert_exact(headers, _between(raw, b"Content-Type: text/rfc822-headers\r\n\r\n",
                                    b"\r\n--dsn-b--"))
    assert b"new office layout and the move of the archive\r\n to the basement" in headers.content


def test_disposition_notification_is_exact() -> None:
    raw = _fixture("dsn-mdn.eml")
    parsed = parse_message(raw, LIMITS)

    mdn = _only(parsed, "message/disposition-notification")
    _assert_exact(mdn, _between(raw, b"Content-Type: message/disposition-notification\n\n",
                                b"\n--mdn-b--"))
    assert mdn.content.endswith(b"Disposition: manual-action/MDN-sent-manually; displayed\n")


def test_walk_disagreeing_with_the_tree_falls_back_with_a_defect() -> None:
    """A misplaced mbox "From " line ends the enclosed header block: the stdlib moves it
    into the body, the tree no longer matches the bytes, so the tree's bytes are kept."""
    raw = _fixture("enclosed-malformed.eml")
    parsed = parse_message(raw, LIMITS)

    assert f"message/rfc822 {FALLBACK}" in parsed.defects
    message = _only(parsed, "message/rfc822")
    _, leaves = read_tree(raw, LIMITS)
    enclosed = next(p for p, _ in leaves if p.get_content_type() == "message/rfc822")
    inner = enclosed.get_payload(0)
    assert isinstance(inner, Message)
    assert message.content == inner.as_bytes()
    assert message.content != _between(raw, b"Content-Type: message/rfc822\r\n\r\n",
                                       b"\r\n--bad-outer--")
    assert BytesParser(policy=compat32).parsebytes(message.content)["Subject"] == "Archived"


@pytest.mark.parametrize(("raw", "expected"), [
    # Never closed: the message runs to the end of the data, its last line ending kept.
    (_mixed(b"Content-Type: message/rfc822\r\n\r\n" + ENCLOSED, close=False),
     ENCLOSED + b"\r\n"),
    # Repeated boundary lines hold no part between them.
    (b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
     b"--b\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" + ENCLOSED + b"\r\n--b--\r\n",
     ENCLOSED),
    # Blanks after the boundary, and a boundary that only starts like ours inside.
    (b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
     b"--b \t\r\nContent-Type: message/rfc822\r\n\r\n" + ENCLOSED + b"--bb\r\n x--b\r\n"
     b"\r\n--b--\r\n", ENCLOSED + b"--bb\r\n x--b\r\n"),
    # A line of the outer boundary ends the enclosed message even inside its own multipart.
    (_mixed(b"Content-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=c"
            b"\r\n\r\n--c\r\n\r\ncut short"),
     b"Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\ncut short"),
    # message/rfc822 as the whole message: its body to the end.
    (b"From: a@example.com\r\nContent-Type: message/rfc822\r\n\r\n" + ENCLOSED, ENCLOSED),
], ids=["unclosed", "repeated-boundary", "lookalike-lines", "outer-boundary-inside", "top"])
def test_boundary_edge_cases(raw: bytes, expected: bytes) -> None:
    parsed = parse_message(raw, LIMITS)
    _assert_exact(_only(parsed, "message/rfc822"), expected)
    assert not any(d.endswith(FALLBACK) for d in parsed.defects)


def test_related_images_have_content_ids_and_inline_flags() -> None:
    """multipart/related: the cid image without disposition is inline, the one marked
    attachment is not; both keep their Content-ID, without brackets, fold or comment."""
    parsed = parse_message(_fixture("inline-image.eml"), LIMITS)
    found = {a.filename: (a.content_id, a.inline) for a in parsed.attachments}
    assert found == {"logo.png": ("logo.1@example.com", True),
                     "chart.png": ("chart.2@example.com", False)}
    assert parsed.html is not None and "cid:logo.1@example.com" in parsed.html


def test_inline_outside_related_needs_the_disposition() -> None:
    """A Content-ID alone in multipart/mixed is no inline image; ``inline`` is, cid or not."""
    parsed = parse_message(_fixture("inline-image-mixed.eml"), LIMITS)
    found = {a.filename: (a.content_id, a.inline) for a in parsed.attachments}
    assert found == {"photo.png": ("photo@example.com", False), "shown.png": (None, True)}


@pytest.mark.parametrize(("value", "expected"), [
    ("<part1.abc@example.com>", "part1.abc@example.com"),
    ("  <part1@example.com>  (the logo)", "part1@example.com"),
    ("part2@example.com", "part2@example.com"),
    ("<part 3\t@exam\x00ple.com\u202e>", "part3@example.com"),
    ("<>", None),
    ("   ", None),
    ("<" + "x" * 400 + "@example.com>", "x" * MAX_CONTENT_ID),
])
def test_content_id_is_cleaned_and_bounded(value: str, expected: str | None) -> None:
    part = Message()
    part["Content-ID"] = value
    assert content_id(part) == expected
    assert content_id(Message()) is None


def test_corpora_enclosed_messages_exact_and_readable() -> None:
    """Over every corpus message: each message/* attachment is stored from the raw bytes
    (no fallback), and an enclosed message re-read from them has the tree's Subject."""
    root = require_corpora()
    exact = fallback = compared = 0
    wrong: list[str] = []
    for corpus_file in manifest(root):
        raw = corpus_file.path.read_bytes()
        try:
            tree, leaves = read_tree(raw, LIMITS)
        except LimitExceeded:
            continue
        source = RawParts(raw, tree)
        for part, _ in leaves:
            inner = part.get_payload()
            if part.get_content_maintype() != "message" or not isinstance(inner, list):
                continue
            body = source.body(part)
            if body is None:
                fallback += 1
                wrong.append(f"fallback: {corpus_file.path}")
                continue
            exact += 1
            encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
            if part.get_content_type() != "message/rfc822" or encoding not in (
                    "", "7bit", "8bit", "binary") or not isinstance(inner[0], Message):
                continue
            compared += 1
            ours, theirs = _subject(BytesParser(policy=POLICY).parsebytes(body)), _subject(inner[0])
            if ours != theirs:
                wrong.append(f"subject differs: {corpus_file.path}: {ours!r} vs {theirs!r}")
    print(f"\nmessage/* attachments: {exact} from the raw bytes, {fallback} re-serialised; "
          f"{compared} enclosed messages re-read with the same Subject")
    assert exact > 500  # the corpora hold about a thousand (bounces, forwards)
    assert wrong == []


def test_walk_survives_an_endlessly_enclosed_message() -> None:
    """flanker's enclosed-endless.eml (3 MB, nested until the parser gives up), walked
    without our part limits: one span, the enclosed message's body to the boundary."""
    path = require_corpora() / "mailgun-flanker/tests/fixtures/messages/enclosed-endless.eml"
    raw = path.read_bytes()
    tree = BytesParser(_class=LenientMessage, policy=POLICY).parsebytes(raw)
    spans = message_spans(raw, tree)
    assert spans is not None and len(spans) == 1
    [(start, end)] = spans.values()
    assert 0 < start < end < len(raw)


def _subject(message: Message) -> str | None:
    value = message.get("Subject")
    return None if value is None else str(value)
