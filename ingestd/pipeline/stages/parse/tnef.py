"""TNEF (winmail.dat, MS-OXTNEF): the files and the body an Outlook message carries inside.

Read here rather than with tnefparse 1.4.0, which strips trailing NUL bytes
from files stored as MAPI properties (Office documents come out truncated),
copies the rest of the stream for every attribute (quadratic), and loops
over counts the stream claims without checking them against its length (a
29-byte stream keeps it busy for some nine hours). This reader is linear: every loop
moves forward through the bytes, every count is checked against the bytes
left, and only the files themselves are copied.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass, field

from ingestd.pipeline.stages.parse.rtf import decompressed_rtf

SIGNATURE = b"\x78\x9f\x3e\x22"
_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")  # IID_IMessage: an Outlook item

_U16_STRUCT, _U32_STRUCT = struct.Struct("<H"), struct.Struct("<I")


def _u16(buffer: memoryview, offset: int) -> int:
    return int(_U16_STRUCT.unpack_from(buffer, offset)[0])


def _u32(buffer: memoryview, offset: int) -> int:
    return int(_U32_STRUCT.unpack_from(buffer, offset)[0])


_HEADER = struct.Struct("<BHHI").unpack_from  # level, attribute id, attribute type, length

# Attribute ids (MS-OXTNEF 2.1.3.3); level 1 is the message, level 2 an attachment.
_ATT_BODY, _ATT_DATA, _ATT_TITLE = 0x800C, 0x800F, 0x8010
_ATT_RENDDATA, _ATT_MAPI, _ATT_ATTACHMENT, _ATT_CODEPAGE = 0x9002, 0x9003, 0x9005, 0x9007

# MAPI property ids read here (MS-OXPROPS).
_BODY, _RTF, _HTML = 0x1000, 0x1009, 0x1013
_DISPLAY_NAME, _DATA, _FILENAME, _LONG_FILENAME = 0x3001, 0x3701, 0x3704, 0x3707
_MIME_TAG, _CONTENT_ID, _HIDDEN = 0x370E, 0x3712, 0x7FFE
_MESSAGE_PROPS = frozenset({_BODY, _RTF, _HTML})
_ATTACHMENT_PROPS = frozenset({_DISPLAY_NAME, _DATA, _FILENAME, _LONG_FILENAME, _MIME_TAG,
                               _CONTENT_ID, _HIDDEN})

_STRING8, _UNICODE, _OBJECT = 0x001E, 0x001F, 0x000D
_VARIABLE = frozenset({0x0000, _OBJECT, _STRING8, _UNICODE, 0x0102})
_FIXED = {0x0001: 4, 0x0002: 2, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8,
          0x000A: 4, 0x000B: 2, 0x0014: 8, 0x0040: 8, 0x0048: 16}
_MULTIPLE = 0x1000

Properties = dict[int, tuple[int, bytes]]  # property id → (type, first value)


class NotTnef(ValueError):
    """The bytes do not start with the TNEF signature."""


@dataclass(frozen=True)
class TnefFile:
    name: str  # long filename, else short filename or title, else display name; may be ""
    data: bytes
    mime_tag: str | None  # the type the sender's Outlook declared
    content_id: str | None
    hidden: bool  # shown inside the body (an image of the HTML or RTF) rather than listed
    embedded_message: bool  # the data is itself a TNEF stream: an attached Outlook item


@dataclass
class TnefContent:
    files: list[TnefFile] = field(default_factory=list)
    body_text: str | None = None
    body_html: bytes | None = None
    body_rtf: bytes | None = None  # decompressed; only read when asked for
    defects: list[str] = field(default_factory=list)
    files_left_out: int = 0  # over ``max_files`` or the byte budget


def read_tnef(data: bytes, *, max_files: int, max_bytes: int, want_body: bool
              ) -> TnefContent:
    """The files (at most ``max_files``, ``max_bytes`` in all) and body of a TNEF stream.

    The body is read only when wanted, and at most ``max_bytes`` of it.
    """
    if not data.startswith(SIGNATURE):
        raise NotTnef("no TNEF signature")
    content = TnefContent()
    message: Properties = {}
    attachments: list[tuple[Properties, dict[int, bytes]]] = []
    current: tuple[Properties, dict[int, bytes]] | None = None
    dropping = False  # the attachment being read is one over ``max_files``
    codepage = "cp1252"
    view = memoryview(data)
    offset = 6  # signature and legacy key
    while offset < len(data):
        if offset + 9 > len(data):
            content.defects.append("bytes after the last attribute ignored")
            break
        level, attribute, _, length = _HEADER(view, offset)
        start, offset = offset + 9, offset + 11 + length
        if start + length > len(data) or level not in (1, 2):
            content.defects.append("truncated or damaged; read up to the damage")
            break
        value = view[start:start + length]
        if level == 2:
            # Each attachment starts with its rendering position (attAttachRendData).
            if attribute == _ATT_RENDDATA or (current is None and not dropping):
                dropping = len(attachments) >= max_files
                current = None if dropping else ({}, {})
                if current is None:
                    content.files_left_out += 1
                else:
                    attachments.append(current)
            if current is None:
                continue
            if attribute in (_ATT_DATA, _ATT_TITLE):
                current[1][attribute] = bytes(value)
            elif attribute == _ATT_ATTACHMENT:
                _read_properties(value, _ATTACHMENT_PROPS, current[0], content)
        elif attribute == _ATT_CODEPAGE and length >= 4:
            codepage = _codec(_u32(value, 0))
        elif attribute == _ATT_MAPI:
            _read_properties(value, _MESSAGE_PROPS, message, content)
        elif attribute == _ATT_BODY and want_body:
            content.body_text = _text(_STRING8, bytes(value), codepage)
    budget = max_bytes
    for properties, attributes in attachments:
        file = _file(properties, attributes, codepage)
        if file is None:
            continue
        if len(file.data) > budget:
            content.files_left_out += 1
            continue
        budget -= len(file.data)
        content.files.append(file)
    if want_body:
        _body(message, content, codepage, max_bytes)
    return content


def _read_properties(block: memoryview, wanted: frozenset[int], into: Properties,
                     content: TnefContent) -> None:
    """The first value of each ``wanted`` property in a MAPI property list."""
    size, offset = len(block), 4
    if size < 4:
        return
    count = _u32(block, 0)
    try:
        for _ in range(min(count, (size - 4) // 4)):  # a property takes at least 4 bytes
            kind, prop = _u16(block, offset), _u16(block, offset + 2)
            offset += 4
            if prop >= 0x8000:  # named: a GUID, then a number or a name
                named = _u32(block, offset + 16)
                offset += 24 if named == 0 else 24 + _padded(_u32(block, offset + 20))
            base = kind & ~_MULTIPLE
            values = 1
            if kind & _MULTIPLE or base in _VARIABLE:
                values = _u32(block, offset)
                offset += 4
                if values > (size - offset) // 4:
                    raise ValueError("more values than bytes")
            for index in range(values):
                if base in _VARIABLE:
                    length = _u32(block, offset)
                    start, offset = offset + 4, offset + 4 + _padded(length)
                elif base in _FIXED:
                    length = _FIXED[base]
                    start, offset = offset, offset + _padded(length)
                else:
                    raise ValueError(f"unknown property type {base:#06x}")
                if offset > size:
                    raise ValueError("property runs past its attribute")
                if index == 0 and prop in wanted and prop not in into:
                    into[prop] = (base, bytes(block[start:start + length]))
    except (ValueError, struct.error):
        content.defects.append("a MAPI property list is damaged; read up to the damage")


def _padded(length: int) -> int:
    return length + (-length % 4)


def _file(properties: Properties, attributes: dict[int, bytes], codepage: str
          ) -> TnefFile | None:
    embedded = False
    if _DATA in properties:
        kind, data = properties[_DATA]
        if kind == _OBJECT:  # an interface id, then the object
            embedded, data = data[:16] == _IMESSAGE, data[16:]
    elif _ATT_DATA in attributes:
        data = attributes[_ATT_DATA]
    else:
        return None  # a rendering position with nothing attached
    names = [_string(properties, p, codepage) for p in (_LONG_FILENAME, _FILENAME)]
    title = attributes.get(_ATT_TITLE)
    names += [_text(_STRING8, title, codepage) if title else None,
              _string(properties, _DISPLAY_NAME, codepage)]
    hidden = properties.get(_HIDDEN)
    return TnefFile(
        name=next((n for n in names if n), ""),
        data=data,
        mime_tag=_string(properties, _MIME_TAG, codepage),
        content_id=_string(properties, _CONTENT_ID, codepage),
        hidden=bool(hidden and any(hidden[1][:2])),
        embedded_message=embedded,
    )


def _body(message: Properties, content: TnefContent, codepage: str, budget: int) -> None:
    if _BODY in message:
        content.body_text = _string(message, _BODY, codepage)
    if _HTML in message:
        content.body_html = message[_HTML][1]
    elif _RTF in message:
        rtf = decompressed_rtf(message[_RTF][1], limit=budget)
        if rtf is None:
            content.defects.append("RTF body unreadable or over the size budget; not expanded")
        content.body_rtf = rtf


def _string(properties: Properties, prop: int, codepage: str) -> str | None:
    found = properties.get(prop)
    return _text(*found, codepage) if found else None


def _text(kind: int, value: bytes, codepage: str) -> str | None:
    if kind == _UNICODE:
        text = value.decode("utf-16-le", "replace")
    elif kind == _STRING8:
        text = value.decode(codepage, "replace")
    else:
        return None
    return text.split("\x00", 1)[0] or None


_CODEPAGES = {65001: "utf-8", 20127: "ascii", 28591: "latin-1", 20866: "koi8-r",
              21866: "koi8-u", 50220: "iso2022_jp", 51932: "euc_jp", 936: "gbk"}


def _codec(codepage: int) -> str:
    """The Python codec of a Windows code page; windows-1252 when Python has none."""
    name = _CODEPAGES.get(codepage, f"cp{codepage}")
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "cp1252"
