"""The Microsoft 365 source: msal client credentials and Microsoft Graph delta queries.

Each folder's cursor is a Graph deltaLink. The first connection runs one
delta round that asks for ids only and imports nothing; polls follow the
stored deltaLink through every ``@odata.nextLink`` to the next deltaLink,
and fetch each new message's MIME from ``/messages/{id}/$value``. Ids are
immutable ones (``Prefer: IdType="ImmutableId"``), so a message moved
between folders keeps its provider id. A 410 (or ``syncStateNotFound``) is
the framework's cursor loss: a fresh round filtered to the lookback window.

msal fetches the authority's OpenID configuration when its application is
built; that happens inside the poll (retried), and the application is kept
for the next polls so its token cache spares the token endpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msal
import requests
import structlog

from ingestd.config.pulls import GraphSettings
from ingestd.errors import CredentialsRejected, CursorLost, SourceRefused, SourceUnavailable
from ingestd.intake.sources.graph_http import (
    TimedSession,
    check_private_key,
    error_code,
    same_origin,
)
from ingestd.intake.sources.identity import message_keys_of
from ingestd.intake.sources.pull import Cursor, Fetched, Listed, Listing, MessageKeys
from ingestd.intake.sources.retry import retry_after_seconds
from ingestd.intake.sources.secrets import read_secret

log = structlog.get_logger("ingestd.pull")

GRAPH_URL = "https://graph.microsoft.com"
AUTHORITY = "https://login.microsoftonline.com"
# The scope names Graph itself whatever graph_url points at (a proxy, a test server).
SCOPE = "https://graph.microsoft.com/.default"
_PREFER = 'odata.maxpagesize=100, IdType="ImmutableId"'
_CURSOR_GONE = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}
# Token endpoint answers that a person must fix (a wrong or expired secret, a revoked app).
_REFUSED = {"invalid_client", "invalid_grant", "unauthorized_client", "invalid_request",
            "invalid_scope", "access_denied"}
_SECRET_WARNING_DAYS = 30
_MSAL_THROTTLE_SECONDS = 5.0
# Microsoft caps a $filter-ed message delta round at this many messages.
_FILTERED_DELTA_CAP = 5000


class GraphSource:
    kind = "graph"

    def __init__(self, settings: GraphSettings) -> None:
        self.settings = settings
        self._app: Any = None
        self._session: requests.Session | None = None
        self._warned_on: date | None = None
        self._lock = threading.Lock()
        self._aborted = threading.Event()
        self._credential_fingerprint = ""

    @property
    def graph_url(self) -> str:
        return self.settings.graph_url or GRAPH_URL

    @property
    def where(self) -> str:
        return f"Microsoft Graph {self.graph_url} ({self.settings.user})"

    def connect(self) -> GraphConnection:
        self._aborted.clear()
        self._warn_secret_expiry()
        session = self._http()
        token = self._token()
        return GraphConnection(self, session, token)

    def abort(self) -> None:
        # Checked before every Graph request, so a round of many pages ends at the next
        # one; the request already waiting on the network has its socket shut.
        self._aborted.set()
        session = self._session
        if isinstance(session, TimedSession):
            session.tracker.shut_down()

    # --- identity -----------------------------------------------------------------------

    def _http(self) -> requests.Session:
        if self._session is None:
            session = TimedSession(self.settings.timeout_seconds)
            if self.settings.ca_file is not None:
                session.verify = str(self.settings.ca_file)
                # Otherwise REQUESTS_CA_BUNDLE from the environment would override it.
                session.trust_env = False
            self._session = session
        return self._session

    def _application(self) -> Any:
        s = self.settings
        if s.certificate_file is not None:
            try:
                key = Path(s.certificate_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise CredentialsRejected(f"certificate_file {s.certificate_file}: "
                                          f"{exc.strerror or exc}") from exc
            check_private_key(key, s.certificate_file)
            credential: Any = {"private_key": key, "thumbprint": s.certificate_thumbprint}
        else:
            credential = read_secret(s.client_secret_file, s.client_secret_env, "client secret")
        # Read at every connection: a rotated secret (or certificate) in its file makes a
        # new application; an unchanged one keeps the old, and its token cache.
        fingerprint = hashlib.sha256(repr(credential).encode()).hexdigest()
        if self._app is not None and fingerprint == self._credential_fingerprint:
            return self._app
        self._app = None
        self._credential_fingerprint = fingerprint
        authority = f"{s.authority or AUTHORITY}/{s.tenant_id}"
        try:
            # Fetches the authority's OpenID configuration: the network, so retried.
            self._app = msal.ConfidentialClientApplication(
                s.client_id, client_credential=credential, authority=authority,
                http_client=self._http(),
                instance_discovery=False if s.authority else None)
        except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
            raise SourceUnavailable(f"{self.where}: authority {authority}: {exc}") from exc
        except ValueError as exc:
            # msal's "Unable to get authority configuration": the authority did not answer
            # as one (down, or a proxy's error page); a wrong tenant looks the same.
            raise SourceUnavailable(f"{self.where}: authority {authority}: {exc}") from exc
        return self._app

    def _token(self, fresh: bool = False) -> str:
        with self._lock:
            app = self._application()
            if fresh:
                with contextlib.suppress(Exception):
                    app.remove_tokens_for_client()
            try:
                result = app.acquire_token_for_client(scopes=[SCOPE])
            except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
                # msal answers again from its own memory of a 429 / 5xx until its
                # Retry-After (5 s unless said) has passed: waiting less retries nothing.
                raise SourceUnavailable(f"{self.where}: token endpoint: {exc}",
                                        retry_after=_MSAL_THROTTLE_SECONDS) from exc
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error") or "unknown_error")
        text = f"{self.where}: token refused: {error}: " \
               f"{str(result.get('error_description') or '')[:200]}"
        if error in _REFUSED:
            # The next connection reads the secret file again and builds a new application.
            self._app = None
            raise CredentialsRejected(text)
        raise SourceUnavailable(text, retry_after=_MSAL_THROTTLE_SECONDS)

    def _warn_secret_expiry(self) -> None:
        today = datetime.now(UTC).date()
        days = self.settings.secret_days_left(today)
        if days is not None and days <= _SECRET_WARNING_DAYS and self._warned_on != today:
            self._warned_on = today
            log.warning("mailbox.secret_expiring", graph_user=self.settings.user,
                        expires=self.settings.secret_expires.isoformat()
                        if self.settings.secret_expires else None, days_left=days)


class GraphConnection:
    def __init__(self, source: GraphSource, session: Any, token: str) -> None:
        self._source = source
        self._session = session
        self._token = token
        self._settings = source.settings
        self._base = source.graph_url
        self._user = quote(self._settings.user, safe="@")

    def folders(self) -> Sequence[str]:
        return self._settings.folders

    def baseline(self, folder: str) -> Cursor:
        # Every message now in the folder comes back once, as ids only; none is imported.
        _, delta_link = self._round(self._initial(folder, select="id"))
        return {"delta_link": delta_link}

    def list_new(self, folder: str, cursor: Cursor) -> Listing:
        ids, delta_link = self._round(str(cursor["delta_link"]))
        return Listing([Listed(i) for i in ids], {"delta_link": delta_link})

    def list_since(self, folder: str, since: datetime) -> Listing:
        moment = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        url = self._initial(folder, select="id,receivedDateTime",
                            extra=f"&$filter=receivedDateTime%20ge%20{moment}")
        ids, delta_link = self._round(url)
        if len(ids) >= _FILTERED_DELTA_CAP:
            log.error("mailbox.backfill_capped", graph_user=self._settings.user, folder=folder,
                      since=moment, listed=len(ids),
                      detail=f"Graph lists at most {_FILTERED_DELTA_CAP} messages in a "
                             "filtered delta round; older mail of the window was not listed")
        return Listing([Listed(i) for i in ids], {"delta_link": delta_link})

    def message_keys(self, folder: str, provider_ids: Sequence[str]) -> dict[str, MessageKeys]:
        keys: dict[str, MessageKeys] = {}
        for pid in provider_ids:
            response = self._get(f"{self._base}/v1.0/users/{self._user}/messages/"
                                 f"{quote(pid, safe='')}?$select=internetMessageId,from",
                                 missing_ok=True)
            if response is None:
                continue
            body = response.json()
            address = (body.get("from") or {}).get("emailAddress", {}).get("address", "")
            block = f"Message-ID: {body.get('internetMessageId', '')}\r\nFrom: <{address}>\r\n"
            keys[pid] = message_keys_of(block.encode("utf-8", "replace"))
        return keys

    def fetch(self, folder: str, provider_ids: Sequence[str], max_bytes: int
              ) -> Iterator[Fetched]:
        for pid in provider_ids:
            url = f"{self._base}/v1.0/users/{self._user}/messages/{quote(pid, safe='')}/$value"
            response = self._get(url, missing_ok=True, stream=True)
            if response is None:  # deleted since the delta round: gone at the source
                continue
            with contextlib.closing(response):
                declared = int(response.headers.get("Content-Length") or 0)
                if declared > max_bytes:
                    yield Fetched(pid, b"", too_large=declared)
                    continue
                raw = bytearray()
                for chunk in response.iter_content(chunk_size=256 * 1024):
                    raw += chunk
                    if len(raw) > max_bytes:
                        break
                if len(raw) > max_bytes:
                    yield Fetched(pid, b"", too_large=len(raw))
                    continue
                yield Fetched(pid, bytes(raw))

    def close(self) -> None:
        pass

    # --- Graph calls ---------------------------------------------------------------------

    def _initial(self, folder: str, *, select: str, extra: str = "") -> str:
        return (f"{self._base}/v1.0/users/{self._user}/mailFolders/{quote(folder, safe='')}"
                f"/messages/delta?changeType=created&$select={select}{extra}")

    def _round(self, url: str) -> tuple[list[str], str]:
        """Follow a delta round from ``url`` to its deltaLink: (new ids in order, deltaLink)."""
        ids: dict[str, None] = {}
        while True:
            page = self._get(url)
            assert page is not None
            body = page.json()
            for item in body.get("value", ()):
                if "@removed" not in item and "id" in item:
                    ids[str(item["id"])] = None
            if "@odata.deltaLink" in body:
                return list(ids), str(body["@odata.deltaLink"])
            next_link = body.get("@odata.nextLink")
            if not next_link:
                raise SourceUnavailable(f"{self._source.where}: a delta page with neither "
                                        "nextLink nor deltaLink")
            url = str(next_link)

    def _get(self, url: str, *, missing_ok: bool = False, stream: bool = False) -> Any:
        if self._source._aborted.is_set():
            raise SourceUnavailable(f"{self._source.where}: the poll was stopped")
        if not same_origin(url, self._base):
            # A link elsewhere never gets our token.
            raise SourceRefused(f"{self._source.where}: refusing to follow a link to {url}")
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._token}", "Prefer": _PREFER}
            try:
                response = self._session.get(url, headers=headers, stream=stream)
            except requests.RequestException as exc:
                raise SourceUnavailable(f"{self._source.where}: {type(exc).__name__}: "
                                        f"{exc}") from exc
            if response.status_code == 401 and attempt == 1:
                response.close()
                # An expired or revoked token: drop it and ask for a new one, once.
                self._token = self._source._token(fresh=True)
                continue
            return self._checked(response, missing_ok)
        raise AssertionError("unreachable")

    def _checked(self, response: Any, missing_ok: bool) -> Any:
        status = response.status_code
        if status < 300:
            return response
        code = error_code(response)
        response.close()
        text = f"{self._source.where}: HTTP {status} {code or ''}".rstrip()
        if status == 410 or (code or "").lower() in _CURSOR_GONE:
            raise CursorLost(text)
        if status == 404 and missing_ok:
            return None
        if status in (429, 503, 504) or status >= 500:
            raise SourceUnavailable(text, retry_after=retry_after_seconds(
                response.headers.get("Retry-After")))
        if status in (401, 403):
            raise CredentialsRejected(text)
        raise SourceRefused(text)
