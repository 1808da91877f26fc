"""An open Microsoft Graph connection: delta rounds listed, messages' MIME fetched (the
source that opens it, with its token: graph.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests
import structlog

from ingestd.errors import CredentialsRejected, CursorLost, SourceRefused, SourceUnavailable
from ingestd.intake.sources.graph_http import (
    error_code,
    same_origin,
)
from ingestd.intake.sources.identity import message_keys_of
from ingestd.intake.sources.pull import Cursor, Fetched, Listed, Listing, MessageKeys
from ingestd.intake.sources.retry import retry_after_seconds

if TYPE_CHECKING:
    from ingestd.intake.sources.graph import GraphSource

log = structlog.get_logger("ingestd.pull")

_PREFER = 'odata.maxpagesize=100, IdType="ImmutableId"'
_CURSOR_GONE = {"syncstatenotfound", "resyncrequired", "syncstateinvalid"}
# Microsoft caps a $filter-ed message delta round at this many messages.
_FILTERED_DELTA_CAP = 5000


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
        if self._source.aborted.is_set():
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
                self._token = self._source.token(fresh=True)
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
