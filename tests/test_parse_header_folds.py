"""Header lines folded without leading white space: read as folds when headers follow."""

from __future__ import annotations

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
    raw = b"From: a@example.com\r\nX: 1\r\nstray\r\nY: 2\r\n" + b"Z: 3\r\n" * 100 + b"\r\nbody"
    assert repair_folds(raw, 64) == (raw, None)
    fixed, defect = repair_folds(raw, 4096)
    assert fixed.startswith(b"From: a@example.com\r\nX: 1\r\n stray\r\nY: 2\r\n")
    assert fixed.endswith(b"\r\nbody") and defect is not None


def test_lf_and_cr_line_ends_are_repaired_alike() -> None:
    for eol in (b"\n", b"\r"):
        raw = STRAY.replace(b"\r\n", eol)
        parsed = parse_message(raw, ProcessingLimits())
        assert parsed.message_id == "<fold@example.com>", eol
