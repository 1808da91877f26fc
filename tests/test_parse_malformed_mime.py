"""Broken multipart structure read the way mail clients read it (``parse/boundaries.py``).

Each behaviour is pinned on a small hand-made message; none needs the
third-party corpora.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser

import pytest

from ingestd.config.settings import ProcessingLimits
from ingestd.errors import LimitExceeded
from ingestd.mailtext import POLICY
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse import parse_message
from ingestd.pipeline.stages.parse.boundaries import reread
from ingestd.pipeline.stages.parse.headerblock import boundary_in_use
from ingestd.pipeline.stages.parse.limits import LenientMessage, check_shape, read_tree
from tests.conftest import FIXTURES


def _parse(name: str) -> ParsedMessage:
    return parse_message((FIXTURES / name).read_bytes(), ProcessingLimits())


def _files(parsed: ParsedMessage) -> list[tuple[str, str]]:
    return [(a.filename, a.content_type) for a in parsed.attachments]


def test_nested_multipart_reusing_its_parents_boundary_keeps_the_parts_after_its_close() -> None:
    """Outlook Express for Mac: the innermost multipart claims the shared delimiter first.

    The stdlib gives the enclosing one the first claim: the alternative comes
    out empty and the image after its close delimiter is lost in the epilogue.
    """
    parsed = _parse("mime-reused-boundary.eml")
    assert parsed.text.strip() == "The scanner shows this error."
    assert parsed.html is not None and "The scanner shows this error." in parsed.html
    assert _files(parsed) == [("error.gif", "image/gif")]
    assert parsed.attachments[0].content.startswith(b"GIF89a")
    assert "MultipartReadInnermostFirstDefect" in parsed.defects


def test_enclosing_delimiter_ends_an_unclosed_nested_multipart() -> None:
    """RFC 2046 5.1.2: the outer delimiter ends the inner multipart; what follows is the outer's."""
    parsed = _parse("mime-enclosing-boundary-ends-nested.eml")
    assert parsed.text.strip() == "The log of last night's crash is attached."
    assert _files(parsed) == [("crash.log", "text/plain")]
    assert parsed.attachments[0].content == b"kernel: out of memory"
    assert "CloseBoundaryNotFoundDefect" in parsed.defects


def test_delimiter_straight_after_the_header_fields_is_a_delimiter() -> None:
    """No blank line, and a colon in the boundary: the delimiter is not one more header field."""
    parsed = _parse("mime-delimiter-after-headers.eml")
    assert parsed.text.strip() == "Please send the parcel to the new address."
    assert parsed.attachments == ()
    assert parsed.from_address == "tameka@shop.example"


def test_lone_close_delimiter_after_mime_fields_reads_the_text_before_it_as_a_part() -> None:
    """MIME::Lite left out the opening delimiter: the HTML part is the body, not a raw file."""
    parsed = _parse("mime-opening-delimiter-missing.eml")
    assert parsed.text.strip() == "Your order 1042 has shipped."
    assert parsed.attachments == ()
    assert "OpeningDelimiterMissingDefect" in parsed.defects


def test_lone_close_delimiter_after_plain_text_leaves_the_text_in_the_preamble() -> None:
    """Without MIME header fields the text before the close stays what the stdlib makes of it."""
    raw = (b"From: a@b.example\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"Just a note.\n--b--\n")
    tree, _ = read_tree(raw, ProcessingLimits())
    assert tree.get_payload() == "Just a note.\n"
    assert "OpeningDelimiterMissingDefect" not in parse_message(raw, ProcessingLimits()).defects


def test_close_delimiter_at_the_end_of_the_last_line_is_cut_from_the_text() -> None:
    parsed = _parse("mime-close-delimiter-in-text.eml")
    assert parsed.text == "The printer jams on every page.\nThanks"
    assert "CloseDelimiterInTextDefect" in parsed.defects


def test_close_delimiter_inside_a_line_is_text() -> None:
    """Only at the end of the last line, and only when no close delimiter line came."""
    raw = (b"From: a@b.example\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"--b\nContent-Type: text/plain\n\nsee --b-- here\n--b--\n")
    assert parse_message(raw, ProcessingLimits()).text.strip() == "see --b-- here"


def test_mistyped_boundary_is_taken_from_the_delimiter_lines() -> None:
    """The declared boundary never comes; the lines show the one the sender used."""
    parsed = _parse("mime-boundary-mistyped.eml")
    assert parsed.text.strip() == "Your message could not be delivered to bob@example.org."
    assert [a.content_type for a in parsed.attachments] == ["message/delivery-status"]
    assert "BoundaryGuessedDefect" in parsed.defects


def test_delimiters_written_without_their_leading_dashes() -> None:
    """``boundary="------=_NextPart"`` and delimiter lines that are the boundary itself."""
    parsed = _parse("mime-delimiters-without-dashes.eml")
    assert parsed.text.strip() == "The library received a gift of $240,000."
    assert parsed.attachments == ()


def test_multipart_without_boundary_parameter_takes_it_from_its_lines() -> None:
    raw = (b"From: a@b.example\nSubject: s\nContent-Type: multipart/report; report-type=x;\n"
           b"\tbo\n\n--JAB03225.98/host\nContent-Type: text/plain\n\nreturned mail\n"
           b"--JAB03225.98/host--\n")
    assert parse_message(raw, ProcessingLimits()).text.strip() == "returned mail"


def test_guessing_ignores_signature_separators_and_rules() -> None:
    raw = (b"From: a@b.example\nSubject: s\nContent-Type: multipart/mixed; boundary=gone\n\n"
           b"Thanks\n-- \nAlice\n-- \n------\n------\n")
    tree, _ = read_tree(raw, ProcessingLimits())
    assert not tree.is_multipart()
    assert parse_message(raw, ProcessingLimits()).text.startswith("Thanks\n-- \nAlice")


def test_boundary_in_use_is_the_first_recurring_delimiter_line() -> None:
    text = b"preamble\n-- \n------\n--old\n--real\nx\n--real--\n"
    assert boundary_in_use(text, 0, len(text)) == b"real"
    assert boundary_in_use(text, 0, text.index(b"--real--")) is None  # once is not enough


def test_boundary_guess_gives_up_on_text_full_of_dashes() -> None:
    """A sender's delimiters show early; thousands of dash lines are text, and cost no time."""
    text = b"".join(b"--token%d\n" % i for i in range(100)) + b"--real\n--real--\n"
    assert boundary_in_use(text, 0, len(text)) is None


def test_parameter_on_a_line_of_its_own_continues_the_field() -> None:
    """Office 365 delivery reports: ``boundary=`` below ``Content-Type: ...;`` without indent."""
    parsed = _parse("mime-parameter-own-line.eml")
    assert parsed.text.strip() == "example.org rejected your message to bob@example.org."
    assert parsed.html is not None and "rejected your message" in parsed.html
    assert [a.content_type for a in parsed.attachments] == ["message/delivery-status"]
    assert "ParameterOnItsOwnLineDefect" in parsed.defects


def test_a_field_after_a_semicolon_is_still_a_field() -> None:
    raw = (b"From: a@b.example\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"--b\nContent-Type: text/plain;\nContent-Disposition: inline\n\nhello\n")
    _, leaves = read_tree(raw, ProcessingLimits())
    assert leaves[0][0].get_content_disposition() == "inline"
    assert "ParameterOnItsOwnLineDefect" not in parse_message(raw, ProcessingLimits()).defects


def test_text_of_a_multipart_whose_boundary_never_came_is_the_body() -> None:
    """No body of its own: the text is what the sender wrote, only its structure is broken."""
    parsed = _parse("mime-boundary-never-found.eml")
    assert parsed.text.startswith("Hi there,\n\nThis is the dingus fish.")
    assert "StartBoundaryNotFoundDefect" in parsed.defects


def test_mail_parser_still_fails_on_an_inner_boundary_that_never_appears() -> None:
    """The fixture the stdlib-fallback test of the processing suite relies on."""
    parsed = _parse("mime-inner-boundary-missing.eml")
    assert parsed.text.strip() == "The printer is still broken."
    assert "mail-parser failed: AttributeError" in parsed.defects


def _reread(body: bytes, charset: bytes = b"utf-8") -> bytes:
    """A text part after a nested multipart whose boundary never comes: a fault to reread."""
    return (b"From: a@b.example\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
            b"--b\nContent-Type: multipart/related; boundary=never\n\n"
            b"--b\nContent-Type: text/plain; charset=" + charset + b"\n"
            b"Content-Transfer-Encoding: 8bit\n\n" + body + b"\n--b--\n")


def test_eight_bit_text_survives_the_reread() -> None:
    """Payloads keep their raw bytes: the charset still decodes them."""
    raw = _reread("Grüße aus Köln".encode())
    parsed = parse_message(raw, ProcessingLimits())
    assert parsed.text.strip() == "Grüße aus Köln"
    assert "MultipartReadInnermostFirstDefect" in parsed.defects
    latin = parse_message(_reread("Grüße".encode("latin-1"), b"iso-8859-1"), ProcessingLimits())
    assert latin.text.strip() == "Grüße"


def test_a_message_merely_cut_short_is_not_parsed_twice() -> None:
    """No close delimiter, nothing else wrong: both readings agree, the stdlib's is kept."""
    raw = (b"From: a@b.example\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"--b\nContent-Type: text/plain\n\nthe message was cut he")
    parsed = parse_message(raw, ProcessingLimits())
    assert parsed.text == "the message was cut he"
    assert "MultipartReadInnermostFirstDefect" not in parsed.defects


def test_delimiter_lines_in_a_row_open_one_part() -> None:
    raw = (b"From: a@b.example\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"--b\n--b\nContent-Type: text/plain\n\nonly part\n--b\nContent-Type: text/plain\n\n"
           b"second\n")
    leaves = check_shape(reread(raw, ProcessingLimits(), LenientMessage), ProcessingLimits())
    assert [part.get_payload() for part, _ in leaves] == ["only part", "second"]


def test_lone_carriage_returns_end_lines() -> None:
    """Old Mac mail: CR alone ends every line, delimiters included."""
    raw = _reread(b"one\rtwo").replace(b"\n", b"\r")
    assert parse_message(raw, ProcessingLimits()).text.strip() == "one\ntwo"


def _many_parts(count: int, *, nested: bool) -> bytes:
    head = b"From: a@b.example\nSubject: s\nContent-Type: multipart/mixed; boundary=b0\n\n"
    if nested:  # each part opens a multipart reusing no boundary, none closed
        body = b"".join(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1)
                        for i in range(count))
    else:  # reused boundaries and no close: a fault that sends the message to the reread
        body = b"".join(b"--b0\nContent-Type: text/plain\n\npart %d\n" % i for i in range(count))
    return head + body


@pytest.mark.parametrize(("nested", "which"), [(False, "parts"), (True, "depth")])
def test_limits_hold_in_the_reread(nested: bool, which: str) -> None:
    limits = ProcessingLimits(max_parts=20, max_depth=10)
    raw = _many_parts(30, nested=nested)
    with pytest.raises(LimitExceeded) as raised:
        reread(raw, limits, LenientMessage)
    assert raised.value.which == which
    with pytest.raises(LimitExceeded):
        parse_message(raw, limits)


def _shape(message: Message) -> list[object]:
    """Everything of a tree that the parse stage reads, defects aside."""
    found: list[object] = []
    for part in message.walk():
        content = part.get_payload()
        # An empty preamble or epilogue reads like none (the stdlib gives either).
        found.append((part.get_content_type(), list(part.items()), part.preamble or None,
                      part.epilogue or None,
                      None if isinstance(content, list) else vars(part).get("_payload")))
    return found


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.eml")))
def test_reread_of_a_sound_message_is_the_stdlibs_tree(name: str) -> None:
    """On every hand-made fixture the reread gives the stdlib's tree, except where it repairs."""
    raw = (FIXTURES / name).read_bytes()
    stdlib = BytesParser(_class=LenientMessage, policy=POLICY).parsebytes(raw)
    ours = reread(raw, ProcessingLimits(), LenientMessage)
    repaired = {"mime-reused-boundary.eml", "mime-delimiter-after-headers.eml",
                "mime-opening-delimiter-missing.eml", "mime-close-delimiter-in-text.eml",
                "reused-boundary-unclosed.eml", "mime-boundary-mistyped.eml",
                "mime-delimiters-without-dashes.eml", "mime-parameter-own-line.eml"}
    assert (_shape(ours) == _shape(stdlib)) is (name not in repaired)
