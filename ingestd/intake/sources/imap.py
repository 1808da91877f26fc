"""The IMAP source: read-only (EXAMINE, BODY.PEEK), a UIDVALIDITY + last UID cursor per folder.

imaplib (the standard library) is synchronous; a poll runs in a thread of
its own. Every network wait is bounded by ``timeout_seconds``. Nothing is
ever stored, flagged, moved or expunged at the server: the folder is opened
with EXAMINE and bodies are fetched with BODY.PEEK[], so even \\Seen stays
as the mailbox owner left it.
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from ingestd.config.pulls import ImapSettings
from ingestd.errors import CredentialsRejected, CursorLost, SourceRefused, SourceUnavailable
from ingestd.intake.sources.identity import message_keys_of
from ingestd.intake.sources.imap_wire import (
    fetch_literals,
    internal_dates,
    mailbox_name,
    message_sizes,
    response_code,
    search_date,
    search_uids,
    status_numbers,
    uid_set,
)
from ingestd.intake.sources.pull import Cursor, Fetched, Listed, Listing, MessageKeys
from ingestd.intake.sources.secrets import read_secret

# Response codes (RFC 5530) that say "later", not "your credentials are wrong".
_TRY_LATER = {"UNAVAILABLE", "SERVERBUG", "INUSE", "LIMIT", "CONTACTADMIN"}
_KEY_FIELDS = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM SENDER REPLY-TO)]"


class ImapSource:
    kind = "imap"

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        # The session being opened or in use, so abort() can reach it from another thread,
        # even before imaplib's constructor has read the greeting.
        self._sockets: list[socket.socket] = []
        self._client: imaplib.IMAP4 | None = None

    def abort(self) -> None:
        """Drop the connection now (from another thread): a blocked read wakes at once."""
        client = self._client
        candidates = [*self._sockets, *([client.sock] if client is not None else [])]
        for sock in candidates:
            # shutdown() wakes a read blocked in another thread; close() would not.
            with contextlib.suppress(OSError, AttributeError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def where(self) -> str:
        return f"IMAP {self.settings.host}:{self.settings.effective_port}"

    def connect(self) -> ImapConnection:
        self._sockets.clear()
        self._client = None
        client = self._open()
        self._client = client
        try:
            self._log_in(client)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return ImapConnection(client, self.settings, self.where)

    def _open(self) -> imaplib.IMAP4:
        s = self.settings
        try:
            context = ssl.create_default_context(
                cafile=str(s.ca_file) if s.ca_file is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise SourceRefused(f"{self.where}: ca_file {s.ca_file}: {exc}") from exc
        client: imaplib.IMAP4
        with _network(self.where):
            if s.tls == "implicit":
                client = _Imap4Ssl(self._sockets.append, s.host, s.effective_port,
                                   ssl_context=context, timeout=s.timeout_seconds)
            else:
                client = _Imap4(self._sockets.append, s.host, s.effective_port,
                                timeout=s.timeout_seconds)
                if s.tls == "starttls":
                    try:
                        client.starttls(ssl_context=context)
                    except BaseException:
                        with contextlib.suppress(Exception):
                            client.shutdown()
                        raise
        return client

    def _log_in(self, client: imaplib.IMAP4) -> None:
        s = self.settings
        try:
            if s.auth == "xoauth2":
                token = read_secret(s.token_file, None, "token")
                client.authenticate("XOAUTH2", _xoauth2(s.username, token))
            else:
                password = read_secret(s.password_file, s.password_env, "password")
                if password.isascii() and s.username.isascii():
                    client.login(s.username, password)
                else:
                    # LOGIN is ASCII only; SASL PLAIN carries UTF-8 (RFC 4616).
                    plain = f"\0{s.username}\0{password}".encode()
                    client.authenticate("PLAIN", lambda _: plain)
        except imaplib.IMAP4.abort as exc:
            raise SourceUnavailable(f"{self.where}: connection lost at login: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            if response_code(exc) in _TRY_LATER:
                raise SourceUnavailable(f"{self.where}: login refused for now: {exc}") from exc
            raise CredentialsRejected(f"{self.where}: login as {s.username} refused: "
                                      f"{_text(exc)}") from exc
        except OSError as exc:
            raise SourceUnavailable(f"{self.where}: connection lost at login: {exc}") from exc


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
        if uidnext is None:
            self._examine(folder)
            uids = self._search(folder, "ALL")
            last = uids[-1] if uids else 0
        else:
            last = uidnext - 1
        return {"uidvalidity": uidvalidity, "last_uid": last}

    def list_new(self, folder: str, cursor: Cursor) -> Listing:
        uidvalidity = self._examine(folder)
        if uidvalidity != cursor.get("uidvalidity"):
            raise CursorLost(f"{folder}: UIDVALIDITY changed from {cursor.get('uidvalidity')} "
                             f"to {uidvalidity}")
        last = int(cursor.get("last_uid", 0))
        uidnext = self._numbers.get("UIDNEXT")
        if uidnext is not None and uidnext - 1 <= last:
            return Listing((), {"uidvalidity": uidvalidity, "last_uid": last})
        # `n:*` returns the highest message even when n is beyond it: filter.
        uids = [u for u in self._search(folder, f"UID {last + 1}:*") if u > last]
        items = [Listed(self._id(folder, uidvalidity, u), {"uidvalidity": uidvalidity,
                                                            "last_uid": u}) for u in uids]
        return Listing(items, {"uidvalidity": uidvalidity, "last_uid": max([last, *uids])})

    def list_since(self, folder: str, since: datetime) -> Listing:
        uidvalidity = self._examine(folder)
        candidates = self._search(folder, f"SINCE {search_date(since)}")
        dates: dict[int, datetime] = {}
        for start in range(0, len(candidates), 500):
            part = candidates[start:start + 500]
            dates.update(internal_dates(self._uid("FETCH", uid_set(part), "(UID INTERNALDATE)")))
        uids = [u for u in candidates if u in dates and dates[u] >= since]
        # The cursor must pass every message there now, listed or too old, or the
        # next poll would list the old ones as new.
        everything = self._search(folder, "ALL")
        last = max([0, *everything, *uids])
        # No cursor per item: an old message can have a higher UID than a listed
        # one, so only the whole listing moves the cursor.
        items = [Listed(self._id(folder, uidvalidity, u)) for u in uids]
        return Listing(items, {"uidvalidity": uidvalidity, "last_uid": last}, renamed=True)

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
        # Sizes first: a message of hundreds of megabytes must not be read into memory.
        sizes = message_sizes(self._uid("FETCH", uid_set(uids), "(UID RFC822.SIZE)"))
        wanted = [u for u in uids if u in sizes and sizes[u] <= max_bytes]
        bodies = (fetch_literals(self._uid("FETCH", uid_set(wanted), "(UID BODY.PEEK[])"))
                  if wanted else {})
        for pid, uid in zip(provider_ids, uids, strict=True):
            if uid in bodies:
                yield Fetched(pid, bodies[uid])
            elif uid in sizes and sizes[uid] > max_bytes:
                yield Fetched(pid, b"", too_large=sizes[uid])
            # else: expunged since the listing; gone at the source, nothing to keep

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

    def _search(self, folder: str, criteria: str) -> list[int]:
        self._examine(folder)
        return search_uids(self._uid("SEARCH", criteria))

    def _uid(self, command: str, *args: str) -> list[Any]:
        return self._command(f"UID {command}", lambda: self._client.uid(command, *args))

    def _command(self, what: str, run: Callable[[], tuple[str, list[Any]]],
                 folder: str | None = None) -> list[Any]:
        with _network(self._where):
            try:
                status, data = run()
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as exc:
                status, data = "NO", [str(exc).encode()]
        if status != "OK":
            text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            if folder is not None and what.startswith(("EXAMINE", "STATUS")):
                raise SourceRefused(f"{self._where}: cannot open folder {folder!r}: {text}")
            raise SourceUnavailable(f"{self._where}: {what} failed: {text}")
        return data


class _Imap4(imaplib.IMAP4):
    """imaplib's client, telling us its socket before it waits for the greeting."""

    def __init__(self, on_socket: Callable[[socket.socket], None], *args: Any,
                 **kwargs: Any) -> None:
        self._on_socket = on_socket
        super().__init__(*args, **kwargs)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock: socket.socket = super()._create_socket(timeout)  # type: ignore[misc]
        self._on_socket(sock)
        return sock


class _Imap4Ssl(imaplib.IMAP4_SSL):
    def __init__(self, on_socket: Callable[[socket.socket], None], *args: Any,
                 **kwargs: Any) -> None:
        self._on_socket = on_socket
        super().__init__(*args, **kwargs)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock: socket.socket = super()._create_socket(timeout)  # type: ignore[misc]
        self._on_socket(sock)
        return sock


@contextlib.contextmanager
def _network(where: str) -> Iterator[None]:
    """Connection trouble of any kind → ``SourceUnavailable`` (retried)."""
    try:
        yield
    except imaplib.IMAP4.abort as exc:
        raise SourceUnavailable(f"{where}: connection lost: {exc}") from exc
    except imaplib.IMAP4.error as exc:
        raise SourceUnavailable(f"{where}: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise SourceUnavailable(f"{where}: {type(exc).__name__}: {exc}") from exc


def _xoauth2(username: str, token: str) -> Callable[[bytes], bytes]:
    """The SASL XOAUTH2 answer; a second challenge is the server's error: answer it empty."""
    asked = 0

    def answer(_challenge: bytes) -> bytes:
        nonlocal asked
        asked += 1
        return f"user={username}\x01auth=Bearer {token}\x01\x01".encode() if asked == 1 else b""

    return answer


def _text(error: BaseException) -> str:
    text = str(error)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text[:300]
