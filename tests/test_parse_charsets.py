"""Charsets as senders mean them, and mislabelled or unlabelled 8-bit bytes read, never lost.

Garbled text has no U+FFFD, so each case asserts the exact text a reader
would see, and the defect that says how it was read.
"""

from __future__ import annotations

import pytest

from ingestd.charsets import Charset, charset, fallback, hints, mostly_utf8


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
