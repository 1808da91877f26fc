"""TNEF (Outlook's winmail.dat): the files inside become attachments, the original stays.

The streams are built here, attribute by attribute (MS-OXTNEF), so that each
case is exactly the one under test.
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import time

import pytest

from ingestd.config.settings import ProcessingLimits
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse import parse_message
from ingestd.pipeline.stages.parse.attachments import attachments
from ingestd.pipeline.stages.parse.limits import read_tree
from ingestd.pipeline.stages.parse.rtf import decompressed_rtf
from ingestd.pipeline.stages.parse.tnef import read_tnef

LIMITS = ProcessingLimits()
IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")
STRING8, UNICODE, BINARY, OBJECT, LONG, BOOLEAN = 0x1E, 0x1F, 0x102, 0x0D, 0x03, 0x0B


def attribute(level: int, ident: int, value: bytes) -> bytes:
    return (struct.pack("<BHHI", level, ident, 6, len(value)) + value
            + struct.pack("<H", sum(value) & 0xFFFF))


def prop(kind: int, ident: int, value: bytes) -> bytes:
    padding = b"\0" * (-len(value) % 4)
    if kind in (STRING8, UNICODE, BINARY, OBJECT):
        return struct.pack("<HHII", kind, ident, 1, len(value)) + value + padding
    return struct.pack("<HH", kind, ident) + value + padding


def props(*items: bytes) -> bytes:
    return struct.pack("<I", len(items)) + b"".join(items)


def stream(*attributes: bytes) -> bytes:
    return b"\x78\x9f\x3e\x22\x01\x00" + b"".join(attributes)


def file_by_title(title: bytes, data: bytes, *mapi: bytes) -> bytes:
    """An attachment the old way: attAttachTitle and attAttachData (plus MAPI properties)."""
    return (attribute(2, 0x9002, b"\x01\x00\xff\xff\xff\xff" + b"\0" * 8)
            + attribute(2, 0x8010, title + b"\0") + attribute(2, 0x800F, data)
            + (attribute(2, 0x9005, props(*mapi)) if mapi else b""))


def file_by_property(*mapi: bytes) -> bytes:
    """An attachment as Outlook 2007 and later write it: all in MAPI properties."""
    return attribute(2, 0x9002, b"\x01\x00\xff\xff\xff\xff" + b"\0" * 8) \
        + attribute(2, 0x9005, props(*mapi))


CODEPAGE_1252 = attribute(1, 0x9007, struct.pack("<II", 1252, 0))
DOC = b"\xd0\xcf\x11\xe0 a document that ends in NUL bytes" + b"\0" * 7
PNG = b"\x89PNG\r\n\x1a\n not really an image"


def outlook_mail(tnef: bytes, *, text: bytes | None = b"See attached.\r\n",
                 tnef_type: bytes = b"application/ms-tnef") -> bytes:
    body = (b"--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + text
            if text is not None else b"")
    return (
        b"From: Outlook User <user@example.com>\r\nTo: desk@example.com\r\n"
        b'Subject: report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n'
        b"\r\n" + body
        + b"--b\r\nContent-Type: " + tnef_type + b'; name="winmail.dat"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="winmail.dat"\r\n\r\n'
        + base64.encodebytes(tnef) + b"\r\n--b--\r\n"
    )


def two_files() -> bytes:
    return stream(
        CODEPAGE_1252,
        file_by_title(b"PRFBER~1.DOC", DOC,
                      prop(STRING8, 0x3707, "Prüfbericht März.doc".encode("cp1252"))),
        file_by_property(
            prop(UNICODE, 0x3707, "logo <1>.png\0".encode("utf-16-le")),
            prop(BINARY, 0x3701, PNG),
            prop(STRING8, 0x370E, b"image/png"),
            prop(STRING8, 0x3712, b"logo@01D1"),
            prop(BOOLEAN, 0x7FFE, b"\x01\x00"),
        ),
    )


def test_files_expanded_after_the_original() -> None:
    tnef = two_files()
    parsed = parse_message(outlook_mail(tnef), LIMITS)
    original, doc, png = parsed.attachments
    assert (original.filename, original.content_type, original.content) == \
        ("winmail.dat", "application/ms-tnef", tnef)
    # The long filename, in the stream's code page; NUL bytes at the end kept.
    assert (doc.filename, doc.content_type, doc.content) == \
        ("Prüfbericht März.doc", "application/msword", DOC)
    assert doc.sha256 == hashlib.sha256(DOC).hexdigest()
    # A UTF-16 name; an image shown in the body keeps its Content-ID.
    assert (png.filename, png.content_type, png.content) == ("logo <1>.png", "image/png", PNG)
    assert (png.content_id, png.inline) == ("logo@01D1", True)
    assert parsed.text == "See attached."
    assert parsed.defects == ()


def test_names_are_sanitised_and_types_guessed_from_them() -> None:
    tnef = stream(file_by_property(prop(STRING8, 0x3707, b"..\\..\\evil\xe2\x80\xae.exe"),
                                   prop(BINARY, 0x3701, b"MZ")),
                  file_by_property(prop(BINARY, 0x3701, b"%PDF"),
                                   prop(STRING8, 0x370E, b"application/pdf")))
    _, evil, unnamed = parse_message(outlook_mail(tnef), LIMITS).attachments
    assert "/" not in evil.filename and "\\" not in evil.filename and ".." not in evil.filename
    assert "\u202e" not in evil.filename
    # No name at all: the type Outlook recorded, and a name from it.
    assert (unnamed.filename, unnamed.content_type) == ("attachment.pdf", "application/pdf")


def test_attached_outlook_item_is_one_file() -> None:
    inner = stream(file_by_title(b"inner.txt", b"belongs to the inner message"))
    tnef = stream(file_by_title(
        b"Untitled Attachment",
        b"This attachment is a MAPI 1.0 embedded message and is not supported\0",
        prop(OBJECT, 0x3701, IMESSAGE + inner),
    ))
    _, item = parse_message(outlook_mail(tnef), LIMITS).attachments
    # The item itself, not Outlook's placeholder text, and not its own files.
    assert (item.filename, item.content_type, item.content) == \
        ("Untitled Attachment", "application/vnd.ms-tnef", inner)


def rtf(text: bytes) -> bytes:
    """``text`` as compressed RTF: a dictionary reference for "{\\rtf1\\ansi", then literals."""
    assert text.startswith(b"{\\rtf1\\ansi") and len(text) == 15
    end = 207 + len(text)
    body = b"\x21" + struct.pack(">H", 11 - 2) + text[11:] + struct.pack(">H", end << 4)
    return struct.pack("<IIII", len(body) + 12, len(text), 0x75465A4C, 0) + body


def test_compressed_rtf() -> None:
    assert decompressed_rtf(rtf(b"{\\rtf1\\ansi hi}"), limit=100) == b"{\\rtf1\\ansi hi}"
    assert decompressed_rtf(rtf(b"{\\rtf1\\ansi hi}"), limit=10) is None  # over the budget
    assert decompressed_rtf(b"\x00" * 20, limit=100) is None
    assert decompressed_rtf(rtf(b"{\\rtf1\\ansi hi}")[:20], limit=100) is None


@pytest.mark.parametrize(("body", "name", "content"), [
    (prop(BINARY, 0x1013, b"<p>Hello</p>"), "body.html", b"<p>Hello</p>"),
    (prop(BINARY, 0x1009, rtf(b"{\\rtf1\\ansi hi}")), "body.rtf", b"{\\rtf1\\ansi hi}"),
    (prop(UNICODE, 0x1000, "Grüße\0".encode("utf-16-le")), "body.txt", "Grüße".encode()),
])
def test_body_kept_as_a_file_when_the_message_has_none(body: bytes, name: str,
                                                         content: bytes) -> None:
    tnef = stream(attribute(1, 0x9003, props(body)), file_by_title(b"a.txt", b"a"))
    without = parse_message(outlook_mail(tnef, text=None), LIMITS)
    assert [(a.filename, a.content) for a in without.attachments[1:]] == \
        [("a.txt", b"a"), (name, content)]
    with_text = parse_message(outlook_mail(tnef), LIMITS)
    assert [a.filename for a in with_text.attachments] == ["winmail.dat", "a.txt"]


def test_part_limit_counts_expanded_files() -> None:
    tnef = stream(*(file_by_title(f"f{i}.txt".encode(), b"x") for i in range(5)))
    _, leaves = read_tree(outlook_mail(tnef), LIMITS)
    defects: list[str] = []
    found = attachments(leaves, defects, ProcessingLimits(max_parts=len(leaves) + 3))
    assert [a.filename for a in found] == ["winmail.dat", "f0.txt", "f1.txt", "f2.txt"]
    assert defects == ["TNEF attachment winmail.dat: 2 files over the part limit or size "
                       "budget not expanded; they stay inside it"]


def test_not_tnef_is_kept_with_a_defect() -> None:
    parsed = parse_message(outlook_mail(b"plain bytes, no TNEF"), LIMITS)
    assert [a.content for a in parsed.attachments] == [b"plain bytes, no TNEF"]
    assert parsed.defects == ("TNEF attachment winmail.dat is not TNEF; kept as it is",)
    # Only the name says TNEF: nothing to report.
    quiet = parse_message(outlook_mail(b"plain", tnef_type=b"application/octet-stream"), LIMITS)
    assert quiet.defects == ()


def test_tnef_of_an_enclosed_message_stays_with_it() -> None:
    inner = outlook_mail(stream(file_by_title(b"inner.txt", b"inner")))
    raw = (b"From: a@example.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\n'
           b"Content-Type: text/plain\r\n\r\nforwarded\r\n--o\r\n"
           b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--o--\r\n")
    parsed = parse_message(raw, LIMITS)
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"]


def test_damaged_streams_keep_what_was_read() -> None:
    good = two_files()
    cut = parse_message(outlook_mail(good[:-40]), LIMITS)
    assert [a.filename for a in cut.attachments] == ["winmail.dat", "Prüfbericht März.doc"]
    assert any("truncated" in d or "damaged" in d for d in cut.defects)
    tail = parse_message(outlook_mail(good + b"junk"), LIMITS)
    assert len(tail.attachments) == 3
    assert tail.defects == ("TNEF attachment winmail.dat: bytes after the last attribute "
                            "ignored",)


def _hostile() -> list[bytes]:
    many_properties = attribute(1, 0x9003, struct.pack("<I", 0xFFFFFFFF) + b"\0" * 8)
    many_values = attribute(1, 0x9003, struct.pack("<IHHI", 1, 0x1002, 0x0001, 0xFFFFFFFF))
    tiny_attributes = attribute(1, 0x8020, b"") * 150_000  # 1.6 MB of 11-byte attributes
    many_files = attribute(2, 0x9002, b"") * 100_000
    huge_rtf = attribute(1, 0x9003, props(prop(BINARY, 0x1009, struct.pack(
        "<IIII", 100, 0xFFFFFFF0, 0x75465A4C, 0) + b"\xff" * 84)))
    return [stream(many_properties), stream(many_values), stream(tiny_attributes),
            stream(many_files), stream(huge_rtf), stream(attribute(7, 1, b"x") * 3)]


@pytest.mark.parametrize("tnef", _hostile(), ids=["properties", "values", "attributes",
                                                  "files", "rtf", "level"])
def test_hostile_counts_cost_linear_work(tnef: bytes) -> None:
    started = time.perf_counter()
    content = read_tnef(tnef, max_files=1000, max_bytes=len(tnef), want_body=True)
    # Generous: each takes milliseconds; the unchecked counts would take hours.
    assert time.perf_counter() - started < 2
    assert len(content.files) <= 1000


def test_random_damage_never_raises() -> None:
    good = stream(attribute(1, 0x9003, props(prop(BINARY, 0x1009, rtf(b"{\\rtf1\\ansi hi}")))),
                  CODEPAGE_1252) + two_files()[6:]
    rng = random.Random(16)
    for _ in range(400):
        damaged = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(6, len(damaged))] = rng.randrange(256)
        parsed: ParsedMessage = parse_message(outlook_mail(bytes(damaged), text=None), LIMITS)
        assert parsed.attachments[0].content == bytes(damaged)


def test_many_tnef_parts_beside_a_large_body_parse_in_linear_time() -> None:
    """The body was decoded again for every winmail.dat part: 900 of them took 10 s."""
    part = (b"--b\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n"
            b"Content-Disposition: attachment; filename=winmail.dat\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(two_files()) + b"\r\n")
    raw = (b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           + "Grüße aus Köln.\r\n".encode() * 100_000 + part * 600 + b"--b--\r\n")
    started = time.perf_counter()
    parsed = parse_message(raw, ProcessingLimits(max_parts=2000))
    assert time.perf_counter() - started < 2
    assert parsed.text.startswith("Grüße aus Köln.\n")
    assert len(parsed.attachments) == 600 * 3  # each winmail.dat and its two files
