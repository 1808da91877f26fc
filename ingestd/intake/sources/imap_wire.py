"""IMAP protocol details imaplib leaves to its caller: folder names, response parsing, dates.

Responses are parsed leniently (servers differ in the order of FETCH
items), and nothing here trusts the server beyond the syntax it needs.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def mailbox_name(folder: str) -> str:
    """``folder`` as an IMAP astring: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    encoded = modified_utf7(folder)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def modified_utf7(text: str) -> str:
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def search_date(moment: datetime) -> str:
    """A SEARCH SINCE date one day early: SINCE ignores time and time zone, the
    exact filter on INTERNALDATE follows."""
    day = (moment.astimezone(UTC) - timedelta(days=1)).date()
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


_STATUS_ITEM = re.compile(rb"(UIDVALIDITY|UIDNEXT|MESSAGES)\s+(\d+)", re.IGNORECASE)


def status_numbers(data: Iterable[Any]) -> dict[str, int]:
    """``STATUS`` / untagged numbers as {"UIDVALIDITY": n, "UIDNEXT": n, ...}."""
    found: dict[str, int] = {}
    for line in data:
        if isinstance(line, bytes):
            for name, value in _STATUS_ITEM.findall(line):
                found[name.decode().upper()] = int(value)
    return found


def search_uids(data: Iterable[Any]) -> list[int]:
    uids: set[int] = set()
    for line in data:
        if isinstance(line, bytes):
            uids.update(int(t) for t in line.split() if t.isdigit())
    return sorted(uids)


def uid_set(uids: Iterable[int]) -> str:
    return ",".join(str(u) for u in uids)


_UID = re.compile(rb"\bUID\s+(\d+)", re.IGNORECASE)
_INTERNALDATE = re.compile(rb'INTERNALDATE\s+"([^"]+)"', re.IGNORECASE)


def fetch_literals(data: Iterable[Any]) -> dict[int, bytes]:
    """``UID FETCH`` answers with one literal each (a body or header section) → {uid: bytes}.

    imaplib gives ``(prefix, literal)`` tuples and the text after a literal
    as a separate bytes element; the UID may stand before or after the
    literal, depending on the server.
    """
    found: dict[int, bytes] = {}
    items = list(data)
    for i, item in enumerate(items):
        if not isinstance(item, tuple) or len(item) != 2:
            continue
        prefix, literal = item
        match = _UID.search(prefix)
        if match is None and i + 1 < len(items) and isinstance(items[i + 1], bytes):
            match = _UID.search(items[i + 1])
        if match is not None and isinstance(literal, bytes):
            found[int(match.group(1))] = literal
    return found


_SIZE = re.compile(rb"RFC822\.SIZE\s+(\d+)", re.IGNORECASE)


def message_sizes(data: Iterable[Any]) -> dict[int, int]:
    """``UID FETCH (RFC822.SIZE)`` answers → {uid: size in bytes}."""
    found: dict[int, int] = {}
    for line in data:
        if isinstance(line, bytes):
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid is not None and size is not None:
                found[int(uid.group(1))] = int(size.group(1))
    return found


def internal_dates(data: Iterable[Any]) -> dict[int, datetime]:
    """``UID FETCH (INTERNALDATE)`` answers → {uid: aware datetime}; unreadable dates left out."""
    found: dict[int, datetime] = {}
    for line in data:
        if not isinstance(line, bytes):
            continue
        uid, when = _UID.search(line), _INTERNALDATE.search(line)
        if uid is None or when is None:
            continue
        parsed = internal_date(when.group(1).decode("ascii", "replace"))
        if parsed is not None:
            found[int(uid.group(1))] = parsed
    return found


_DATE = re.compile(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")


def internal_date(text: str) -> datetime | None:
    """``"4-Dec-2026 14:03:00 +0100"`` → an aware datetime (no locale involved)."""
    match = _DATE.fullmatch(text)
    if match is None or match.group(2).title() not in _MONTHS:
        return None
    day, month, year, hh, mm, ss, sign, zh, zm = match.groups()
    offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == "-" else 1)
    try:
        return datetime(int(year), _MONTHS.index(month.title()) + 1, int(day), int(hh),
                        int(mm), int(ss), tzinfo=timezone(offset))
    except ValueError:
        return None


_CODE = re.compile(r"\[([A-Z-]+)")


def response_code(error: BaseException) -> str | None:
    """The bracketed response code of a NO/BAD text, e.g. ``AUTHENTICATIONFAILED``."""
    match = _CODE.search(str(error))
    return match.group(1) if match else None
