"""Entra ID (OpenID discovery + token endpoint) and Microsoft Graph v1.0 on https://127.0.0.1.

One TLS server (a throw-away trustme CA, certificate for 127.0.0.1 and localhost) answers both
halves, because MSAL refuses any authority that is not https (connectors.md G5). The real
clients talk to it over real HTTP:

    session = requests.Session(); session.verify = fake.ca_file; session.trust_env = False
    app = msal.ConfidentialClientApplication(fake.client_id, client_credential=fake.client_secret,
        authority=f"{fake.base_url}/{fake.tenant}", instance_discovery=False, http_client=session)

and the Graph calls go to ``fake.base_url`` with the bearer token MSAL got.

The fake keeps a small model per mailbox (folders, messages with an arrival order, deletions)
and serves the two Graph routes a pull needs: message delta on a folder (rounds, pages, delta
tokens, ``@removed``) and ``$value``. Tests break things on purpose through a Python API:
expired delta tokens (410 + Location, or 400 syncStateNotFound), expired access tokens, a
rejected client secret, an unreachable authority, injected error answers and slow answers.
Every request is recorded, so a test can prove the pull never tried to change a mailbox
(``writes()``) and that it sent ``Prefer: IdType="ImmutableId"``.

Answers follow the shapes Graph and Entra send (/work/shared/notes/connectors.md §2 and §4.2).
Where the fake is stricter than Graph (unknown ``$select`` properties, query options it does
not model), it answers 400 so that a misuse shows up instead of passing silently.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import random
import re
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
DEFAULT_PAGE_SIZE = 10  # what Graph uses for message delta when the client states no size
_JSON = "application/json; charset=utf-8"
_GRAPH_JSON = ("application/json;odata.metadata=minimal;odata.streaming=true;"
               "IEEE754Compatible=false;charset=utf-8")
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DISCOVERY = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$")
_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
# Graph accepts both /users/alice@x and /users('alice@x'), and its own links use the latter
# for folders, with "mailfolders" in lower case; a client must follow links, not rebuild them.
_KEY = r"(?:/(?P<{0}>[^/(']+)|\('(?P<{0}q>[^']+)'\))"
_DELTA = re.compile(r"^/v1\.0/users" + _KEY.format("user") + r"/mailfolders" + _KEY.format("folder")
                    + r"/messages/delta$", re.IGNORECASE)
_VALUE = re.compile(r"^/v1\.0/users" + _KEY.format("user") + r"/messages/(?P<id>[^/]+)/\$value$",
                    re.IGNORECASE)
_USER_IN_PATH = re.compile(r"^/v1\.0/users" + _KEY.format("user"), re.IGNORECASE)
_FILTER = re.compile(r"^\s*receivedDateTime\s+(?P<op>ge|gt)\s+(?P<when>\S+)\s*$")
_CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
_DELTA_OPTIONS = frozenset({"$select", "$filter", "$skiptoken", "$deltatoken"})
_WELL_KNOWN_FOLDERS = ("inbox", "archive", "deleteditems", "drafts", "junkemail", "sentitems")
# Prefixes real ids start with: regular (EWS-style) ids and immutable ids look different.
_REGULAR_PREFIX = "AAMkAGI2TG93AAA"
_IMMUTABLE_PREFIX = "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A"


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it; header names are lower-case, the path unquoted."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int  # what the fake answered


def graph_error(code: str, message: str) -> dict[str, Any]:
    """The JSON body Graph sends with an error status."""
    return {"error": {"code": code, "message": message, "innerError": {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}}}


def entra_error(error: str, aadsts: int, description: str) -> dict[str, Any]:
    """The JSON body the Entra ID token endpoint sends with an error status."""
    return {"error": error, "error_description": f"AADSTS{aadsts}: {description}",
            "error_codes": [aadsts], "timestamp": datetime.now(UTC).isoformat(),
            "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4()),
            "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}"}


def _default_graph_fault(status: int) -> dict[str, Any]:
    codes = {
        400: ("BadRequest", "Invalid request."),
        401: ("InvalidAuthenticationToken", "Access token is empty."),
        403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
        404: ("ErrorItemNotFound", "The specified object was not found in the store."),
        410: ("resyncRequired", "Resync required. Replace any local cached data with a full "
                                "delta sync."),
        429: ("TooManyRequests", "Application is over its MailboxConcurrency limit."),
        500: ("InternalServerError", "An internal server error occurred."),
        502: ("BadGateway", "The service is unavailable."),
        503: ("ServiceUnavailable", "The service is currently unavailable."),
        504: ("GatewayTimeout", "The gateway did not receive a timely response."),
    }
    code, message = codes.get(status, ("UnknownError", f"HTTP {status}"))
    return graph_error(code, message)


def _default_entra_fault(status: int) -> dict[str, Any]:
    if status == 401:
        return entra_error("invalid_client", 7000215, "Invalid client secret provided.")
    if status == 400:
        return entra_error("invalid_request", 900144, "The request body must contain the "
                                                      "following parameter: 'grant_type'.")
    return entra_error("temporarily_unavailable", 90033,
                       "A transient error has occurred. Please try again.")


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] | None
    times: int
    seconds: float = 0.0


@dataclass
class _Folder:
    id: str
    name: str  # lower case: a well-known name ("inbox") or a display name


@dataclass
class _Message:
    immutable_id: str
    raw: bytes
    folder_id: str
    received: datetime
    internet_message_id: str
    subject: str
    sender: str
    created_tick: int
    deleted_tick: int | None = None


@dataclass
class _Mailbox:
    upn: str
    folders: dict[str, _Folder] = field(default_factory=dict)  # by id
    messages: dict[str, _Message] = field(default_factory=dict)  # by immutable id


@dataclass(frozen=True)
class _Query:
    """What a delta round was asked for; Graph keeps it inside its skip and delta tokens."""

    user: str
    folder_id: str
    folder_ref: str  # as the client named the folder, for the Location of a 410
    select: tuple[str, ...] | None
    change_types: frozenset[str]
    filter_text: str | None
    since: datetime | None
    since_inclusive: bool

    def admits(self, message: _Message) -> bool:
        if message.folder_id != self.folder_id:
            return False
        if self.since is None:
            return True
        if self.since_inclusive:
            return message.received >= self.since
        return message.received > self.since


@dataclass(frozen=True)
class _Item:
    message: _Message
    removed: bool


@dataclass(frozen=True)
class _Page:
    """The state behind a $skiptoken: the rest of a round."""

    query: _Query
    items: tuple[_Item, ...]
    offset: int
    watermark: int


@dataclass(frozen=True)
class _DeltaState:
    """The state behind a $deltatoken: where the next round starts."""

    query: _Query
    watermark: int


class _Answer(Exception):
    """Ends request handling with this status, body and headers."""

    def __init__(self, status: int, body: dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class GraphFake:
    """Entra ID token endpoint + OpenID configuration + Graph v1.0, one HTTPS server (trustme CA).

    ``authority = f"{base_url}/{tenant}"``; the Graph base URL is ``base_url`` itself.
    """

    def __init__(self, *, tenant: str = "tenant1", seed: int = 0,
                 directory: Path | None = None) -> None:
        self.tenant = tenant
        self.client_id = str(uuid.UUID(int=random.Random(seed).getrandbits(128), version=4))
        self.client_secret = "fake~" + secrets.token_urlsafe(24)
        self._certificates: set[str] = set()  # accepted x5t values
        self.page_size: int | None = None  # None: Prefer odata.maxpagesize, else 10
        self.token_lifetime = 3599  # expires_in; below 300 MSAL treats the token as stale
        self.max_concurrent_per_mailbox: int | None = 4  # Outlook's limit; None turns it off
        # Graph may repeat an item on the next page ("replays"); True makes every page after
        # the first start with the previous page's last item, so dedupe gets exercised.
        self.replay_across_pages = False
        self.requests: list[Recorded] = []
        self.errors: list[str] = []  # exceptions inside the fake; the fixture fails on any
        self.peak_in_flight: Counter[str] = Counter()  # most Graph requests at once, per UPN
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._tick = 0  # advances with every delivery and deletion
        self._id_round = itertools.count(1)  # regular ids change with every delta request
        self._mailboxes: dict[str, _Mailbox] = {}  # by lower-case UPN
        self._regular_ids: dict[str, tuple[str, str]] = {}  # regular id -> (user, immutable)
        self._skiptokens: dict[str, _Page] = {}
        self._deltatokens: dict[str, _DeltaState] = {}
        self._expired_tokens: dict[str, tuple[str, _Query]] = {}  # token -> (how, query)
        self._access_tokens: dict[str, bool] = {}  # issued token -> still valid
        self._client_rejected = False
        self._authority_down: int | None = None  # Retry-After while stopped; -1: no header
        self._in_flight: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        self._delays: list[_Fault] = []
        self._closing = threading.Event()
        # The CA file outlives close() when the caller owns the directory, so a test can still
        # see "connection refused" (not a missing CA bundle) after stopping the fake.
        self._own_directory = directory is None
        self._directory = directory or Path(tempfile.mkdtemp(prefix="graphfake-"))
        self.ca_file = str(self._directory / "graphfake-ca.pem")  # for requests' verify=
        self._server = _Server(("127.0.0.1", 0), self, self._tls_context())
        self.base_url = f"https://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval keeps close() quick; idle polling costs next to nothing.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name="graphfake", daemon=True)
        self._thread.start()

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant}"

    def _tls_context(self) -> ssl.SSLContext:
        # Imported here so a checkout without the test extra can still import conftest.
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(self.ca_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context

    # --- the mailbox model -------------------------------------------------------------

    def add_user(self, user: str) -> None:
        """A mailbox for ``user`` (a UPN), with an empty inbox."""
        with self._lock:
            if user.lower() not in self._mailboxes:
                box = _Mailbox(user)
                self._mailboxes[user.lower()] = box
                self._folder(box, "inbox", create=True)

    def deliver(self, user: str, raw: bytes, folder: str = "inbox",
                received_at: datetime | None = None) -> str:
        """Puts a message into ``folder`` (a name or folder id); returns its immutable id.

        A folder name the mailbox does not have yet is created.
        """
        when = received_at or datetime.now(UTC)
        if when.tzinfo is None:
            raise ValueError("received_at must carry a time zone")
        headers = BytesHeaderParser().parsebytes(raw)
        with self._lock:
            box = self._mailbox(user)
            target = self._folder(box, folder, create=True)
            self._tick += 1
            message = _Message(
                immutable_id=_IMMUTABLE_PREFIX + _b64(self._rng.randbytes(25)),
                raw=bytes(raw), folder_id=target.id,
                received=when.astimezone(UTC).replace(microsecond=0),
                # Exchange gives a message without a Message-ID one of its own.
                internet_message_id=str(headers.get("Message-ID") or "").strip()
                or f"<{self._rng.randbytes(8).hex()}@graphfake.outlook.test>",
                subject=str(headers.get("Subject") or ""),
                sender=parseaddr(str(headers.get("From") or ""))[1],
                created_tick=self._tick)
            box.messages[message.immutable_id] = message
            return message.immutable_id

    def delete(self, user: str, message_id: str) -> None:
        """Deletes a message for good: $value answers 404, the next delta round @removed."""
        with self._lock:
            box = self._mailbox(user)
            message = self._message(box, message_id)
            if message is None:
                raise KeyError(f"GraphFake: {user} has no message {message_id!r}")
            self._tick += 1
            message.deleted_tick = self._tick

    def folder_id(self, user: str, folder: str = "inbox") -> str:
        """The id of a folder, as Graph's ``parentFolderId`` gives it."""
        with self._lock:
            return self._folder(self._mailbox(user), folder, create=False).id

    def expire_delta(self, user: str, *, how: str = "410") -> None:
        """Every delta and skip token issued for ``user`` so far stops working.

        ``how="410"``: 410 Gone with ``Location`` holding a fresh initial delta URL (the same
        folder, ``changeType``, ``$select`` and ``$filter``); ``how="syncStateNotFound"``: 400
        with that error code, as Outlook answers when its delta token cache dropped the state.
        """
        if how not in ("410", "syncStateNotFound"):
            raise ValueError(f"how must be '410' or 'syncStateNotFound', not {how!r}")
        key = user.lower()
        with self._lock:
            self._mailbox(user)
            queries = {t: s.query for t, s in self._deltatokens.items()}
            queries.update((t, p.query) for t, p in self._skiptokens.items())
            for token, query in queries.items():
                if query.user == key:
                    self._expired_tokens[token] = (how, query)
                    self._deltatokens.pop(token, None)
                    self._skiptokens.pop(token, None)

    # --- faults --------------------------------------------------------------------------

    def fail_next(self, method: str, path_pattern: str, status: int, *,
                  body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                  times: int = 1) -> None:
        """The next ``times`` requests whose (unquoted) path matches (re.search) get this answer.

        Without ``body`` the answer carries the error JSON Graph sends for that status (429 →
        TooManyRequests, 503 → ServiceUnavailable, 504 → GatewayTimeout, ...), or the Entra
        shape on the token and discovery paths. A 429 without ``headers`` carries
        ``Retry-After: 1``, as Graph's do; pass ``headers={}`` for a 429 without one.
        The faulted requests are recorded like any other.
        """
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_pattern), status, body,
                                       None if headers is None else dict(headers), times))

    def delay_next(self, method: str, path_pattern: str, seconds: float, *,
                   times: int = 1) -> None:
        """The next ``times`` matching requests are answered only after ``seconds``.

        For client timeouts: the answer is the normal one, just late (close() cuts the wait).
        """
        with self._lock:
            self._delays.append(_Fault(method.upper(), re.compile(path_pattern), 0, None, None,
                                       times, seconds))

    def expire_access_tokens(self) -> None:
        """Access tokens issued so far get 401 InvalidAuthenticationToken from Graph."""
        with self._lock:
            for token in self._access_tokens:
                self._access_tokens[token] = False

    def reject_client(self) -> None:
        """The token endpoint answers 401 invalid_client (AADSTS7000215), as for a bad secret.

        Tokens already issued keep working until they expire, as in Entra.
        """
        with self._lock:
            self._client_rejected = True

    def accept_client(self) -> None:
        with self._lock:
            self._client_rejected = False

    def stop_authority(self, *, retry_after: int | None = 1) -> None:
        """OpenID configuration and token endpoint answer 503 until start_authority().

        MSAL then raises ``msal.exceptions.MsalServiceError`` (from the
        ``ConfidentialClientApplication`` constructor when discovery fails, from
        ``acquire_token_for_client`` when the token request does) and caches a token 503 for
        ``Retry-After`` seconds (5 without the header): calls inside that window do not reach
        the fake at all (connectors.md G7).
        """
        with self._lock:
            self._authority_down = -1 if retry_after is None else retry_after

    def start_authority(self) -> None:
        with self._lock:
            self._authority_down = None

    # --- the request log -----------------------------------------------------------------

    def writes(self) -> list[Recorded]:
        """Requests that would change a mailbox; an import-only client must never send one."""
        with self._lock:
            return [r for r in self.requests
                    if r.method in _WRITE_METHODS and not _TOKEN.match(r.path)]

    def graph_requests(self) -> list[Recorded]:
        """Requests to Graph (not to the token or discovery endpoints)."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/v1.0/")]

    def token_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if _TOKEN.match(r.path)]

    def close(self) -> None:
        if self._closing.is_set():
            return  # a test may stop the fake early; the fixture closes it again
        self._closing.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._own_directory:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> GraphFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- request handling (server threads) -------------------------------------------------

    def _mailbox(self, user: str) -> _Mailbox:
        try:
            return self._mailboxes[user.lower()]
        except KeyError:
            raise KeyError(f"GraphFake: no user {user!r}; call add_user() first") from None

    def _folder(self, box: _Mailbox, ref: str, *, create: bool) -> _Folder:
        for folder in box.folders.values():
            if ref == folder.id or ref.lower() == folder.name:
                return folder
        if not create:
            raise KeyError(f"GraphFake: {box.upn} has no folder {ref!r}")
        folder = _Folder("AQMkADAwATM0MDAAMS1" + _b64(self._rng.randbytes(22)), ref.lower())
        box.folders[folder.id] = folder
        return folder

    def _message(self, box: _Mailbox, message_id: str) -> _Message | None:
        """The message an immutable or a regular id names, deleted or not."""
        if message_id in box.messages:
            return box.messages[message_id]
        owner, immutable = self._regular_ids.get(message_id, ("", ""))
        return box.messages.get(immutable) if owner == box.upn.lower() else None

    def _handle(self, method: str, target: str, headers: dict[str, str],
                body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Answers one HTTP request: status, body and headers (Content-Type included)."""
        path = unquote(urlsplit(target).path)
        user_match = _USER_IN_PATH.match(path)
        user = (user_match["user"] or user_match["userq"]).lower() if user_match else None
        with self._lock:
            over_limit = False
            if user is not None:
                self._in_flight[user] += 1
                self.peak_in_flight[user] = max(self.peak_in_flight[user], self._in_flight[user])
                limit = self.max_concurrent_per_mailbox
                over_limit = limit is not None and self._in_flight[user] > limit
            delay = _take(self._delays, method, path)
        try:
            if delay is not None:
                self._closing.wait(delay.seconds)
            with self._lock:
                return self._dispatch(method, target, path, headers, body, over_limit)
        finally:
            if user is not None:
                with self._lock:
                    self._in_flight[user] -= 1

    def _dispatch(self, method: str, target: str, path: str, headers: dict[str, str],
                  body: bytes, over_limit: bool) -> tuple[int, bytes, dict[str, str]]:
        query = parse_qs(urlsplit(target).query, keep_blank_values=True)
        is_graph = path.startswith("/v1.0/")
        extra: dict[str, str] = {}
        if is_graph:
            extra = {"request-id": str(uuid.uuid4()),
                     "client-request-id": headers.get("client-request-id", str(uuid.uuid4()))}
        content_type = _GRAPH_JSON if is_graph else _JSON
        try:
            self._inject_fault(method, path, is_graph)
            if discovery := _DISCOVERY.match(path):
                if method != "GET":
                    raise _Answer(405, entra_error("invalid_request", 900561,
                                                   "The endpoint only accepts GET requests."))
                status, answer = 200, self._discovery(discovery["tenant"])
            elif token := _TOKEN.match(path):
                if method != "POST":
                    raise _Answer(405, entra_error("invalid_request", 900561,
                                                   "The endpoint only accepts POST requests."))
                status, answer = 200, self._token(token["tenant"], body)
            elif not is_graph:
                raise _Answer(404, entra_error("invalid_request", 90002, "Not found."))
            else:
                self._authorize(headers)
                if over_limit:
                    raise _Answer(429, graph_error(
                        "ApplicationThrottled",
                        "Application is over its MailboxConcurrency limit."), {"Retry-After": "1"})
                if method in _WRITE_METHODS:
                    # Mail.Read cannot change a mailbox; that is what Graph answers then.
                    raise _Answer(403, _default_graph_fault(403))
                if method != "GET":
                    raise _Answer(405, graph_error("BadRequest", f"{method} is not supported."))
                if delta := _DELTA.match(path):
                    status, answer, more = self._delta(delta, query, headers)
                    extra.update(more)
                elif value := _VALUE.match(path):
                    raw = self._value(value)
                    self.requests.append(Recorded(method, path, query, headers, body, 200))
                    return 200, raw, {**extra, "Content-Type": "text/plain"}
                else:
                    segment = path.rsplit("/", 1)[-1]
                    raise _Answer(400, graph_error(
                        "BadRequest", f"Resource not found for the segment '{segment}'."))
        except _Answer as a:
            status, answer = a.status, a.body
            extra.update(a.headers)
        self.requests.append(Recorded(method, path, query, headers, body, status))
        return status, json.dumps(answer).encode("utf-8"), {"Content-Type": content_type,
                                                            **extra}

    def _inject_fault(self, method: str, path: str, is_graph: bool) -> None:
        fault = _take(self._faults, method, path)
        if fault is None:
            return
        headers = fault.headers
        if headers is None:
            headers = {"Retry-After": "1"} if fault.status == 429 else {}
        if fault.body is not None:
            body = fault.body
        else:
            body = (_default_graph_fault if is_graph else _default_entra_fault)(fault.status)
        raise _Answer(fault.status, body, headers)

    def _check_authority(self, tenant: str) -> None:
        if self._authority_down is not None:
            headers = {} if self._authority_down < 0 else {
                "Retry-After": str(self._authority_down)}
            raise _Answer(503, _default_entra_fault(503), headers)
        if tenant != self.tenant:
            raise _Answer(400, entra_error(
                "invalid_tenant", 90002, f"Tenant '{tenant}' not found. Check to make sure you "
                "have the correct tenant ID and are signing into the correct cloud."))

    def _discovery(self, tenant: str) -> dict[str, Any]:
        self._check_authority(tenant)
        base = f"{self.base_url}/{tenant}"
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                      "private_key_jwt", "client_secret_basic"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    def _token(self, tenant: str, body: bytes) -> dict[str, Any]:
        self._check_authority(tenant)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            raise _Answer(400, entra_error(
                "unsupported_grant_type", 70003,
                f"The app requested an unsupported grant type '{form.get('grant_type')}'."))
        if form.get("client_id") != self.client_id:
            raise _Answer(400, entra_error(
                "unauthorized_client", 700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the "
                f"directory '{tenant}'."))
        if form.get("client_assertion"):
            # A certificate credential: msal signs a JWT naming the certificate by its
            # thumbprint (x5t); the signature itself goes unchecked here.
            try:
                head = json.loads(base64.urlsafe_b64decode(
                    form["client_assertion"].split(".")[0] + "=="))
            except (ValueError, IndexError):
                head = {}
            x5t = str(head.get("x5t", "")).rstrip("=")
            if x5t not in self._certificates or self._client_rejected:
                raise _Answer(401, entra_error(
                    "invalid_client", 700027, "Client assertion failed signature validation."))
        elif form.get("client_secret") != self.client_secret or self._client_rejected:
            raise _Answer(401, entra_error(
                "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret "
                "being sent in the request is the client secret value, not the client secret ID, "
                f"for a secret added to app '{self.client_id}'."))
        scopes = form.get("scope", "").split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise _Answer(400, entra_error(
                "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is "
                "not valid. Client credential flows must have a scope value with /.default "
                "suffixed to the resource identifier (application ID URI)."))
        token = self._mint_token(tenant)
        self._access_tokens[token] = True
        return {"token_type": "Bearer", "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime, "access_token": token}

    def certificate_credential(self, directory: Path) -> tuple[Path, str]:
        """A private key file and a thumbprint this fake accepts as the app's certificate."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path = directory / f"graph-key-{secrets.token_hex(3)}.pem"
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        thumbprint = secrets.token_hex(20).upper()
        self._certificates.add(
            base64.urlsafe_b64encode(bytes.fromhex(thumbprint)).decode().rstrip("="))
        return path, thumbprint

    def _mint_token(self, tenant: str) -> str:
        # Shaped like a JWT so a client that peeks does not crash; nothing checks a signature.
        head = {"typ": "JWT", "alg": "RS256"}
        claims = {"aud": "https://graph.microsoft.com", "tid": tenant, "appid": self.client_id,
                  "roles": ["Mail.Read"], "jti": secrets.token_hex(8)}
        return ".".join(_b64(json.dumps(part).encode()).rstrip("=")
                        for part in (head, claims)) + "." + _b64(secrets.token_bytes(32))

    def _authorize(self, headers: dict[str, str]) -> None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="", authorization_uri='
                     f'"{self.base_url}/{self.tenant}/oauth2/authorize", client_id="00000003-'
                     '0000-0000-c000-000000000000"'}
        if scheme.lower() != "bearer" or not token:
            raise _Answer(401, graph_error("InvalidAuthenticationToken",
                                           "Access token is empty."), challenge)
        valid = self._access_tokens.get(token)
        if valid is None:
            raise _Answer(401, graph_error("InvalidAuthenticationToken",
                                           "IDX14100: JWT is not well formed."), challenge)
        if not valid:
            raise _Answer(401, graph_error("InvalidAuthenticationToken",
                                           "Lifetime validation failed, the token is expired."),
                          challenge)

    def _graph_user(self, match: re.Match[str]) -> _Mailbox:
        upn = match["user"] or match["userq"]
        box = self._mailboxes.get(upn.lower())
        if box is None:
            raise _Answer(404, graph_error("ErrorInvalidUser",
                                           f"The requested user '{upn}' is invalid."))
        return box

    def _value(self, match: re.Match[str]) -> bytes:
        box = self._graph_user(match)
        message = self._message(box, match["id"])
        if message is None or message.deleted_tick is not None:
            raise _Answer(404, _default_graph_fault(404))
        return message.raw

    def _delta(self, match: re.Match[str], query: dict[str, list[str]],
               headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        box = self._graph_user(match)
        prefer = _prefer(headers.get("prefer", ""))
        for name in query:
            if name.startswith("$") and name not in _DELTA_OPTIONS:
                raise _Answer(400, graph_error(
                    "BadRequest", f"Query option '{name}' is not allowed on message delta."))
        skip = query.get("$skiptoken", [""])[0]
        delta = query.get("$deltatoken", [""])[0]
        if skip and delta:
            raise _Answer(400, graph_error("BadRequest",
                                           "$skiptoken and $deltatoken cannot be combined."))
        if skip or delta:
            # Graph keeps the round's parameters inside its tokens; extra ones are ignored.
            token = skip or delta
            self._refuse_expired(token)
            if skip:
                page = self._skiptokens.get(token)
                if page is None or page.query.user != box.upn.lower():
                    raise _Answer(400, graph_error("BadRequest", "Invalid skip token."))
            else:
                state = self._deltatokens.get(token)
                if state is None or state.query.user != box.upn.lower():
                    raise _Answer(400, graph_error(
                        "syncStateNotFound", "The sync state for this delta token was not found."))
                page = _Page(state.query, self._changes(box, state), 0, self._tick)
        else:
            q = self._new_query(box, match["folder"] or match["folderq"], query)
            snapshot = sorted((m for m in box.messages.values()
                               if m.deleted_tick is None and q.admits(m)),
                              key=lambda m: (m.received, m.created_tick))
            items = tuple(_Item(m, False) for m in snapshot) if "created" in q.change_types else ()
            page = _Page(q, items, 0, self._tick)
        return self._serve_page(box, page, prefer)

    def _refuse_expired(self, token: str) -> None:
        expired = self._expired_tokens.get(token)
        if expired is None:
            return
        how, q = expired
        if how == "syncStateNotFound":
            raise _Answer(400, graph_error(
                "syncStateNotFound", "The sync state for this delta token was not found."))
        raise _Answer(410, _default_graph_fault(410), {"Location": self._initial_url(q)})

    def _new_query(self, box: _Mailbox, folder_ref: str,
                   query: dict[str, list[str]]) -> _Query:
        try:
            folder = self._folder(box, folder_ref, create=False)
        except KeyError:
            raise _Answer(404, _default_graph_fault(404)) from None
        select: tuple[str, ...] | None = None
        if "$select" in query:
            select = tuple(s.strip() for s in query["$select"][0].split(",") if s.strip())
            for name in select:
                if name not in _PROPERTIES:
                    raise _Answer(400, graph_error(
                        "RequestBroker--ParseUri",
                        f"Could not find a property named '{name}' on type "
                        "'microsoft.graph.message'."))
        change_types = frozenset(_CHANGE_TYPES)
        if "changeType" in query:
            change_types = frozenset(query["changeType"][0].split(","))
            if not change_types <= _CHANGE_TYPES:
                raise _Answer(400, graph_error(
                    "ErrorInvalidParameter", f"Invalid changeType {query['changeType'][0]!r}."))
        filter_text = query["$filter"][0] if "$filter" in query else None
        since, inclusive = None, True
        if filter_text is not None:
            parsed = _FILTER.match(filter_text)
            try:
                if parsed is None:
                    raise ValueError(filter_text)
                since = datetime.fromisoformat(parsed["when"].replace("Z", "+00:00"))
                if since.tzinfo is None:
                    raise ValueError(filter_text)
            except ValueError:
                raise _Answer(400, graph_error(
                    "ErrorInvalidUrlQueryFilter",
                    "Message delta supports only $filter=receivedDateTime ge|gt <ISO 8601 time>."
                )) from None
            inclusive = parsed["op"] == "ge"
        return _Query(box.upn.lower(), folder.id, folder_ref, select, change_types, filter_text,
                      since, inclusive)

    def _changes(self, box: _Mailbox, state: _DeltaState) -> tuple[_Item, ...]:
        """What happened in the folder after the watermark: arrivals, then deletions."""
        q, mark = state.query, state.watermark
        ordered = sorted(box.messages.values(), key=lambda m: m.created_tick)
        created = [_Item(m, False) for m in ordered
                   if m.created_tick > mark and m.deleted_tick is None and q.admits(m)]
        # A message that came and went inside the window was never seen; Graph skips it.
        removed = [_Item(m, True) for m in ordered
                   if m.created_tick <= mark and m.deleted_tick is not None
                   and m.deleted_tick > mark and q.admits(m)]
        return ((tuple(created) if "created" in q.change_types else ())
                + (tuple(removed) if "deleted" in q.change_types else ()))

    def _serve_page(self, box: _Mailbox, page: _Page,
                    prefer: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        size = self.page_size or _int_or(prefer.get("odata.maxpagesize"), DEFAULT_PAGE_SIZE)
        start = page.offset - 1 if self.replay_across_pages and page.offset else page.offset
        chunk = page.items[start:page.offset + size]
        immutable = prefer.get("idtype", "").lower() == "immutableid"
        id_round = 0 if immutable else next(self._id_round)
        answer: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/v1.0/$metadata#Collection(message)",
            "value": [self._render(box, item, page.query, id_round) for item in chunk],
        }
        link = (f"{self.base_url}/v1.0/users('{quote(box.upn, safe='@')}')/mailfolders("
                f"'{page.query.folder_id}')/messages/delta")
        token = _b64(secrets.token_bytes(30))
        if page.offset + size < len(page.items):
            self._skiptokens[token] = _Page(page.query, page.items, page.offset + size,
                                            page.watermark)
            answer["@odata.nextLink"] = f"{link}?$skiptoken={quote(token, safe='')}"
        else:
            self._deltatokens[token] = _DeltaState(page.query, page.watermark)
            answer["@odata.deltaLink"] = f"{link}?$deltatoken={quote(token, safe='')}"
        applied = [f"odata.maxpagesize={size}"] if "odata.maxpagesize" in prefer else []
        applied += ['IdType="ImmutableId"'] if immutable else []
        return 200, answer, ({"Preference-Applied": ", ".join(applied)} if applied else {})

    def _render(self, box: _Mailbox, item: _Item, q: _Query, id_round: int) -> dict[str, Any]:
        message = item.message
        message_id = message.immutable_id
        if id_round:
            # Without IdType="ImmutableId" ids are not stable; here they change every request,
            # so a client that forgets the header gets different ids for the same message.
            digest = hashlib.sha256(f"{message_id}/{id_round}".encode()).digest()[:25]
            message_id = _REGULAR_PREFIX + _b64(digest)
            self._regular_ids[message_id] = (box.upn.lower(), message.immutable_id)
        head = {"@odata.type": "#microsoft.graph.message", "id": message_id}
        if item.removed:
            return {**head, "@removed": {"reason": "deleted"}}
        when = message.received.strftime("%Y-%m-%dT%H:%M:%SZ")
        properties: dict[str, Any] = {
            "createdDateTime": when, "lastModifiedDateTime": when,
            "receivedDateTime": when, "sentDateTime": when,
            "internetMessageId": message.internet_message_id,
            "subject": message.subject, "parentFolderId": message.folder_id,
            "isRead": False,
            "from": {"emailAddress": {"name": message.sender, "address": message.sender}},
        }
        etag = "W/\"CQAAABYAAAA" + _b64(hashlib.sha256(message.raw).digest()[:12]) + "\""
        head["@odata.etag"] = etag
        names = properties if q.select is None else [n for n in q.select if n != "id"]
        return {**head, **{name: properties[name] for name in names}}

    def _initial_url(self, q: _Query) -> str:
        params: dict[str, str] = {}
        if q.change_types != _CHANGE_TYPES:
            params["changeType"] = ",".join(sorted(q.change_types))
        if q.select is not None:
            params["$select"] = ",".join(q.select)
        if q.filter_text is not None:
            params["$filter"] = q.filter_text
        url = (f"{self.base_url}/v1.0/users/{quote(self._mailboxes[q.user].upn, safe='@')}"
               f"/mailFolders/{quote(q.folder_ref, safe='')}/messages/delta")
        return url + ("?" + urlencode(params, safe="$,:", quote_via=quote) if params else "")


_PROPERTIES = frozenset({"id", "createdDateTime", "lastModifiedDateTime", "receivedDateTime",
                         "sentDateTime", "internetMessageId", "subject", "parentFolderId",
                         "isRead", "from"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _int_or(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _prefer(header: str) -> dict[str, str]:
    """Prefer preferences by lower-case name: 'odata.maxpagesize=50, IdType="ImmutableId"'."""
    found: dict[str, str] = {}
    for preference in header.split(","):
        name, _, value = preference.strip().partition("=")
        if name:
            found[name.strip().lower()] = value.strip().strip('"')
    return found


def _take(faults: list[_Fault], method: str, path: str) -> _Fault | None:
    """The first fault planned for this request, used up once its ``times`` run out."""
    for fault in faults:
        if fault.method == method and fault.path.search(path):
            fault.times -= 1
            if fault.times <= 0:
                faults.remove(fault)
            return fault
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: GraphFake,
                 context: ssl.SSLContext) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)
        # The handshake runs in the handler thread (first read), so a client that connects and
        # says nothing cannot stall the accept loop.
        self.socket = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) or refused the certificate leaves a dead
        # socket; that is not news.
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)

    def track(self, sock: socket.socket, is_open: bool) -> None:
        with self._open_lock:
            if is_open:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def close_connections(self) -> None:
        # Clients keep connections alive; their handler threads would otherwise wait forever.
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError, ValueError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # One write per answer and no Nagle delay, so each call costs well under a millisecond.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    timeout = 30

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def handle(self) -> None:
        # The listening socket leaves the TLS handshake to this thread (see _Server).
        connection = self.connection
        assert isinstance(connection, ssl.SSLSocket)
        connection.do_handshake()
        super().handle()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, payload, extra = self.server.fake._handle(self.command, self.path, headers,
                                                               body)
        except Exception as exc:
            # A bug in the fake must fail the test (see GraphFake.errors), not pass as a 500
            # that a retrying client shrugs off; still answer, so the client does not hang.
            self.server.fake.errors.append(f"{self.command} {self.path}: {exc!r}")
            status, payload, extra = 500, json.dumps(graph_error(
                "InternalServerError", f"GraphFake failed: {exc!r}")).encode(), {
                "Content-Type": _JSON}
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is self.server.fake.requests
