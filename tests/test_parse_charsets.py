"""Charsets as senders mean them, and mislabelled or unlabelled 8-bit bytes read, never lost.

Garbled text has no U+FFFD, so each case asserts the exact text a reader
would see, and the defect that says how it was read.
"""

from __future__ import annotations

import re
import tracemalloc

import pytest

from ingestd.charsets import DETECT_MIN_8BIT, Charset, charset, fallback, hints, mostly_utf8
from ingestd.config.settings import ProcessingLimits
from ingestd.mailtext import decode_words, header_text
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse import parse_message
from tests.conftest import FIXTURES

LIMITS = ProcessingLimits()
CHARSET_FIXTURES = sorted(p.name for p in FIXTURES.glob("charset-*.eml"))


def _parse(name: str) -> ParsedMessage:
    return parse_message((FIXTURES / name).read_bytes(), LIMITS)


def _ours(parsed: ParsedMessage) -> list[str]:
    """The defects about charsets (mail-parser adds its own, e.g. CharsetDecodeDefect)."""
    return [d for d in parsed.defects if "8-bit" in d or " read as " in d]


@pytest.mark.parametrize("label", ["gb2312", "GB2312", "gb_2312-80", "euc-cn", "x-gbk", "gbk"])
def test_gb2312_labels_read_as_gb18030(label: str) -> None:
    assert charset(label) == Charset("gb18030")


@pytest.mark.parametrize("label", ["ks_c_5601-1987", "ks_c_5601", "ksc5601", "euc-kr"])
def test_korean_labels_read_as_cp949(label: str) -> None:
    assert charset(label) == Charset("cp949")


@pytest.mark.parametrize("label", ["iso-8859-1", "latin1", "ISO_8859-1", "windows-1252"])
def test_latin_1_labels_read_as_windows_1252(label: str) -> None:
    declared = charset(label)
    assert declared is not None and declared.name == "windows-1252"
    # The five bytes windows-1252 leaves undefined read as Latin-1, never as an error.
    assert declared.decode(b"\x80\x81\x8d\x8f\x90\x9d\x93\x94") == "€\x81\x8d\x8f\x90\x9d“”"


@pytest.mark.parametrize("label", ["", None, "x-unknown", "unknown", "unknown-8bit",
                                   "x-user-defined", "default", "x-no-such-charset",
                                   "idna", "base64", "undefined"])
def test_placeholder_unknown_and_non_text_labels_mean_no_charset(label: str | None) -> None:
    assert charset(label) is None


def test_aliases() -> None:
    assert charset("unicode-1-1-utf-7") == Charset("utf-7")
    assert charset("us-ascii") == charset("ascii") == Charset("ascii")
    assert charset('"UTF-8"') == Charset("utf-8")


def test_iso_2022_jp_reads_the_cp932_rows_and_nothing_else_differently() -> None:
    """NEC row 13 and the NEC-selected IBM rows decode through cp932; JIS X 0208 as before."""
    jp = charset("ISO-2022-JP")
    assert jp is not None
    # ① ② (row 13), 髙 (row 92: JIS 0x7C62, cp932 0xEEE0), then ordinary kanji and kana.
    raw = b"\x1b$B-!-\"|b4A;z$H$+$J\x1b(B ok"
    assert jp.decode(raw) == "①②髙漢字とかな ok"
    # Where cp932 maps a JIS X 0208 character differently (WAVE DASH), JIS X 0208 wins.
    assert jp.decode(b"\x1b$B!A\x1b(B") == "\u301c"
    assert jp.decode(b"\x1b$B-\x7e\x1b(B") is None  # a row 13 cell cp932 leaves empty


def test_mostly_utf8_is_utf8_with_stray_bytes() -> None:
    """One stray byte in UTF-8 text does not turn the whole into windows-1252."""
    raw = "Grüße aus Köln, ".encode() + b"Stra\xdfe"
    assert mostly_utf8(raw)
    assert fallback(raw) == ("Grüße aus Köln, Straße", "utf-8 with stray bytes as windows-1252")
    assert not mostly_utf8("Счёт".encode("koi8_r"))  # one chance pair in four bytes
    assert not mostly_utf8("朱镕基的报告和资料".encode("gbk"))


def test_hints_are_charsets_that_can_tell_bytes_apart() -> None:
    """A message's other labels, in order; not those that read anything or nothing."""
    labels = ["utf-16", "us-ascii", "iso-8859-1", "koi8-r", "utf-8", "gb2312", "KOI8-R",
              "x-unknown"]
    assert hints(labels) == (Charset("koi8-r"), Charset("gb18030"))


def test_the_detector_does_not_overrule_windows_1252_on_western_text() -> None:
    """charset-normalizer calls long French cp1257; windows-1252 reads it as well, so it stays."""
    french = ("Voilà la fenêtre à côté de l'été. Très élégant, déjà réglé, où êtes-vous? "
              "Ça marche très bien, à bientôt. ").encode("cp1252") * 4
    assert fallback(french, detect=True) == (french.decode("cp1252"), "windows-1252")
    czech = ("Dobrý den, tiskárna nefunguje už třetí den. Prosím pošlete technika. Děkuji, "
             "příliš žluťoučký kůň úpěl ďábelské ódy. ").encode("cp1250") * 3
    assert fallback(czech, detect=True) == (czech.decode("cp1250"), "cp1250 (detected)")


def test_gb2312_body_and_subject_with_gbk_only_characters() -> None:
    parsed = _parse("charset-gb2312-gbk.eml")
    assert parsed.subject == "关于朱镕基和陶喆的报告"
    assert parsed.text == "您好：\n附件是关于朱镕基和陶喆的资料，请查收。\n"
    assert _ours(parsed) == []  # the superset is what the label means: no fallback


def test_iso_2022_jp_with_circled_digits() -> None:
    parsed = _parse("charset-iso-2022-jp-nec.eml")
    assert parsed.subject == "①②③の確認"
    assert parsed.text == "お世話になります。\n手順は①②③の通りです。\nⅡ期の件は㈱テストまで。\n"
    assert _ours(parsed) == []


def test_ks_c_5601_1987_with_a_cp949_only_syllable() -> None:
    parsed = _parse("charset-ks-c-5601-1987.eml")
    assert parsed.subject == "똠방각하 주문 건"
    assert parsed.text == "안녕하세요.\n똠방각하 주문 건으로 연락드립니다.\n"
    assert _ours(parsed) == []


def test_iso_8859_1_body_with_windows_1252_bytes() -> None:
    parsed = _parse("charset-iso-8859-1-cp1252.eml")
    assert parsed.text == "Der Preis beträgt 40 €, sagte er: „ok“ – “fine”.\n"
    assert _ours(parsed) == []


def test_us_ascii_declared_with_8bit_bytes() -> None:
    parsed = _parse("charset-us-ascii-8bit.eml")
    assert parsed.text == "Grüße aus Köln, die Rechnung über 12 € ist bezahlt.\n"
    assert _ours(parsed) == ["body part declared us-ascii has 8-bit bytes; read as windows-1252"]


def test_utf8_declared_but_windows_1252() -> None:
    parsed = _parse("charset-utf-8-is-cp1252.eml")
    assert parsed.text == "Café „Zur Post“: Menü für 9,50 €.\n"
    assert parsed.subject == "Menü"  # the raw Subject is UTF-8: no defect for it
    assert _ours(parsed) == ["body part declared utf-8 is not valid utf-8; read as windows-1252"]


def test_raw_koi8_r_subject_reads_as_the_charset_the_message_declares() -> None:
    parsed = _parse("charset-koi8-r-raw-subject.eml")
    assert parsed.subject == "Счёт на оплату"
    assert parsed.text == "Invoice attached.\nСчёт прилагается."
    assert _ours(parsed) == ["Subject has 8-bit bytes that are not UTF-8; read as koi8-r"]


def test_long_undeclared_koi8_r_body_goes_through_the_detector() -> None:
    parsed = _parse("charset-koi8-r-undeclared.eml")
    assert parsed.text == ("Здравствуйте!\nМой принтер не печатает уже третий день. Пожалуйста, "
                           "пришлите техника в офис на втором этаже.\nСпасибо, Иван Петров.\n")
    assert _ours(parsed) == [
        "body part without a charset has 8-bit bytes; read as koi8-r (detected)"]


def test_short_undeclared_latin_1_is_not_given_to_the_detector() -> None:
    """charset-normalizer reads "Lütkebohle" as cp1006; under 64 8-bit bytes it is not asked."""
    parsed = _parse("charset-latin-1-short.eml")
    assert parsed.text == "Lütkebohle\n"
    assert _ours(parsed) == ["body part without a charset has 8-bit bytes; read as windows-1252"]
    # The threshold, not the length of the part, decides: 63 8-bit bytes stay windows-1252.
    raw = "Счёт на оплату, пожалуйста".encode("koi8_r") * 3
    eight = sum(b >= 0x80 for b in raw)
    short = raw[:len(raw) - (eight - DETECT_MIN_8BIT + 1) * 2]
    assert sum(b >= 0x80 for b in short) < DETECT_MIN_8BIT
    assert fallback(short, detect=True)[1] == "windows-1252"
    assert fallback(raw, detect=True)[1] == "koi8-r (detected)"


def test_filenames_with_8bit_bytes_and_rfc_2231_charsets() -> None:
    """A raw KOI8-R name reads as the body's declared charset; RFC 2231 names via the superset."""
    parsed = _parse("charset-filename-8bit.eml")
    assert [a.filename for a in parsed.attachments] == [
        "Счёт 7.pdf", "朱镕基.pdf", "Preis 40 € “netto”.pdf"]
    assert parsed.text == "Файлы во вложении."
    assert _ours(parsed) == [
        "Content-Disposition has 8-bit bytes that are not UTF-8; read as koi8-r"]


def test_utf_7_alias() -> None:
    parsed = _parse("charset-utf-7-alias.eml")
    assert parsed.subject == "Grüße – 5 €"
    assert parsed.text == "Grüße aus Köln – 5 € bezahlt.\n"
    assert _ours(parsed) == []


def test_encoded_words_their_charset_does_not_decode() -> None:
    """An encoded word whose label is wrong falls back like raw bytes, and says so."""
    raw = (b"From: =?us-ascii?Q?L=FCtkebohle?= <l@x.example>\r\n"
           b"Subject: =?utf-8?Q?Caf=E9?= =?iso-8859-1?Q?=93ok=94?=\r\n\r\nhi\r\n")
    parsed = parse_message(raw, LIMITS)
    assert (parsed.from_name, parsed.subject) == ("Lütkebohle", "Café“ok”")
    assert _ours(parsed) == [
        "encoded word declared us-ascii has 8-bit bytes; read as windows-1252",
        "encoded word declared utf-8 is not valid utf-8; read as windows-1252"]
    # Outside a parse (intake's log line) the same text, no defect kept anywhere.
    assert decode_words("=?gb2312?B?1uzpRrv5?=") == "朱镕基"
    assert header_text("\udcf3\udcde\udca3\udcd4") == "óÞ£Ô"  # no hints: windows-1252


def test_iso_8859_1_encoded_display_name_means_windows_1252() -> None:
    """mail-parser reads =?iso-8859-1?...?= as Latin-1 (C1 controls); the name has “ ”."""
    raw = b"From: =?iso-8859-1?Q?=93Bob=94_Smith?= <b@x.example>\r\nSubject: s\r\n\r\nhi\r\n"
    assert parse_message(raw, LIMITS).from_name == "“Bob” Smith"


_LOST = re.compile("[\ud800-\udfff\ufffd]")


@pytest.mark.parametrize("name", CHARSET_FIXTURES)
def test_no_stored_text_holds_surrogates_or_replacement_characters(name: str) -> None:
    parsed = _parse(name)
    texts = [parsed.subject, parsed.from_name or "", parsed.text, parsed.html or "",
             *parsed.defects, *(a.filename for a in parsed.attachments)]
    assert [t for t in texts if _LOST.search(t)] == []


def test_the_fixtures_are_all_there() -> None:
    """An empty glob would make the check above pass on nothing."""
    assert len(CHARSET_FIXTURES) == 11


def test_an_rfc_2231_charset_parameter_is_read_not_raised_on() -> None:
    """`charset*=utf-8''latin-1` made the stdlib's payload decoding raise TypeError."""
    raw = (b"From: a@b.example\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset*=utf-8''latin-1\r\n\r\ncaf\xe9\r\n"
           b"--b\r\nContent-Type: text/plain; name=n.txt; charset*=x''y\r\n"
           b"Content-Disposition: attachment\r\n\r\nda\xe9ta\r\n--b--\r\n")
    parsed = parse_message(raw, ProcessingLimits())
    assert parsed.text.strip() == "café"
    assert [(a.filename, a.content) for a in parsed.attachments] == [("n.txt", b"da\xe9ta")]


def test_counting_utf8_sequences_takes_no_more_memory_than_the_bytes() -> None:
    """re.findall made one object per character: 8 MB of UTF-8 peaked at 174 MB."""
    raw = "é".encode() * 4_000_000 + b"\xff"  # UTF-8 with one stray byte
    tracemalloc.start()
    try:
        assert mostly_utf8(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(raw)
    assert not mostly_utf8("Счёт".encode("koi8-r") * 1000)  # legacy text stays legacy
