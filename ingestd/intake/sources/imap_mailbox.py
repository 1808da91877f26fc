"""An open IMAP connection, read-only: folders examined, new mail listed by UID, bodies
fetched with BODY.PEEK[] (the source that opens it: imap.py)."""

from __future__ import annotations

import contextlib
import imaplib
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from ingestd.config.pulls import ImapSettings
from ingestd.errors import CursorLost, SourceRefused, SourceUnavailable
from ingestd.intake.sources.identity import message_keys_of
from ingestd.intake.sources.imap_client import (
    by_size,
    network,
)
from ingestd.intake.sources.imap_wire import (
    fetch_literals,
    internal_dates,
    mailbox_name,
    message_sizes,
    search_date,
    search_uids,
    status_numbers,
    uid_set,
)
from ingestd.intake.sources.pull import Cursor, Fetched, Listed, Listing, MessageKeys

_KEY_FIELDS = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SENDER REPLY-TO)]"
# UIDs per SEARCH: at most ~800 KB of answer, under imaplib's 1 MB line limit.
_SEARCH_WINDOW = 100_000
# Message bytes one FETCH round trip may bring into memory (a single larger message
# goes alone, up to smtp.max_message_size).
_FETCH_BYTES = 32 * 1024 * 1024
_UID_ITEM = re.compile(rb"\bUID\s+(\d+)", re.IGNORECASE)


class ImapConnection:
    def __init__(self, client: imaplib.IMAP4, settings: ImapSettings, where: str) -> None:
        self._client = client
        self._settings = settings
        self._where = where
        self._selected: str | None = None
        self._numbers: dict[str, int] = {}

    def folders(self) -> Sequence[str]:
        return self._settings.folders

    def baseline(self, folder: str) -> Cursor:
        numbers = self._status(folder)
        uidvalidity = numbers.get("UIDVALIDITY")
        if uidvalidity is None:
            raise SourceUnavailable(f"{self._where}: {folder}: the server reported no UIDVALIDITY")
        uidnext = numbers.get("UIDNEXT")
        last = uidnext - 1 if uidnext is not None else self._highest_uid(folder)
        return {"uidvalidity": uidvalidity, "last_uid": last}

    def list_new(self, folder: str, cursor: Cursor) -> Listing:
        uidvalidity = self._examine(folder)
        if uidvalidity != cursor.get("uidvalidity"):
            raise CursorLost(f"{folder}: UIDVALIDITY changed from {cursor.get('uidvalidity')} "
                             f"to {uidvalidity}")
        last = int(cursor.get("last_uid", 0))
        bound = self._bound(folder)
        if bound <= last:
            return Listing((), {"uidvalidity": uidvalidity, "last_uid": last})
        uids = self._search_range(folder, last + 1, bound, "")
        items = [Listed(self._id(folder, uidvalidity, u), {"uidvalidity": uidvalidity,
                                                            "last_uid": u}) for u in uids]
        # Up to the bound, not beyond: a message above it arrived after the listing
        # began and is the next poll's.
        return Listing(items, {"uidvalidity": uidvalidity, "last_uid": max(last, bound)})

    def list_since(self, folder: str, since: datetime) -> Listing:
        uidvalidity = self._examine(folder)
        # Everything at or below the bound was there when the folder was opened; the
        # cursor ends there, so whatever arrives during this listing is the next poll's.
        bound = self._bound(folder)
        candidates = self._search_range(folder, 1, bound, f" SINCE {search_date(since)}")
        dates: dict[int, datetime] = {}
        for start in range(0, len(candidates), 500):
            part = candidates[start:start + 500]
            dates.update(internal_dates(self._uid("FETCH", uid_set(part), "(UID INTERNALDATE)")))
        # A date the server sent in a form we cannot read: keep the message (SINCE
        # already chose it), rather than pass it by.
        uids = [u for u in candidates if u not in dates or dates[u] >= since]
        # No cursor per item: an old message can have a higher UID than a listed
        # one, so only the whole listing moves the cursor.
        items = [Listed(self._id(folder, uidvalidity, u)) for u in uids]
        return Listing(items, {"uidvalidity": uidvalidity, "last_uid": bound}, renamed=True)

    def message_keys(self, folder: str, provider_ids: Sequence[str]) -> dict[str, MessageKeys]:
        uids = self._uids_of(folder, provider_ids)
        if not uids:
            return {}
        headers = fetch_literals(self._uid("FETCH", uid_set(uids), f"(UID {_KEY_FIELDS})"))
        return {pid: message_keys_of(headers[uid]) for pid, uid in zip(provider_ids, uids,
                                                                       strict=True)
                if uid in headers}

    def fetch(self, folder: str, provider_ids: Sequence[str], max_bytes: int
              ) -> Iterator[Fetched]:
        uids = self._uids_of(folder, provider_ids)
        if not uids:
            return
        # Sizes first: a message of hundreds of megabytes must not be read into memory,
        # and one round trip holds at most _FETCH_BYTES of bodies.
        sizes = message_sizes(self._uid("FETCH", uid_set(uids), "(UID RFC822.SIZE)"))
        wanted = [u for u in uids if u in sizes and sizes[u] <= max_bytes]
        bodies: dict[int, bytes] = {}
        for group in by_size(wanted, sizes, _FETCH_BYTES):
            bodies.update(fetch_literals(self._uid("FETCH", uid_set(group),
                                                   "(UID BODY.PEEK[])")))
        absent = [u for u in uids if u not in bodies and not
                  (u in sizes and sizes[u] > max_bytes)]
        if absent:
            self._confirm_expunged(folder, absent)
        for pid, uid in zip(provider_ids, uids, strict=True):
            if uid in bodies:
                yield Fetched(pid, bodies[uid])
            elif uid in sizes and sizes[uid] > max_bytes:
                yield Fetched(pid, b"", too_large=sizes[uid])
            # else: expunged since the listing (confirmed); nothing to keep

    def _confirm_expunged(self, folder: str, uids: list[int]) -> None:
        """Messages the server sent nothing for must really be gone, or the cursor would
        pass mail that is still there: ask again, and fail the batch if any remains."""
        remaining = self._search_range(folder, min(uids), max(uids), "")
        still_there = sorted(set(uids) & set(remaining))
        if still_there:
            raise SourceUnavailable(
                f"{self._where}: {folder}: the server sent no content for UID "
                f"{uid_set(still_there[:10])} although it still has them")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.logout()

    # --- protocol steps ----------------------------------------------------------------

    @staticmethod
    def _id(folder: str, uidvalidity: int, uid: int) -> str:
        return f"{folder}/{uidvalidity}/{uid}"

    def _uids_of(self, folder: str, provider_ids: Sequence[str]) -> list[int]:
        uidvalidity = self._examine(folder)
        uids = []
        for pid in provider_ids:
            name, validity, uid = pid.rsplit("/", 2)
            if name != folder or int(validity) != uidvalidity:
                raise CursorLost(f"{folder}: UIDVALIDITY changed during the poll")
            uids.append(int(uid))
        return uids

    def _bound(self, folder: str) -> int:
        """The highest UID that existed when the folder was opened."""
        self._examine(folder)
        uidnext = self._numbers.get("UIDNEXT")
        return uidnext - 1 if uidnext is not None else self._highest_uid(folder)

    def _highest_uid(self, folder: str) -> int:
        """For servers that announce no UIDNEXT: the UID of the last message (``*``)."""
        self._examine(folder)
        data = self._command("FETCH * (UID)", lambda: self._client.fetch("*", "(UID)"),
                             empty_ok=True)
        found = [int(m.group(1)) for line in data if isinstance(line, bytes)
                 for m in [_UID_ITEM.search(line)] if m is not None]
        return max(found, default=0)

    def _search_range(self, folder: str, low: int, high: int, criteria: str) -> list[int]:
        """UIDs in low..high meeting ``criteria``, searched in windows: one answer line
        of a huge folder would pass imaplib's 1 MB line limit."""
        self._examine(folder)
        found: list[int] = []
        for start in range(max(low, 1), high + 1, _SEARCH_WINDOW):
            stop = min(start + _SEARCH_WINDOW - 1, high)
            uids = search_uids(self._uid("SEARCH", f"UID {start}:{stop}{criteria}"))
            # `n:m` with n beyond the last UID still returns the last message: filter.
            found.extend(u for u in uids if start <= u <= stop)
        return sorted(set(found))

    def _status(self, folder: str) -> dict[str, int]:
        data = self._command(f"STATUS {folder}", lambda: self._client.status(
            mailbox_name(folder), "(UIDVALIDITY UIDNEXT MESSAGES)"), folder=folder)
        return status_numbers(data)

    def _examine(self, folder: str) -> int:
        """Open ``folder`` read-only (once per connection); its UIDVALIDITY."""
        if self._selected != folder:
            self._client.untagged_responses.clear()
            self._command(f"EXAMINE {folder}", lambda: self._client.select(
                mailbox_name(folder), readonly=True), folder=folder)
            numbers: dict[str, int] = {}
            for name in ("UIDVALIDITY", "UIDNEXT"):
                _, values = self._client.response(name)
                for value in values or ():
                    if isinstance(value, bytes) and value.isdigit():
                        numbers[name] = int(value)
            if "UIDVALIDITY" not in numbers:
                raise SourceUnavailable(f"{self._where}: {folder}: no UIDVALIDITY on EXAMINE")
            self._numbers, self._selected = numbers, folder
        return self._numbers["UIDVALIDITY"]

    def _uid(self, command: str, *args: str) -> list[Any]:
        return self._command(f"UID {command}", lambda: self._client.uid(command, *args))

    def _command(self, what: str, run: Callable[[], tuple[str, list[Any]]],
                 folder: str | None = None, empty_ok: bool = False) -> list[Any]:
        with network(self._where):
            try:
                status, data = run()
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                status, data = "NO", [str(exc).encode()]
        if status != "OK" and empty_ok:
            return []
        if status != "OK":
            text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            if folder is not None and what.startswith(("EXAMINE", "STATUS")):
                raise SourceRefused(f"{self._where}: cannot open folder {folder!r}: {text}")
            raise SourceUnavailable(f"{self._where}: {what} failed: {text}")
        return data
