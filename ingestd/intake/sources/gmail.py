"""The Gmail source: the Gmail API through google-api-python-client, read-only.

The cursor of each label is a Gmail historyId: the first connection takes the
profile's, ``users.history.list`` (messageAdded, that label) lists what came
after it, pages followed, and the last page's historyId is the new cursor,
stored only once every message it covers is. An expired historyId (404) is
the framework's cursor loss: mail of the lookback window is listed again with
``messages.list`` (Gmail ids never change, so what is stored is skipped by id).

Every call runs with the client's own retries off (``num_retries=0``): one
policy, ours (``retry.py``), decides, and it honours Retry-After, which the
client's does not. One client is built per poll (httplib2 is not thread-safe).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ingestd.config.pulls import GmailSettings
from ingestd.errors import CredentialsRejected
from ingestd.intake.sources.gmail_http import MessageMissing, abortable_http, translated_call
from ingestd.intake.sources.identity import message_keys_of
from ingestd.intake.sources.pull import Cursor, Fetched, Listed, Listing, MessageKeys

if TYPE_CHECKING:
    import httplib2

SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
_PAGE = 500
_SKIPPED_LABELS = {"DRAFT"}


class GmailSource:
    kind = "gmail"

    def __init__(self, settings: GmailSettings) -> None:
        self.settings = settings
        self._http: httplib2.Http | None = None
        self._aborted = threading.Event()

    @property
    def where(self) -> str:
        return f"Gmail API {self.settings.api_endpoint or 'gmail.googleapis.com'}"

    def connect(self) -> GmailConnection:
        # Imported here: the client and its discovery documents load only for Gmail mailboxes.
        import google_auth_httplib2
        import httplib2
        from googleapiclient.discovery import build

        credentials = self._credentials()
        self._aborted.clear()
        raw_http = abortable_http(httplib2, self.settings.timeout_seconds, self._aborted)
        self._http = raw_http
        authorized = google_auth_httplib2.AuthorizedHttp(credentials, http=raw_http)
        options = ({"api_endpoint": self.settings.api_endpoint}
                   if self.settings.api_endpoint else None)
        service = build("gmail", "v1", http=authorized, client_options=options,
                        static_discovery=True, cache_discovery=False)
        connection = GmailConnection(service, self.settings, self.where)
        # Authenticates (and refreshes) now: a refused grant is needs_reauth, not a poll error.
        connection.profile_history_id()
        return connection

    def abort(self) -> None:
        self._aborted.set()
        http = self._http
        if http is None:
            return
        for connection in list(getattr(http, "connections", {}).values()):
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _credentials(self) -> Any:
        s = self.settings
        try:
            if s.service_account:
                from google.oauth2 import service_account

                info = _json_file(s.credentials_file, "credentials_file")
                creds = service_account.Credentials.from_service_account_info(
                    info, scopes=[SCOPE], subject=s.subject)
            else:
                from google.oauth2.credentials import Credentials

                assert s.token_file is not None
                info = _json_file(s.token_file, "token_file")
                creds = Credentials.from_authorized_user_info(info, scopes=[SCOPE])
                # from_authorized_user_info always puts Google's token URI back.
                stored_uri = info.get("token_uri") if isinstance(info, dict) else None
                if s.token_uri is None and stored_uri:
                    creds = creds.with_token_uri(stored_uri)
        except (ValueError, KeyError) as exc:
            raise CredentialsRejected(f"{self.where}: unusable credentials: {exc}") from exc
        if s.token_uri is not None:
            creds = creds.with_token_uri(s.token_uri)
        return creds


class GmailConnection:
    def __init__(self, service: Any, settings: GmailSettings, where: str) -> None:
        self._users = service.users()
        self._settings = settings
        self._where = where

    def folders(self) -> Sequence[str]:
        return self._settings.labels

    def profile_history_id(self) -> str:
        profile = self._call("users.getProfile", self._users.getProfile(userId="me"))
        return str(profile["historyId"])

    def baseline(self, folder: str) -> Cursor:
        return {"history_id": self.profile_history_id()}

    def list_new(self, folder: str, cursor: Cursor) -> Listing:
        ids: dict[str, None] = {}
        # labelAdded too: mail rescued from Spam, or filed elsewhere by a filter and moved
        # into the label later, is new to this label even though it is not new to Gmail.
        query = {"userId": "me", "startHistoryId": str(cursor["history_id"]),
                 "historyTypes": ["messageAdded", "labelAdded"], "labelId": folder,
                 "maxResults": _PAGE}
        request: Any = self._users.history().list(**query)
        last_history_id = str(cursor["history_id"])
        while request is not None:
            page = self._call("users.history.list", request, cursor_call=True)
            for record in page.get("history", ()):
                for added in record.get("messagesAdded", ()):
                    self._take(added.get("message", {}), folder, ids, require_label=False)
                for labelled in record.get("labelsAdded", ()):
                    if folder in labelled.get("labelIds", ()):
                        self._take(labelled.get("message", {}), folder, ids,
                                   require_label=True)
            last_history_id = str(page.get("historyId", last_history_id))
            # Not list_next(): it cannot rebuild a query with a repeated parameter
            # (historyTypes), and raises ValueError on the second page.
            token = page.get("nextPageToken")
            request = self._users.history().list(**query, pageToken=token) if token else None
        # Gmail cannot resume inside a history listing: only the whole moves the cursor.
        return Listing([Listed(i) for i in ids], {"history_id": last_history_id})

    @staticmethod
    def _take(message: dict[str, Any], folder: str, ids: dict[str, None], *,
              require_label: bool) -> None:
        labels = set(message.get("labelIds", ()))
        if "id" not in message or labels & _SKIPPED_LABELS:
            return
        if require_label and labels and folder not in labels:
            return  # moved in and out again before this poll
        ids[str(message["id"])] = None

    def list_since(self, folder: str, since: datetime) -> Listing:
        # The cursor comes first: whatever arrives while we list is in the next history.
        after = {"history_id": self.profile_history_id()}
        ids: list[str] = []
        request = self._users.messages().list(
            userId="me", labelIds=[folder], q=f"after:{int(since.timestamp())}",
            maxResults=_PAGE)
        while request is not None:
            page = self._call("users.messages.list", request)
            ids.extend(str(m["id"]) for m in page.get("messages", ()) if "id" in m)
            request = self._users.messages().list_next(request, page)
        # Newest first from Gmail; oldest first for us, as a mailbox is read.
        unique = list(dict.fromkeys(reversed(ids)))
        return Listing([Listed(i) for i in unique], after)

    def message_keys(self, folder: str, provider_ids: Sequence[str]) -> dict[str, MessageKeys]:
        keys: dict[str, MessageKeys] = {}
        for pid in provider_ids:
            message = self._get(pid, format="metadata",
                                metadataHeaders=["Message-ID", "From", "Sender", "Reply-To"])
            if message is None:
                continue
            headers = message.get("payload", {}).get("headers", ())
            block = "".join(f"{h.get('name')}: {h.get('value')}\r\n" for h in headers)
            keys[pid] = message_keys_of(block.encode("utf-8", "replace"))
        return keys

    def fetch(self, folder: str, provider_ids: Sequence[str], max_bytes: int
              ) -> Iterator[Fetched]:
        for pid in provider_ids:
            # The size first: a raw download is base64 in JSON, several times the message
            # in memory, and must not happen for one over the limit.
            minimal = self._get(pid, format="minimal")
            if minimal is None:  # deleted between the listing and now: gone at the source
                continue
            size = int(minimal.get("sizeEstimate") or 0)
            if size > max_bytes:
                yield Fetched(pid, b"", too_large=size)
                continue
            message = self._get(pid, format="raw")
            if message is None:
                continue
            raw = _raw_bytes(message.get("raw", ""))
            if len(raw) > max_bytes:
                yield Fetched(pid, b"", too_large=len(raw))
                continue
            yield Fetched(pid, raw)

    def close(self) -> None:
        pass

    def _get(self, provider_id: str, **params: Any) -> dict[str, Any] | None:
        request = self._users.messages().get(userId="me", id=provider_id, **params)
        try:
            return self._call("users.messages.get", request, missing_ok=True)
        except MessageMissing:
            return None

    def _call(self, what: str, request: Any, *, cursor_call: bool = False,
              missing_ok: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = translated_call(
            self._where, what, lambda: request.execute(num_retries=0),
            cursor_call=cursor_call, missing_ok=missing_ok)
        return result


def _raw_bytes(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_file(path: Any, key: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise CredentialsRejected(f"{key} {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CredentialsRejected(f"{key} {path}: not JSON ({exc})") from exc
