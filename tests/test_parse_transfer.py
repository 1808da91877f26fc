"""Transfer decoding goes as far as the bytes allow: invalid base64, uuencode without ``begin``.

The stdlib (compat32 ``get_payload(decode=True)``) stores these still
encoded, or decodes a list footer's letters as data, or stops at the first
padding; each case below names what it did.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from email import message_from_bytes
from pathlib import Path

import pytest

from ingestd.config.settings import ProcessingLimits
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse import parse_message
from ingestd.pipeline.stages.parse.transfer import base64_bytes, decoded_payload, uu_bytes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "emails"
FOX = b"The quick brown fox jumps over the lazy dog. " * 3


def parsed(name: str) -> ParsedMessage:
    return parse_message((FIXTURES / name).read_bytes(), ProcessingLimits())


def test_invalid_base64_fixture() -> None:
    message = parsed("base64-invalid.eml")
    files = {a.filename: a.content for a in message.attachments}
    # The replaced byte of line 2 is unknowable; everything around it is right
    # (the stdlib shifted the rest of the file by six bits).
    lines = base64.encodebytes(FOX).split(b"\n")
    lines[1] = lines[1][:20] + b"A" + lines[1][21:]  # where the fixture has "!"
    damaged = base64.b64decode(b"".join(lines))
    assert files == {
        "bad-chars.txt": damaged,
        "no-padding.bin": b"\x00\x01\x02abc\xff",
        # The stdlib stored this one still encoded, footer and all.
        "footer.txt": b"Minutes of the meeting: nothing was decided.\n",
        "truncated.bin": b"ABCDEF",  # the stdlib: still encoded
        "concatenated.txt": b"Hello, World",  # the stdlib: "Hello, "
        "not-base64.txt": b"Hello Bob,\r\nthis part says base64 but is plain text.\r\n"
                          b"Regards, Alice",  # the stdlib: 38 bytes of garbage
    }
    assert damaged.replace(b"o\x02er", b"over") == FOX
    assert message.defects == (
        # The body part first: bodies are decoded as leniently as attachments.
        "invalid base64 in text/plain part: padding missing; decoded as far as possible",
        "invalid base64 in text/plain part: 2 non-base64 characters removed; "
        "decoded as far as possible",
        "invalid base64 in application/octet-stream part: padding missing; "
        "decoded as far as possible",
        "invalid base64 in text/plain part: 4 non-base64 lines skipped; "
        "decoded as far as possible",
        "invalid base64 in application/octet-stream part: truncated: a lone last character "
        "dropped; decoded as far as possible",
        "invalid base64 in text/plain part: data after padding decoded too; "
        "decoded as far as possible",
        "text/plain part declared base64 is not base64; kept as it was",
    )


def test_uuencode_without_begin_fixture() -> None:
    message = parsed("uuencode-no-begin.eml")
    files = {a.filename: a.content for a in message.attachments}
    assert files == {
        # The stdlib: still encoded (no begin line).
        "notes.txt": b"Hello, world! This is uuencoded without a begin line.\n"
                     b"A second line of text, long enough to take two uu lines.\n",
        # The stdlib: still encoded (one line is not uuencoded).
        "bad-line.bin": b"first 45 bytes of data, exactly forty-five!!last",
    }
    assert message.defects == (
        "uuencoded text/plain part: no begin line; decoded as far as possible",
        "uuencoded application/octet-stream part: 1 undecodable lines skipped; "
        "decoded as far as possible",
    )


def test_well_formed_base64_is_exact_and_quiet() -> None:
    rng = random.Random(16)
    for size in [0, 1, 2, 3, 57, 58, 1000, *(rng.randrange(5000) for _ in range(50))]:
        data = rng.randbytes(size)
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n") + b"  \r\n"
        defects: list[str] = []
        assert base64_bytes(encoded, defects) == data
        assert defects == []


@pytest.mark.parametrize(("encoded", "data", "reason"), [
    (b"QUJD\r\nRA=\r\n", b"ABCD", None),  # short padding: nothing to report but the repair
    (b"QUJD=\r\nREVG\r\n", b"ABCDEF", "padding where none belongs"),
    (b"QUJDREVG\x00R0hJ\r\n", b"ABCDEFGHI", "1 non-base64 characters removed"),
    (b"QUJDREVG\r\n-- \r\n", b"ABCDEF", "1 non-base64 lines skipped"),
])
def test_base64_repairs(encoded: bytes, data: bytes, reason: str | None) -> None:
    defects: list[str] = []
    assert base64_bytes(encoded, defects, "image/png") == data
    assert len(defects) == 1 and defects[0].startswith("invalid base64 in image/png part: ")
    if reason:
        assert reason in defects[0]


def test_hostile_base64_is_linear() -> None:
    one_line = b"QQ==" * 500_000 + b"!"  # 2 MB on one line, padding after every group
    started = time.perf_counter()
    defects: list[str] = []
    assert base64_bytes(one_line, defects) == b"A" * 500_000
    assert time.perf_counter() - started < 2  # generous; copying the rest each time: minutes


def test_uuencode_lines_the_stdlib_gives_up_on() -> None:
    text = b"0123456789" * 10
    lines = [binascii.b2a_uu(text[i:i + 45]).rstrip(b"\n") for i in range(0, len(text), 45)]
    # An empty line inside the data (the stdlib: "Truncated input", all kept encoded),
    # trailing spaces lost in transit, and a checksum character added.
    encoded = (b"begin 600 digits.txt\r\n" + lines[0] + b"\r\n\r\n" + lines[1].rstrip(b" ")
               + b"\r\n" + lines[2] + b"X\r\n`\r\nend\r\n")
    defects: list[str] = []
    assert uu_bytes(encoded, defects) == text
    assert defects == []
    kept: list[str] = []
    assert uu_bytes(b"\r\n\r\n", kept) == b""  # an empty part (the corpora have one): no defect
    assert uu_bytes(b"just some words\r\n", kept) == b"just some words\r\n"
    assert kept == ["application/octet-stream part declared uuencoded holds no uuencoded "
                    "line; kept as it was"]


def test_body_part_decodes_the_same_way() -> None:
    """``decoded_payload`` serves body parts too (``part_text`` is wired to it at merge)."""
    part = message_from_bytes(
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: x-uuencode\r\n"
        b"\r\n" + binascii.b2a_uu("Grüße".encode()) + b"`\r\nend\r\n")
    defects: list[str] = []
    assert decoded_payload(part, defects).decode() == "Grüße"
    assert defects == ["uuencoded text/plain part: no begin line; decoded as far as possible"]
    quoted = message_from_bytes(b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=\r\n")
    assert decoded_payload(quoted, defects) == "Grü".encode()


def test_words_after_the_padding_are_not_data() -> None:
    """`...Cg== ignored`: the words beyond the padding are dropped, not decoded into garbage."""
    defects: list[str] = []
    assert base64_bytes(b"ecO2dMOkIHZhYW4uCg== ignored\r\n", defects) == "yötä vaan.\n".encode()
    assert defects == ["invalid base64 in application/octet-stream part: text after padding "
                       "ignored; decoded as far as possible"]


@pytest.mark.parametrize(("encoding", "body", "defect"), [
    (b"base64", b"aGVsbG8gd29ybGQ=\r\nnot base64 at all, words\r\naGk=\r\n",
     "invalid base64 in application/x-data part: 1 non-base64 lines skipped"),
    (b"x-uuencode", b"M86)C9&5F9VAI:FML;6YO<'%R<W1U=G=X>7I!0D-$149'2$E*2TQ-3D]045)3\r\n",
     "uuencoded application/x-data part: no begin line"),
    (b"x-uuencode", b"no uuencoded line here\r\n",
     "application/x-data part declared uuencoded holds no uuencoded line"),
], ids=["base64", "uuencode", "not-uuencode"])
def test_transfer_defects_quoting_the_type_hold_no_nul(encoding: bytes, body: bytes,
                                                        defect: str) -> None:
    """PostgreSQL refuses NUL in text: a defect quoting a type with NUL in it was refused."""
    raw = (b"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
           b"--b\r\nContent-Type: appli\x00cation/x-da\x00ta\r\n"
           b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + body + b"--b--\r\n")
    defects = parse_message(raw, ProcessingLimits()).defects
    assert any(d.startswith(defect) for d in defects), defects
    assert not any("\x00" in d for d in defects)


def test_a_defect_quoting_the_type_is_clean_whoever_calls_the_decoder() -> None:
    defects: list[str] = []
    base64_bytes(b"aGk\r\n", defects, "text/pl\x00ain")
    uu_bytes(b"not uu\r\n", defects, "text/pl\x00ain")
    assert defects and not any("\x00" in d for d in defects)
