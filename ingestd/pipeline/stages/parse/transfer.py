"""Transfer decoding that recovers what it can: base64 and uuencode.

The stdlib hands back uuencoded parts still encoded when the ``begin`` line
is missing or one line is bad, base64 of an impossible length still
encoded, and drops without a word what follows a padded block. Here each
goes as far as the bytes allow, and every repair is recorded as a defect.
Well-formed base64 (all ordinary mail) takes one strict C call.
"""

from __future__ import annotations

import binascii
import re
import string
from email.message import Message

from ingestd.mailtext import clean_text
from ingestd.pipeline.stages.parse.limits import payload

UUENCODINGS = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})

_WHITESPACE = b" \t\r\n\f\v"
_ALPHABET = (string.ascii_letters + string.digits + "+/").encode()
# Every byte that is not base64 (nor padding) becomes "A": a substitution
# that keeps the 4-character alignment of everything after it.
_TO_A = bytes(b if b in _ALPHABET + b"=" else ord("A") for b in range(256))
_PADDING = re.compile(b"=+")
_UU_CHARS = bytes(range(0x20, 0x61))
# A line with more non-base64 characters than this, spaces included (or
# more than one in eight) is text that found its way in (a list footer, a
# boundary), not a damaged line of data.
_DAMAGE = 1


def decoded_payload(part: Message, defects: list[str]) -> bytes:
    """The part's payload with its transfer encoding undone, repaired where needed."""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64" or encoding in UUENCODINGS:
        content = payload(part)
        if isinstance(content, str | bytes):
            raw = content.encode("utf-8", "surrogateescape") if isinstance(content, str) \
                else content
            kind = clean_text(part.get_content_type())
            if encoding == "base64":
                return base64_bytes(raw, defects, kind)
            return uu_bytes(raw, defects, kind)
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def base64_bytes(raw: bytes, defects: list[str], kind: str = "application/octet-stream") -> bytes:
    """``raw`` base64-decoded; strict and fast when well formed, else line by line."""
    try:
        return binascii.a2b_base64(raw.translate(None, _WHITESPACE), strict_mode=True)
    except binascii.Error:
        return _lenient_base64(raw, defects, kind)


_WORDS_AFTER_PADDING = re.compile(rb"=[ \t]+(\S)")


def _lenient_base64(raw: bytes, defects: list[str], kind: str) -> bytes:
    out = bytearray()
    pending = b""  # characters of an unfinished 4-character group
    bad = garbage = used = dropped = stray_pads = ignored = 0
    padded = resumed = False
    for text in raw.splitlines():
        words_after = _WORDS_AFTER_PADDING.search(text)
        if words_after is not None:
            # "...Cg== ignored": words after the padding, beyond a space, are
            # not data (blocks glued to the padding still are).
            text = text[:words_after.start(1)]
            ignored += 1
        line = text.translate(None, _WHITESPACE)
        if not line:
            continue
        stray = line.translate(None, _ALPHABET + b"=")
        if stray:
            # Spaces count here: they are what tells words from damaged data.
            spaces = len(text.strip(_WHITESPACE)) - len(line)
            if len(stray) + spaces > _DAMAGE or len(stray) * 8 > len(line):
                if not used:
                    # Text from its first line on: mislabelled, not damaged.
                    _note(defects, f"{kind} part declared base64 is not base64; kept as it was")
                    return raw
                garbage += 1
                continue
            bad += len(stray)
            cleaned = line.translate(None, stray)
            # Deleting restores the alignment after an inserted byte; after a
            # replaced one only substituting does.
            if len(cleaned) % 4 and len(line) % 4 == 0:
                cleaned = line.translate(_TO_A)
            line = cleaned
        used += len(line)
        # Padding ends a block; encoders that concatenate blocks go on after it.
        *blocks, rest = _PADDING.split(pending + line)
        for block in blocks:
            resumed = resumed or (padded and bool(block))
            dropped += _decode_tail(block, out)
            stray_pads += len(block) % 4 == 0
            padded = True
        resumed = resumed or (padded and bool(rest))
        whole = len(rest) - len(rest) % 4
        out += binascii.a2b_base64(rest[:whole])
        pending = rest[whole:]
    dropped += _decode_tail(pending, out)
    reasons = [text for count, text in (
        (bad, f"{bad} non-base64 characters removed"),
        (garbage, f"{garbage} non-base64 lines skipped"),
        (dropped, "truncated: a lone last character dropped"),
        (len(pending) >= 2, "padding missing"),
        (stray_pads, "padding where none belongs"),
        (resumed, "data after padding decoded too"),
        (ignored, "text after padding ignored"),
    ) if count]
    _note(defects, f"invalid base64 in {kind} part: {', '.join(reasons) or 'malformed'}; "
                   "decoded as far as possible")
    return bytes(out)


def _note(defects: list[str], defect: str) -> None:
    """Add a defect that quotes the part's type: stored text, where PostgreSQL refuses NUL."""
    defects.append(clean_text(defect))


def _decode_tail(chars: bytes, out: bytearray) -> int:
    """Decode ``chars`` with the padding it lacks; 1 when a lone character is dropped."""
    whole = len(chars) - len(chars) % 4
    out += binascii.a2b_base64(chars[:whole])
    rest = chars[whole:]
    if len(rest) >= 2:
        out += binascii.a2b_base64(rest + b"=" * (4 - len(rest)))
    return int(len(rest) == 1)


def uu_bytes(raw: bytes, defects: list[str], kind: str = "application/octet-stream") -> bytes:
    """``raw`` uudecoded, with or without its ``begin`` line; bad lines skipped."""
    lines = raw.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if _is_begin(line)), None)
    out = bytearray()
    skipped = decoded = 0
    for line in lines[start or 0:]:
        stripped = line.strip(_WHITESPACE)
        if stripped == b"end":
            break
        chunk = _uu_line(line.rstrip(b"\r\n"))
        if chunk is None:
            skipped += bool(stripped)
            continue
        decoded += 1
        out += chunk
    if not decoded and not skipped:
        return b""  # an empty part: nothing to decode, nothing missing
    if not decoded:
        _note(defects, f"{kind} part declared uuencoded holds no uuencoded line; "
                       "kept as it was")
        return raw
    reasons = ([] if start is not None else ["no begin line"]) + \
        ([f"{skipped} undecodable lines skipped"] if skipped else [])
    if reasons:
        _note(defects, f"uuencoded {kind} part: {', '.join(reasons)}; "
                       "decoded as far as possible")
    return bytes(out)


def _is_begin(line: bytes) -> bool:
    words = line.split()
    if len(words) < 2 or words[0] != b"begin":
        return False
    try:
        int(words[1], 8)
    except ValueError:
        return False
    return True


def _uu_line(line: bytes) -> bytes | None:
    """One uuencoded line's bytes, None for a line that is not one.

    The first character gives the byte count; the line may have lost its
    trailing spaces (zero bits) in transit or gained a checksum character.
    """
    if not line or line.translate(None, _UU_CHARS):
        return None
    count = (line[0] - 32) & 63
    if count == 0:
        return b"" if len(line) <= 2 else None  # the "`" line that closes the data
    needed = (count + 2) // 3 * 4 + 1
    if len(line[needed:].rstrip(b" ")) > 2:  # beyond spaces and a checksum: not uu
        return None
    try:
        return binascii.a2b_uu(line[:needed])
    except binascii.Error:
        return None
