"""What intake reads of a header for the log: Subject and Message-ID, bounded in bytes and CPU."""

from __future__ import annotations

import base64
import smtplib
import time
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest

from ingestd.intake import source
from ingestd.intake.headers import SUBJECT_RAW_BYTES, SUMMARY_HEADER_BYTES, summary_headers
from ingestd.intake.smtp import SmtpSource
from ingestd.mailbytes import header_block
from ingestd.mailtext import POLICY, decode_words
from tests.conftest import FIXTURES

FROM = b"From: Alice <alice@acme.example>\r\n"
TO = b"To: support@example.com\r\n"
DATE = b"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"


def b_word(text: str) -> str:
    """``text`` as one RFC 2047 B-encoded UTF-8 word."""
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def folded_subject(words: list[str], size: int) -> bytes:
    """A Subject field of ``words`` repeated and folded, about ``size`` bytes long."""
    value = ""
    while len(value) < size:
        value += "".join(w + "\r\n " for w in words)
    return b"Subject: " + value.rstrip().encode() + b"\r\n"


def message(*fields: bytes, body: bytes = b"body\r\n") -> bytes:
    return b"".join(fields) + b"\r\n" + body


def stdlib_summary(raw: bytes) -> tuple[str | None, str | None]:
    """What intake logged before issue 15: the stdlib parser over the whole header block."""
    headers = BytesHeaderParser(policy=POLICY).parsebytes(header_block(raw))
    subject, message_id = headers.get("Subject"), headers.get("Message-ID")

    def clean(text: str) -> str:
        text = text.encode("utf-8", "replace").decode("utf-8")
        return text.replace("\x00", "").replace("\r", " ").replace("\n", " ").strip()

    return (None if subject is None else clean(decode_words(str(subject)))[:2000],
            None if message_id is None else clean(str(message_id))[:998] or None)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.eml")), ids=lambda p: p.name)
def test_reads_what_the_stdlib_parser_reads_on_every_fixture(path: Path) -> None:
    """On every fixture message the byte scan logs what parsing the whole header logged."""
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # the files source drops a BOM
    assert summary_headers(raw) == stdlib_summary(raw)


@pytest.mark.parametrize("ending", [b"\r\n", b"\n", b"\r"], ids=["crlf", "lf", "cr"])
@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_fields_are_found_at_any_position(ending: bytes, position: str) -> None:
    """Subject and Message-ID are found on the first line, between others, or last."""
    wanted = [b"Subject: Printer broken", b"Message-ID: <m1@acme.example>"]
    others = [b"From: a@acme.example", b"To: support@example.com", b"Date: today"]
    lines = {"first": wanted + others, "middle": others[:1] + wanted + others[1:],
             "last": others + wanted}[position]
    raw = ending.join(lines) + ending + ending + b"body" + ending
    assert summary_headers(raw) == ("Printer broken", "<m1@acme.example>")


def test_field_names_are_matched_in_any_case() -> None:
    """SUBJECT, subject, Message-Id and MESSAGE-ID are the same fields."""
    for subject, message_id in [(b"SUBJECT", b"MESSAGE-ID"), (b"subject", b"message-id"),
                                (b"sUbJeCt", b"Message-Id")]:
        raw = message(FROM, subject + b": Hello\r\n", message_id + b": <a@b>\r\n")
        assert summary_headers(raw) == ("Hello", "<a@b>")


def test_folded_values_are_read_whole_and_unfolded() -> None:
    """Continuation lines belong to the field; the next field does not."""
    raw = message(FROM, b"Subject: Printer on\r\n floor 2\r\n\tis broken\r\n",
                  b"Message-ID:\r\n <folded@acme.example>\r\n", TO)
    subject, message_id = summary_headers(raw)
    assert subject is not None
    assert subject.split() == ["Printer", "on", "floor", "2", "is", "broken"]
    assert message_id == "<folded@acme.example>"
    assert summary_headers(raw) == stdlib_summary(raw)


def test_the_first_of_two_fields_counts() -> None:
    """A second Subject or Message-ID is ignored, as Message.get ignores it."""
    raw = message(b"Subject: one\r\n", b"Message-ID: <1@a>\r\n", b"Subject: two\r\n",
                  b"Message-ID: <2@a>\r\n")
    assert summary_headers(raw) == ("one", "<1@a>")


def test_fields_in_the_body_are_not_read() -> None:
    """What follows the blank line is body, even when it looks like a header."""
    raw = message(FROM, TO, body=b"Subject: not this\r\nMessage-ID: <nor@this>\r\n")
    assert summary_headers(raw) == (None, None)
    lf = b"From: a@b\nTo: c@d\n\nSubject: not this\n"
    assert summary_headers(lf) == (None, None)


def test_absent_or_unreadable_fields_are_none() -> None:
    """No header, an empty header block, or bytes that are no mail give None, never an error."""
    assert summary_headers(b"") == (None, None)
    assert summary_headers(b"\r\nSubject: body line\r\n") == (None, None)
    assert summary_headers(bytes(range(256)) * 300) == (None, None)
    assert summary_headers(message(b"Subject:\r\n", b"Message-ID: \r\n")) == ("", None)


def test_encoded_words_and_8bit_bytes_are_decoded() -> None:
    """RFC 2047 words decode; raw 8-bit bytes read as UTF-8, else windows-1252."""
    raw = message(b"Subject: " + b_word("Grüße").encode() + b" aus =?iso-8859-1?q?K=F6ln?=\r\n")
    assert summary_headers(raw)[0] == "Grüße aus Köln"
    assert summary_headers(message(b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n"))[0] == "Grüße"
    assert summary_headers(message(b"Subject: Gr\xfc\xdfe \x80\r\n"))[0] == "Grüße €"
    raw = message(b"Message-ID: <caf\xe9@acme.example>\r\n")
    assert summary_headers(raw)[1] == "<café@acme.example>"


def test_nul_and_line_breaks_are_never_kept() -> None:
    """NUL, CR and LF inside values never reach the log fields."""
    raw = message(b"Subject: nul\x00inside\r\n and =?utf-8?q?a=00b?=\r\n",
                  b"Message-ID: <\x00m@a>\r\n")
    subject, message_id = summary_headers(raw)
    assert subject is not None and message_id == "<m@a>"
    assert not {"\x00", "\r", "\n"} & set(subject)
    assert subject.startswith("nulinside")


def test_a_long_subject_is_cut_to_the_stored_length() -> None:
    """However long the Subject, at most 2,000 characters are kept, read from its start."""
    # Words as mail programs fill them (up to 75 characters): 4 KB give 2,000 characters.
    raw = message(FROM, folded_subject([b_word("Rechnung 4711 vom 1. Dezember 2026, ")], 50_000))
    subject = summary_headers(raw)[0]
    assert subject is not None and len(subject) == 2000
    assert subject.startswith("Rechnung 4711 vom 1. Dezember 2026, Rechnung 4711")
    plain = summary_headers(message(b"Subject: " + b"plain text " * 5000 + b"\r\n"))[0]
    assert plain == ("plain text " * 200)[:2000]


@pytest.mark.parametrize("words", [
    [b_word("Grüße aus Köln, ")],
    ["=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln=2C_?="],
    # One character's bytes split across two words (the stdlib joins them).
    ["=?utf-8?q?Gr=C3?=", "=?utf-8?q?=BC=C3=9Fe_?="],
], ids=["b", "q", "split-character"])
def test_a_subject_cut_before_decoding_never_ends_in_garbage(words: list[str]) -> None:
    """Wherever the cut falls in an encoded word, the result is a clean start of the Subject."""
    for shift in range(90):  # moves the cut through every position of a word
        value = ("x" * shift + " " + "\r\n ".join(words * 200)).encode()
        assert len(value) > SUBJECT_RAW_BYTES
        subject = summary_headers(message(b"Subject: " + value + b"\r\n"))[0]
        whole = decode_words(value.decode()).replace("\r", " ").replace("\n", " ").strip()
        assert subject is not None and len(subject) > 400
        assert whole.startswith(subject), shift
        assert "=?" not in subject and "\ufffd" not in subject


@pytest.mark.parametrize("shift", [0, 1])
def test_a_cut_inside_an_8bit_character_keeps_the_subject_utf8(shift: int) -> None:
    """A cut between the bytes of a raw UTF-8 character must not turn it all into windows-1252."""
    raw = message(b"Subject: " + b"a" * shift + "ü".encode() * 3000 + b"\r\n")
    assert summary_headers(raw)[0] == ("a" * shift + "ü" * 3000)[:2000]


def test_fields_beyond_the_window_are_not_read() -> None:
    """A field that starts past SUMMARY_HEADER_BYTES is not logged; one just inside is."""
    padding = b"".join(b"X-Pad-%05d: %s\r\n" % (i, b"p" * 40) for i in range(2000))

    def with_fields_at(offset: int) -> bytes:
        return message(padding[:offset - len(padding[:offset].rsplit(b"\n", 1)[-1])],
                       b"Subject: late\r\n", b"Message-ID: <late@a>\r\n")

    inside = with_fields_at(SUMMARY_HEADER_BYTES - 200)
    assert summary_headers(inside) == ("late", "<late@a>")
    beyond = with_fields_at(SUMMARY_HEADER_BYTES + 200)
    assert summary_headers(beyond) == (None, None)


def test_a_256_kb_header_of_encoded_words_costs_little_cpu() -> None:
    """A Subject of encoded words filling a 256 KB header is summarised in milliseconds."""
    words = ["=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln=2C_Rechnung_4711?=", b_word("für März ")]
    raw = message(FROM, TO, folded_subject(words, 256 * 1024), b"Message-ID: <big@a>\r\n")
    assert len(raw) > 256 * 1024
    spent = []
    for _ in range(3):
        started = time.process_time()
        subject, _message_id = summary_headers(raw)
        spent.append(time.process_time() - started)
    # Parsing the whole header took about 40 ms of CPU here; the scan takes under 1 ms.
    assert min(spent) < 0.010
    assert subject is not None and 1000 < len(subject) <= 2000
    assert subject.startswith("Grüße aus Köln, Rechnung 4711für März")


def test_the_commit_thread_reads_no_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """A NewMessage carries its log fields from creation; row() only copies them."""
    raw = message(FROM, b"Subject: Printer broken\r\n", b"Message-ID: <m1@acme.example>\r\n")
    new = SmtpSource().message(raw, "support")
    assert (new.subject, new.message_id) == ("Printer broken", "<m1@acme.example>")

    def no_header_work(raw: bytes) -> tuple[str | None, str | None]:
        raise AssertionError("row() read the header")

    monkeypatch.setattr(source, "summary_headers", no_header_work)
    row = new.row()
    assert (row["subject"], row["message_id"]) == ("Printer broken", "<m1@acme.example>")


def test_a_200_kb_encoded_word_header_is_stored_with_its_subject_cut(daemon: Any) -> None:
    """Over SMTP, a 200 KB Subject of encoded words is stored, its subject cut to 2,000 chars."""
    words = [b_word("Ihre Rechnung Nr. 4711 vom 1. Dezember "), b_word("bitte prüfen Sie ")]
    raw = message(FROM, TO, DATE, folded_subject(words, 200 * 1024),
                  b"Message-ID: <heavy@acme.example>\r\n")
    assert len(raw) > 200 * 1024
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        assert client.sendmail("alice@acme.example", ["support@example.com"], raw) == {}
    [row] = daemon.rows()
    assert bytes(row.raw) == raw
    assert len(row.subject) == 2000
    assert row.subject.startswith("Ihre Rechnung Nr. 4711 vom 1. Dezember bitte prüfen Sie Ihre")
    assert row.message_id is None  # beyond the first 32 KB: processing reads it
