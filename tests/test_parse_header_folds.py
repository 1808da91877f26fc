"""Header lines folded without leading white space: read as folds when headers follow."""

from __future__ import annotations

import pytest

from ingestd.config.settings import ProcessingLimits
from ingestd.pipeline.stages.parse import parse_message
from ingestd.pipeline.stages.parse.headerfolds import repair_folds

STRAY = (b"From: Alice <alice@example.com>\r\n"
         b"Subject: a subject that a mailer wrapped\r\n"
         b"onto a second line without indenting it\r\n"
         b"Message-ID: <fold@example.com>\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\n"
         b"\r\n"
         b"The body.\r\n")


def test_a_stray_line_between_header_fields_continues_the_field_before_it() -> None:
    """Headers after the stray line are kept, and the body is only the body."""
    parsed = parse_message(STRAY, ProcessingLimits())
    assert parsed.subject == ("a subject that a mailer wrapped "
                              "onto a second line without indenting it")
    assert parsed.message_id == "<fold@example.com>"
    assert parsed.text.strip() == "The body."
    assert "1 header line(s) without leading white space read as folded" in parsed.defects


def test_text_after_the_header_is_not_taken_for_a_fold() -> None:
    """No blank line before the body: the body text stays body text."""
    raw = (b"From: a@example.com\nSubject: s\nHello there,\nthe printer is broken.\n"
           b"Regards, Bob\n")
    repaired, defect = repair_folds(raw, 4096)
    assert (repaired, defect) == (raw, None)
    assert "the printer is broken." in parse_message(raw, ProcessingLimits()).text


def test_a_boundary_right_after_the_header_is_not_joined() -> None:
    """A multipart body that starts without a blank line keeps its boundary line."""
    raw = (b"From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n--b\n"
           b"Content-Type: text/plain\n\nhello\n--b--\n")
    assert repair_folds(raw, 4096) == (raw, None)


def test_only_the_header_block_within_the_limit_is_read() -> None:
    """A header block not closed within the limit is left for the header limit to refuse."""
    raw = (b"From: a@example.com\r\nX-A: 1\r\nstray\r\nX-B: 2\r\n" + b"X-C: 3\r\n" * 100
           + b"\r\nbody")
    assert repair_folds(raw, 64) == (raw, None)
    fixed, defect = repair_folds(raw, 4096)
    assert fixed.startswith(b"From: a@example.com\r\nX-A: 1\r\n stray\r\nX-B: 2\r\n")
    assert fixed.endswith(b"\r\nbody") and defect is not None


def test_lf_and_cr_line_ends_are_repaired_alike() -> None:
    for eol in (b"\n", b"\r"):
        raw = STRAY.replace(b"\r\n", eol)
        parsed = parse_message(raw, ProcessingLimits())
        assert parsed.message_id == "<fold@example.com>", eol


CONTACT_FORM = (b"From: web@shop.example\r\nTo: sales@example.com\r\n"
                b"Subject: Contact form\r\n")


def test_a_body_of_form_fields_is_not_read_as_header_fields() -> None:
    """Contact-form mail: "Name:" and "Email:" lines after a stray line stay the body."""
    raw = (CONTACT_FORM + b"New submission from the website\r\n"
           b"Name: John\r\nEmail: j@x.example\r\nMessage: hi\r\n\r\nSent by the form\r\n")
    assert repair_folds(raw, 4096) == (raw, None)
    parsed = parse_message(raw, ProcessingLimits())
    assert parsed.subject == "Contact form"
    assert "Name: John\nEmail: j@x.example\nMessage: hi" in parsed.text


def test_a_form_body_after_a_blank_line_is_the_body() -> None:
    """The ordinary contact form: a blank line, then "Key: value" lines, all body."""
    raw = CONTACT_FORM + b"\r\nName: John\r\nEmail: j@x.example\r\nMessage: hi\r\n"
    parsed = parse_message(raw, ProcessingLimits())
    assert parsed.text == "Name: John\nEmail: j@x.example\nMessage: hi\n"
    assert not any("folded" in d for d in parsed.defects)


def test_a_stray_line_is_a_fold_only_when_the_block_is_closed() -> None:
    """A form body whose own fields are known names, no blank line before it: unchanged."""
    raw = CONTACT_FORM + b"New enquiry\r\nFrom: John Smith\r\nSubject: a quote\r\n"
    assert repair_folds(raw, 4096) == (raw, None)
    assert "From: John Smith" in parse_message(raw, ProcessingLimits()).text


@pytest.mark.parametrize("name", [b"Name", b"Email", b"Phone", b"Order"])
def test_only_a_known_field_name_after_a_stray_line_makes_it_a_fold(name: bytes) -> None:
    """The same block is repaired when Message-ID follows the stray line, not when ``name`` does."""
    body = b"\r\n\r\nbody\r\n"
    known = CONTACT_FORM + b"wrapped\r\nMessage-ID: <m@x>\r\n" + name + b": 1" + body
    unknown = CONTACT_FORM + b"wrapped\r\n" + name + b": 1\r\nMessage-ID: <m@x>" + body
    assert repair_folds(known, 4096)[1] is not None
    assert repair_folds(unknown, 4096) == (unknown, None)


def test_white_space_before_a_header_colon_does_not_end_the_header() -> None:
    """``Subject :`` (obsolete syntax): the fields after it are still header fields."""
    raw = (b"From : Alice <alice@example.com>\r\nSubject  : the subject\r\n"
           b"Message-ID: <spaced@example.com>\r\nContent-Type: text/plain\r\n\r\nThe body.\r\n")
    parsed = parse_message(raw, ProcessingLimits())
    assert parsed.from_address == "alice@example.com"
    assert parsed.subject == "the subject"
    assert parsed.message_id == "<spaced@example.com>"
    assert parsed.text.strip() == "The body."
    assert any("white space before the colon" in d for d in parsed.defects)


def test_an_unknown_spaced_name_needs_a_known_field_after_it() -> None:
    """A form line "Note : hi" with no known field after it is left alone."""
    raw = CONTACT_FORM + b"Note : hi\r\nName: John\r\n\r\nbody\r\n"
    assert repair_folds(raw, 4096) == (raw, None)
    fixed, defect = repair_folds(CONTACT_FORM.replace(b"From:", b"Fro :") + b"\r\nbody", 4096)
    assert fixed.startswith(b"Fro: web@shop.example\r\n") and defect is not None
