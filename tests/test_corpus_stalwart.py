"""``parse_message`` against stalwart mail-parser's test corpus: crash-free, agreement reported.

The corpus is third-party data outside the repository (../shared/corpora, or
$INGESTD_CORPORA); without it the test skips. ``tests/corpus_expectations.py``
documents what "agree" means. Run with ``pytest -s`` to see the rates and every
disagreement with its reason.

Only crash-freedom is a hard requirement. The rates are reported, and asserted
only against a floor (today's figure minus a small margin) so that a change to
``parse.py`` that makes the parser agree less with stalwart fails here and is
looked at, rather than slipping through.
"""

from __future__ import annotations

import pytest

from tests.corpora import require_corpora
from tests.corpus_expectations import (
    STALWART_EML,
    Report,
    compare_stalwart,
    parse_failures,
)

# Measured 2026-12-04: corpus stalwartlabs/mail-parser 339a430 (107 messages with
# expectations), after boundary faults are re-read as mail clients read them
# (parse/boundaries.py) and the comparison pairs undecoded parts by their decoding
# (was 91/90 LF, 91/89 CRLF on 2026-11-25). Raise these when a fix makes more agree.
# Every remaining miss, with its reason ("convention" names one of ours that the
# docstring of tests/corpus_expectations.py describes):
#   text, both variants (16):
#     malformed/010, 012, thirdparty/007, 012: convention forward only.
#     malformed/002, 004: convention broken multipart (the boundary never appears;
#       its text, raw MIME lines in 004, is the body).
#     malformed/003, 006: convention flagged part (the text part no delimiter follows
#       stays the body).
#     malformed/019: convention empty plain text (its plain part's delimiter
#       "--Boundary42" differs in case from the boundary, so the plain text is
#       preamble and the HTML part is the only body). Its first line "Fro :..." (white
#       space before the colon, RFC 5322 obsolete syntax) is read as a header field
#       since 2026-12-04 (parse/headerfolds.py), so its Subject and MIME type are read.
#     malformed/009, 011: the outer "--1" ends the unclosed inner multipart (RFC 2046
#       5.1.2, as the stdlib and Thunderbird read it), so "22" and "333" are parts;
#       stalwart keeps them as one unterminated part; plus convention flagged part.
#     malformed/016: boundaries of 82, 81 and 80 characters, each a prefix of the one
#       before; stalwart takes the outer delimiter lines for the innermost multipart's
#       (prefix match), we match whole boundaries as the stdlib and Thunderbird do, so
#       the text holds the lines that follow; plus convention flagged part.
#     malformed/001: stalwart reads "--ab" (the outer boundary "ab") as a delimiter of
#       the inner "a" as well; we do not, so the text part holds "--a".
#     malformed/020, 021: two Content-Type fields in one part; stalwart takes the last
#       (text/plain) and shows the whole alternative, delimiters and HTML source
#       included, as text; we take the first (as the stdlib) and show the HTML part.
#       Kept on purpose (checked 2026-12-04): the mainstream readers take the first
#       too: Thunderbird's libmime (MimeHeaders_get without all_p stops at the first
#       field), MimeKit (MimeParser keeps the first Content-Type it reads), Go
#       (textproto.MIMEHeader.Get) and Python's email package.
#     thirdparty/002: base64 "...Cg== ignored": stalwart decodes past the padding ("\t"
#       and U+FFFD), the stdlib stops there; "?garbage" is decoded leniently (part_text)
#       where stalwart keeps it raw; plus convention flagged part.
#   Ten of the text misses (002, 003, 004, 006, 010, 012, 019, 001, thirdparty/007,
#   012) are stalwart's empty body where ours shows text that the message holds:
#   issue 16 itself calls "an empty body_text while the message has a non-empty text
#   or HTML part" a bug, so they cannot agree by design; the report prints the
#   agreement over the other 97 (91/97 LF, 90/97 CRLF).
#   text, CRLF only (1):
#     thirdparty/005: made CRLF, a UTF-16LE part ends on an odd byte; ours shows U+FFFD
#       for it, stalwart drops it.
#   attachments, both variants (12):
#     malformed/001, 003, 004, 006, 007, 008, 009, 011, 016, thirdparty/002: convention
#       flagged part (009, 011, 016, 001 also read otherwise, as above).
#     malformed/012: as 009, the outer delimiter ends the inner multipart, so ours has
#       three enclosed messages and stalwart two.
#     thirdparty/015: three attached messages of header fields only, no blank line
#       before the next delimiter; stalwart's header reader runs past the delimiter
#       after the first and swallows the other two; ours has the three the sender sent.
#   (rfc/001 and, in CRLF, thirdparty/009 agree since message/* parts are stored
#   byte-exact; legacy/033 and 052, where stalwart has U+FFFD for Latin-1 bytes that
#   ours reads in windows-1252, agree by the U+FFFD rule of corpus_expectations.py.)
#   variant: (text agreed, attachments agreed, messages)
MEASURED = {
    "lf": (91, 95, 107),
    "crlf": (90, 95, 107),
}
MARGIN = 0.02  # two messages in a hundred: room for a deliberate trade-off, not a regression


def _rate(agreed: int, total: int) -> float:
    return agreed / total if total else 0.0


def _differences(report: Report, reference: Report) -> str:
    """The report's rates, and only the verdicts that differ from the reference's."""
    before = {r.name: r for r in reference.results}
    lines = report.format().splitlines()[:4]
    lines.append(f"  verdicts that differ from {reference.variant.upper()}:")
    for result in report.results:
        other = before.get(result.name)
        for what in ("text", "attachments"):
            verdict = getattr(result, what)
            if other is None or verdict.agree != getattr(other, what).agree:
                state = "agrees" if verdict.agree else f"disagrees: {verdict.reason}"
                lines.append(f"    {result.name} {what} {state}")
    return "\n".join(lines)


def test_stalwart_corpus_agreement() -> None:
    root = require_corpora()
    if not (root / STALWART_EML).is_dir():
        pytest.skip(f"stalwart corpus not found under {root / STALWART_EML}")

    reports: dict[str, Report] = {v: compare_stalwart(root, v) for v in MEASURED}
    as_stored = parse_failures(root)
    print()
    print(reports["lf"].format())
    print(_differences(reports["crlf"], reports["lf"]))

    raised = [f"{r.name} ({v}): {r.error}" for v, rep in reports.items() for r in rep.errors]
    raised += [f"{name} (as stored): {error}" for name, error in as_stored]
    assert raised == [], "parse_message raised:\n" + "\n".join(raised)

    for variant, report in reports.items():
        text, attachments, total = MEASURED[variant]
        assert report.total > 0
        if report.total != total:
            print(f"note: {variant} corpus has {report.total} messages, the floors were "
                  f"measured on {total}")
        for what, agreed, was in (("text", report.text_agreed, text),
                                  ("attachments", report.attachments_agreed, attachments)):
            floor = _rate(was, total) - MARGIN
            assert _rate(agreed, report.total) >= floor, (
                f"{variant} {what} agreement fell to {agreed}/{report.total}, below the floor "
                f"{floor:.3f} ({was}/{total} measured, minus {MARGIN}); see the disagreements "
                "printed above"
            )
