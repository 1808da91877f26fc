"""Compressed RTF (MS-OXRTFCP): the form in which Outlook stores a message's RTF body."""

from __future__ import annotations

import struct

_HEADER = struct.Struct("<IIII")  # compressed size, raw size, kind, CRC
_COMPRESSED, _UNCOMPRESSED = 0x75465A4C, 0x414C454D  # "LZFu", "MELA"
# The dictionary starts out holding these 207 bytes (MS-OXRTFCP 3.1.3.1).
_PRELOAD = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss "
    b"\\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier"
    b"{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)
_SIZE = 4096


def decompressed_rtf(data: bytes, *, limit: int) -> bytes | None:
    """The RTF text, or None when damaged, truncated or longer than ``limit`` bytes.

    Work is bounded by ``limit``: the declared size is checked before
    decoding, and decoding stops at that size.
    """
    if len(data) < _HEADER.size:
        return None
    _, raw_size, kind, _ = _HEADER.unpack_from(data)
    if raw_size > limit:
        return None
    if kind == _UNCOMPRESSED:
        return data[_HEADER.size:_HEADER.size + raw_size]
    if kind != _COMPRESSED:
        return None
    window = bytearray(_SIZE)
    window[:len(_PRELOAD)] = _PRELOAD
    write = len(_PRELOAD)
    out = bytearray()
    position, end = _HEADER.size, len(data)
    while position < end and len(out) < raw_size:
        flags = data[position]
        position += 1
        for bit in range(8):
            if position >= end:
                break
            if not flags & (1 << bit):
                byte = data[position]
                position += 1
                out.append(byte)
                window[write] = byte
                write = (write + 1) % _SIZE
                continue
            if position + 1 >= end:
                return None
            reference = data[position] << 8 | data[position + 1]
            position += 2
            start, length = reference >> 4, (reference & 0xF) + 2
            if start == write:  # the end marker
                return bytes(out[:raw_size])
            for step in range(length):
                byte = window[(start + step) % _SIZE]
                out.append(byte)
                window[write] = byte
                write = (write + 1) % _SIZE
    # Input used up before the end marker: a truncated body is not returned as whole.
    return bytes(out[:raw_size]) if len(out) >= raw_size else None
