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
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msal
import requests
import structlog

from ingestd.config.pulls import GraphSettings
from ingestd.errors import CredentialsRejected, SourceUnavailable
from ingestd.intake.sources.graph_http import (
    TimedSession,
    check_private_key,
)
from ingestd.intake.sources.graph_mailbox import GraphConnection
from ingestd.intake.sources.secrets import read_secret

log = structlog.get_logger("ingestd.pull")

GRAPH_URL = "https://graph.microsoft.com"
AUTHORITY = "https://login.microsoftonline.com"
# The scope names Graph itself whatever graph_url points at (a proxy, a test server).
SCOPE = "https://graph.microsoft.com/.default"
# Token endpoint answers that a person must fix (a wrong or expired secret, a revoked app).
_REFUSED = {"invalid_client", "invalid_grant", "unauthorized_client", "invalid_request",
            "invalid_scope", "access_denied"}
_SECRET_WARNING_DAYS = 30
_MSAL_THROTTLE_SECONDS = 5.0


class GraphSource:
    kind = "graph"

    def __init__(self, settings: GraphSettings) -> None:
        self.settings = settings
        self._app: Any = None
        self._session: requests.Session | None = None
        self._warned_on: date | None = None
        self._lock = threading.Lock()
        self.aborted = threading.Event()
        self._credential_fingerprint = ""

    @property
    def graph_url(self) -> str:
        return self.settings.graph_url or GRAPH_URL

    @property
    def where(self) -> str:
        return f"Microsoft Graph {self.graph_url} ({self.settings.user})"

    def connect(self) -> GraphConnection:
        self.aborted.clear()
        self._warn_secret_expiry()
        session = self._http()
        token = self.token()
        return GraphConnection(self, session, token)

    def abort(self) -> None:
        # Checked before every Graph request, so a round of many pages ends at the next
        # one; the request already waiting on the network has its socket shut.
        self.aborted.set()
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

    def token(self, fresh: bool = False) -> str:
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
