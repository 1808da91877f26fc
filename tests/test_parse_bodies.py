"""Bodies: every HTML part's text kept, no empty body while there were words, LF line ends."""

from __future__ import annotations

import base64

from ingestd.config.settings import ProcessingLimits
from ingestd.pipeline.stages.parse import parse_message


def _multipart(*parts: tuple[str, str]) -> bytes:
    body = "".join(f"--b\r\nContent-Type: {kind}; charset=utf-8\r\n\r\n{text}\r\n"
                   for kind, text in parts)
    return ("From: a@b.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body + "--b--\r\n").encode()


def test_every_html_part_reaches_the_text() -> None:
    """Two whole HTML documents (a forward appended): the text holds both, not just the first."""
    raw = _multipart(("text/html", "<html><body><p>First part</p></body></html>"),
                     ("text/html", "<html><body><p>Second part</p></body></html>"))
    parsed = parse_message(raw, ProcessingLimits())
    assert "First part" in parsed.text and "Second part" in parsed.text
    assert parsed.html is not None and "Second part" in parsed.html


def test_html_that_lays_out_to_nothing_falls_back_to_its_words() -> None:
    """Markup inscriptis renders as empty still gives its words, and a defect says so."""
    raw = _multipart(("text/html", "<html><head><title>Invoice 42 attached</title></head>"
                                   "</html>"))
    parsed = parse_message(raw, ProcessingLimits())
    assert "Invoice 42 attached" in parsed.text
    assert "HTML rendered to no text; tags stripped instead" in parsed.defects


def test_body_text_line_ends_are_lf() -> None:
    """CRLF, CR CR LF and lone CR in a text part all become LF in the stored text."""
    raw = (b"From: a@b.example\r\nSubject: s\r\nContent-Type: text/plain\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n")
    raw += base64.b64encode(b"one\r\ntwo\r\r\nthree\rfour\n") + b"\r\n"
    assert parse_message(raw, ProcessingLimits()).text.startswith("one\ntwo\nthree\nfour")


def _attachment_names(*parts: str) -> list[str]:
    body = "".join(f"--b\r\n{headers}\r\n\r\ncontent\r\n" for headers in parts)
    raw = ("From: a@b.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           "Content-Type: text/plain\r\n\r\nbody\r\n" + body + "--b--\r\n").encode()
    return [a.filename for a in parse_message(raw, ProcessingLimits()).attachments]


def test_unnamed_parts_are_named_from_what_they_are() -> None:
    """No filename: the description, the enclosed subject or the type names the part."""
    names = _attachment_names(
        "Content-Type: image/gif\r\nContent-Disposition: inline",
        "Content-Type: text/calendar; method=REQUEST\r\nContent-Disposition: attachment",
        "Content-Type: application/pdf\r\nContent-Description: Scan of invoice 42",
        "Content-Type: message/delivery-status",
        "Content-Type: application/octet-stream",
        "Content-Type: message/rfc822\r\n\r\nSubject: Quarterly report\r\nFrom: c@d.example",
        "Content-Type: image/png; name=logo.png",
        "Content-Type: application/x-pkcs7-signature",
        "Content-Type: application/x-whatever",
        "Content-Type: application/andrew-inset",
    )
    assert names == ["image.gif", "calendar.ics", "Scan of invoice 42.pdf",
                     "delivery-status.txt", "attachment.bin", "Quarterly report.eml", "logo.png",
                     "smime.p7s", "whatever.bin", "andrew-inset.bin"]


def test_a_multipart_whose_boundary_never_comes_is_named_as_text() -> None:
    """The raw text of a broken multipart is a text file, not attachment.bin."""
    raw = (b"From: a@b.example\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n"
           b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\n"
           b"Content-Type: multipart/alternative; boundary=never\r\n\r\nsome text\r\n--b--\r\n")
    names = [a.filename for a in parse_message(raw, ProcessingLimits()).attachments]
    assert names == ["multipart-alternative.txt"]
