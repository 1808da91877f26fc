"""Charsets as real senders mean them, and what to read when the label is wrong.

A label names a decoder (``charset``): the superset that mail programs
actually write under it, as the WHATWG Encoding Standard maps them (gb2312 is
GBK, read as GB18030; ks_c_5601-1987 is cp949; iso-8859-1 and windows-1252
are windows-1252 with its five undefined bytes read as Latin-1; Shift_JIS is
cp932). ISO-2022-JP additionally reads the JIS rows that Microsoft's CP50220
adds (NEC row 13: ①, ㈱, Roman numerals; the NEC-selected IBM rows 89-92: 髙, 﨑)
through cp932, as no Python codec does; every other character decodes
exactly as Python's iso2022_jp.

Bytes that their label does not decode, or that have none, are read by
``fallback``: UTF-8 (also with a few stray bytes), then the charsets the
same message declares elsewhere, then (bodies only) a detector, then
windows-1252, which reads any byte. Nothing is replaced or dropped.

Only ``codecs`` is imported here: intake imports this module, and
the detector (charset-normalizer) is imported only when a body needs it.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from functools import lru_cache

# Parts with fewer 8-bit bytes than this are not given to the detector: on
# short text it answers with confident garbage (Latin-1 "Lütkebohle" came
# back as cp1006).
DETECT_MIN_8BIT = 64

# Labels that say nothing about the bytes: read as if there were none.
PLACEHOLDERS = frozenset({"", "x-unknown", "unknown", "unknown-8bit", "x-user-defined",
                          "default", "none", "charset"})

# Labels Python does not know, as the codec name they mean.
_ALIASES = {
    "gb_2312-80": "gb2312", "x-gbk": "gbk", "csgb2312": "gb2312", "x-euc-cn": "gb2312",
    "ksc_5601": "euc_kr", "x-sjis": "shift_jis", "windows-31j": "cp932",
    "unicode-1-1-utf-7": "utf-7", "x-unicode-1-1-utf-7": "utf-7", "uft-8": "utf-8",
    "x-mac-roman": "mac-roman", "iso-8859-8-i": "iso8859-8", "windows-874": "cp874",
    "x-euc-jp": "euc_jp",
}
_LATIN_1 = "ingestd-latin-1"
_CP50220_ROWS = "ingestd-cp50220-rows"
# Python's canonical codec name → (codec, error handler) that real senders mean.
_SUPERSETS = {
    "gb2312": ("gb18030", "strict"), "gbk": ("gb18030", "strict"),
    "euc_kr": ("cp949", "strict"),
    "iso2022_jp": ("iso2022_jp", _CP50220_ROWS),
    "shift_jis": ("cp932", "strict"),
    "iso8859-1": ("cp1252", _LATIN_1), "cp1252": ("cp1252", _LATIN_1),
    "iso8859-9": ("cp1254", "strict"), "tis-620": ("cp874", "strict"),
    "iso8859-11": ("cp874", "strict"),
}
# Codecs that are no charset of text: never let a label pick them.
_NOT_CHARSETS = frozenset({"idna", "punycode", "undefined", "unicode-escape",
                           "raw-unicode-escape"})
_SHOWN = {"cp1252": "windows-1252", "iso2022_jp": "iso-2022-jp"}


class Charset:
    """A decoder: a Python codec and the error handler that completes it."""

    # A plain class: a dataclass costs milliseconds at import, and intake imports this.
    __slots__ = ("codec", "errors")

    def __init__(self, codec: str, errors: str = "strict") -> None:
        self.codec = codec
        self.errors = errors

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Charset)
                and (self.codec, self.errors) == (other.codec, other.errors))

    def __hash__(self) -> int:
        return hash((self.codec, self.errors))

    def __repr__(self) -> str:
        return f"Charset({self.codec!r}, {self.errors!r})"

    @property
    def name(self) -> str:
        """The name shown in defects ("windows-1252", "gb18030", "koi8-r")."""
        return _SHOWN.get(self.codec, self.codec.replace("_", "-"))

    def decode(self, raw: bytes) -> str | None:
        """The text, or None when these bytes are not in this charset."""
        try:
            return raw.decode(self.codec, self.errors)
        except (UnicodeError, LookupError, ValueError):
            return None


UTF_8 = Charset("utf-8")
WINDOWS_1252 = Charset("cp1252", _LATIN_1)
_OWN_PLACES = frozenset({"utf-8", "ascii", "cp1252"})


@lru_cache(maxsize=256)
def charset(label: str | None) -> Charset | None:
    """The decoder ``label`` means; None for no label, a placeholder or an unknown one."""
    name = normal_label(label)
    if name in PLACEHOLDERS:
        return None
    try:
        codec = codecs.lookup(_ALIASES.get(name, name))
    except (LookupError, ValueError):
        return None
    if codec.name in _NOT_CHARSETS or not getattr(codec, "_is_text_encoding", True):
        return None
    return Charset(*_SUPERSETS.get(codec.name, (codec.name, "strict")))


def normal_label(label: str | None) -> str:
    return (label or "").strip().strip("\"'").strip().lower()


def placeholder(label: str | None) -> bool:
    return normal_label(label) in PLACEHOLDERS


def hints(labels: Iterable[str]) -> tuple[Charset, ...]:
    """The decoders worth trying on mislabelled bytes among a message's ``labels``.

    UTF-8 and windows-1252 have their own places in the order; ASCII and UTF-7
    read no 8-bit byte, and UTF-16 or UTF-32 would turn any even number of
    bytes into CJK-looking nonsense.
    """
    found: list[Charset] = []
    for label in labels:
        found_charset = charset(label)
        if (found_charset is not None and found_charset not in found
                and found_charset.codec not in _OWN_PLACES
                and not found_charset.codec.startswith(("utf-16", "utf-32", "utf-7"))):
            found.append(found_charset)
    return tuple(found)


def fallback(raw: bytes, hinted: Iterable[Charset] = (), *, tried: Charset | None = None,
             detect: bool = False) -> tuple[str, str]:
    """(text, what it was read as) of bytes that have no label, or one that fails.

    UTF-8; UTF-8 with a few stray bytes; the ``hinted`` charsets (those the
    message declares elsewhere); with ``detect``, charset-normalizer if there
    are enough 8-bit bytes to judge; windows-1252, which reads any byte.
    """
    text = UTF_8.decode(raw) if tried != UTF_8 else None
    if text is not None:
        return text, UTF_8.name
    if mostly_utf8(raw):
        return raw.decode("utf-8", _STRAY_BYTES), "utf-8 with stray bytes as windows-1252"
    for candidate in hinted:
        if candidate != tried and (text := candidate.decode(raw)) is not None:
            return text, candidate.name
    if detect and eight_bit(raw) >= DETECT_MIN_8BIT:
        found = _detected(raw)
        if found is not None:
            return found[0], f"{found[1]} (detected)"
    return raw.decode(WINDOWS_1252.codec, WINDOWS_1252.errors), WINDOWS_1252.name


def eight_bit(raw: bytes) -> int:
    return len(raw.translate(None, _ASCII))


_ASCII = bytes(range(128))


def mostly_utf8(raw: bytes) -> bool:
    """At least four in five 8-bit bytes form UTF-8 characters: UTF-8 with a few stray bytes.

    A UTF-8 text with one corrupt byte, or a windows-1252 line appended, must
    not become mojibake as a whole. Legacy text forms UTF-8 sequences only by
    chance: KOI8-R "Счёт" has one in its four bytes, GBK text about one in five.
    """
    # The strict decoder keeps ASCII and the well-formed multi-byte sequences
    # only, and drops a bad sequence as a whole: what it keeps beyond the
    # ASCII is the 8-bit bytes in sequences. A regex findall counted the same
    # but made one object per character (twenty times a large body's size).
    kept = len(raw.decode("utf-8", "ignore").encode("utf-8"))
    in_sequences = kept - (len(raw) - eight_bit(raw))
    return in_sequences > 0 and in_sequences >= 4 * (eight_bit(raw) - in_sequences)


def _detected(raw: bytes) -> tuple[str, str] | None:
    """(text, charset) as charset-normalizer guesses it; None to keep windows-1252.

    Among single-byte Latin code pages it guesses poorly (French came back as
    cp1257), so when windows-1252 reads the bytes as plausibly as its best
    guess (it is among the matches), windows-1252 stays.
    """
    from charset_normalizer import from_bytes  # ~10 ms to import; rarely needed

    matches = list(from_bytes(raw))
    if not matches or any("cp1252" in (m.encoding, *m.could_be_from_charset)
                          for m in matches):
        return None
    found = charset(matches[0].encoding)
    text = found.decode(raw) if found is not None else None
    return (text, found.name) if text is not None and found is not None else None


def _latin_1(error: UnicodeError) -> tuple[str, int]:
    # The five bytes windows-1252 leaves undefined read as Latin-1 (C1 controls).
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start:error.end].decode("latin-1"), error.end


def _stray_byte(error: UnicodeError) -> tuple[str, int]:
    # In mostly-UTF-8 bytes: a stray byte reads as windows-1252; a character
    # cut off at the very end (a truncated header) is lost, and shown so.
    if not isinstance(error, UnicodeDecodeError):
        raise error
    if error.end == len(error.object) and error.reason == "unexpected end of data":
        return "\ufffd", error.end
    return error.object[error.start:error.end].decode("cp1252", _LATIN_1), error.end


# JIS rows that JIS X 0208 leaves empty and cp932 fills (NEC row 13, NEC-selected IBM 89-92).
_CP50220_LEADS = frozenset({0x2D, 0x79, 0x7A, 0x7B, 0x7C})


def _cp50220_rows(error: UnicodeError) -> tuple[str, int]:
    """A JIS pair that iso2022_jp does not know, read as its Shift_JIS twin in cp932.

    The decoder reports the two bytes of a pair it cannot map and keeps its
    shift state, so only these pairs take this way.
    """
    if not isinstance(error, UnicodeDecodeError):
        raise error
    pair = error.object[error.start:error.start + 2]
    if len(pair) == 2 and pair[0] in _CP50220_LEADS and 0x21 <= pair[1] <= 0x7E:
        row, cell = pair
        lead = (row + 1) // 2 + (0x70 if row <= 0x5E else 0xB0)
        trail = cell + (0x7E if row % 2 == 0 else 0x1F if cell <= 0x5F else 0x20)
        try:
            return bytes((lead, trail)).decode("cp932"), error.start + 2
        except UnicodeDecodeError:
            pass
    raise error


_STRAY_BYTES = "ingestd-stray-bytes"
codecs.register_error(_LATIN_1, _latin_1)
codecs.register_error(_STRAY_BYTES, _stray_byte)
codecs.register_error(_CP50220_ROWS, _cp50220_rows)
