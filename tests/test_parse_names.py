"""Raw 8-bit bytes in headers become real text, never surrogate escapes (defect 8)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.config.settings import ProcessingLimits
from ingestd.db.tables import ACTIONS, USERS
from ingestd.mailtext import bytes_text, decode_words, header_text
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse import parse_message

LIMITS = ProcessingLimits()


def _message(headers: bytes, body: bytes = b"hello\r\n") -> bytes:
    return headers + b"\r\n" + body


@pytest.mark.parametrize(("charset", "cc_name", "subject"), [
    ("latin-1", "Jörg Müller", "Grüße aus Köln"),
    ("utf-8", "Jörg „Müller“", "Grüße aus Köln – 5 € 日本"),
    ("cp1252", "Jörg „Müller“", "Grüße aus Köln – 5 €"),
])
def test_raw_8bit_display_name_and_subject(charset: str, cc_name: str, subject: str) -> None:
    """From and Cc names, Subject and filename in raw 8-bit bytes read as the sender wrote them."""
    raw = _message(
        b"From: " + "Ingo Lütkebohle".encode(charset) + b" <ingo@lutke.example>\r\n"
        b"Cc: " + cc_name.encode(charset) + b" <joerg@lutke.example>\r\n"
        b"Subject: " + subject.encode(charset) + b"\r\n"
        b"Content-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="' + "Prüfbericht.pdf".encode(charset)
        + b'"\r\n'
    )
    parsed = parse_message(raw, LIMITS)
    assert parsed.from_name == "Ingo Lütkebohle"
    assert parsed.from_address == "ingo@lutke.example"
    assert parsed.cc == ("joerg@lutke.example",)
    assert parsed.subject == subject
    assert [a.filename for a in parsed.attachments] == ["Prüfbericht.pdf"]


def test_latin_1_only_names() -> None:
    """Latin-1 bytes that are no UTF-8 read as windows-1252: the name the sender saw."""
    raw = _message(b"From: L\xfctkebohle <l@example.com>\r\nSubject: Gr\xfc\xdfe\r\n")
    parsed = parse_message(raw, LIMITS)
    assert (parsed.from_name, parsed.subject) == ("Lütkebohle", "Grüße")


def test_8bit_text_beside_encoded_words() -> None:
    """Raw 8-bit text beside encoded words keeps both (mail-parser dropped or escaped it)."""
    raw = _message(
        b"From: =?utf-8?q?Dr.?= \xc5\x81\xc3\xb3d\xc5\xba <l@example.com>\r\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe?= aus K\xf6ln\r\n"
    )
    parsed = parse_message(raw, LIMITS)
    assert parsed.from_name == "Dr. Łódź"
    assert parsed.subject == "Grüße aus Köln"
    assert decode_words("=?utf-8?q?Re:?= \u0141\u00f3d\u017a") == "Re: Łódź"
    assert decode_words("=?utf-8?q?x?= C:\\users") == "x C:\\users"


def test_header_text_decoding_rules() -> None:
    """UTF-8 when the bytes are UTF-8, else windows-1252, with its five holes read as Latin-1."""
    escaped = "L\udcfctkebohle"  # how the stdlib parser hands over b"L\xfctkebohle"
    assert header_text(escaped) == "Lütkebohle"
    assert header_text("L\udcc3\udcbctkebohle") == "Lütkebohle"
    assert header_text("plain") == "plain"
    assert bytes_text(b"\x80\x81\x9f") == "\u20ac\x81\u0178"


def _fields(parsed: ParsedMessage) -> list[str]:
    return [parsed.subject, parsed.from_name or "", parsed.from_address or "", *parsed.to,
            *parsed.cc, parsed.message_id or "", *parsed.in_reply_to, *parsed.references,
            parsed.text, *parsed.defects, *(a.filename for a in parsed.attachments),
            *(a.content_type for a in parsed.attachments)]


def _random_value(rng: random.Random) -> bytes:
    pieces = []
    for _ in range(rng.randint(1, 8)):
        kind = rng.random()
        if kind < 0.4:
            pieces.append(bytes(rng.randint(0x80, 0xFF) for _ in range(rng.randint(1, 4))))
        elif kind < 0.6:
            pieces.append(rng.choice(["ü", "€", "Łódź", "日本", "😀"]).encode("utf-8"))
        elif kind < 0.7:
            pieces.append(b"=?utf-8?q?" + rng.choice([b"=C3=BC", b"a_b", b"=FF"]) + b"?=")
        else:
            pieces.append(bytes(rng.choice(b"abc XYZ.,;:<>\"'()@=?") for _ in range(3)))
    return b"".join(pieces)


def test_no_field_ever_holds_a_surrogate() -> None:
    """For random 8-bit header bytes, no produced field holds U+DC80..U+DCFF or its escape."""
    rng = random.Random(20261204)
    for _ in range(400):
        value = _random_value(rng)
        raw = _message(
            b"From: " + value + b" <a@b.example>\r\n"
            b"To: " + _random_value(rng) + b" <to@x.example>, " + _random_value(rng) + b"\r\n"
            b"Cc: " + _random_value(rng) + b"\r\n"
            b"Subject: " + _random_value(rng) + b"\r\n"
            b"Message-ID: <" + _random_value(rng) + b"@x>\r\n"
            b"References: <" + _random_value(rng) + b"@y>\r\n"
            b"Content-Type: application/octet-stream; name=\"" + _random_value(rng) + b"\"\r\n"
            b"Content-Disposition: attachment; filename=\"" + _random_value(rng) + b"\"\r\n"
        )
        for field in _fields(parse_message(raw, LIMITS)):
            assert not any("\udc80" <= ch <= "\udcff" for ch in field), (raw, field)
            assert "\\udc" not in field.lower(), (raw, field)


@pytest.mark.parametrize("fixture", ["from-8bit-latin1.eml", "from-8bit-utf8.eml"])
def test_8bit_name_through_the_pipeline(env: Any, fixture: str, capsys: Any) -> None:
    """Delivered for real, the raw 8-bit name is stored right in actions, users and the export."""
    row = env.deliver(fixture)
    assert row.status == "processed", row.reason
    ticket = env.ticket(row.ticket_id)
    assert ticket["summary"].startswith("Grüße aus Köln: ")
    with env.engine.connect() as conn:
        action = conn.execute(sa.select(ACTIONS).where(ACTIONS.c.id == row.action_id)).one()
        user = conn.execute(sa.select(USERS).where(USERS.c.email == "ingo@lutke.example")).one()
    assert action.from_name == "Ingo Lütkebohle"
    assert user.name == "Ingo Lütkebohle"
    capsys.readouterr()
    assert env.cli("directory", "export", "--json") == 0
    exported = json.loads(capsys.readouterr().out)
    assert "Ingo Lütkebohle" in _names(exported)


def _names(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [v for k, v in data.items() if k == "name" and isinstance(v, str)] + [
            n for v in data.values() for n in _names(v)]
    if isinstance(data, list):
        return [n for v in data for n in _names(v)]
    return []
