"""A Gmail API v1 and Google OAuth token endpoint on 127.0.0.1, for tests of the Gmail pull.

The real client (google-api-python-client with google-auth) talks to it over real HTTP:
``build("gmail", "v1", client_options={"api_endpoint": fake.base_url}, ...)`` and credentials
whose ``token_uri`` is ``fake.token_uri``. It keeps a small mailbox model per user (messages,
labels, a history log with a gappy historyId), serves batches sent to ``base_url + "batch"``,
and lets tests break things on purpose: expired history, expired or revoked tokens, deleted
messages, injected error answers and slow answers. Every request is recorded, so a test can
prove the pull never tried to change a mailbox (``writes()``).

Answers follow the shapes Gmail sends (see /work/shared/notes/connectors.md §1 and §4.1); where
the fake is stricter than Gmail (``q`` terms, ``format``), it answers 400 so a misuse shows up.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
import random
import re
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.message import Message
from email.parser import BytesParser, Parser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_JSON = {"Content-Type": "application/json; charset=UTF-8"}
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_RESULTS = 500  # Gmail's cap for messages.list and history.list
# Gmail reads after:/before: dates as midnight Pacific Standard Time (its search documentation).
_PST = timezone(timedelta(hours=-8))
_USER_PATH = re.compile(r"^/gmail/v1/users/(?P<user>[^/]+)/(?P<rest>.*)$")
# historyTypes values and the record keys they select.
_HISTORY_KINDS = {"messageAdded": "messagesAdded", "messageDeleted": "messagesDeleted",
                  "labelAdded": "labelsAdded", "labelRemoved": "labelsRemoved"}
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def google_error(code: int, reason: str, message: str, *, domain: str = "global") -> dict[str, Any]:
    """The JSON body Google APIs send with an error status."""
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": _STATUS_NAMES.get(code, "UNKNOWN"),
        }
    }


def rate_limit_error(status: int = 429, reason: str = "rateLimitExceeded") -> dict[str, Any]:
    """A quota answer: 429 or 403 with ``rateLimitExceeded`` or ``userRateLimitExceeded``."""
    message = "User Rate Limit Exceeded" if reason == "userRateLimitExceeded" else (
        "Rate Limit Exceeded")
    return google_error(status, reason, message, domain="usageLimits")


NOT_FOUND = google_error(404, "notFound", "Requested entity was not found.")


def _default_fault_body(path: str, status: int) -> dict[str, Any]:
    if path == "/token":
        # The token endpoint speaks OAuth, not the API error format.
        return {"error": "invalid_grant" if status == 400 else "server_error"}
    if status == 429:
        return rate_limit_error(429, "rateLimitExceeded")
    if status == 403:
        return rate_limit_error(403, "userRateLimitExceeded")
    if status == 404:
        return NOT_FOUND
    if status == 401:
        return _UNAUTHENTICATED
    if status >= 500:
        return google_error(status, "backendError", "Backend Error")
    return google_error(status, "badRequest", "Bad Request")


_UNAUTHENTICATED: dict[str, Any] = {
    "error": {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access "
        "token, login cookie or other valid authentication credential.",
        "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError",
                    "location": "Authorization", "locationType": "header"}],
        "status": "UNAUTHENTICATED",
    }
}


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it; header names are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int  # what the fake answered


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]
    times: int
    seconds: float = 0.0


@dataclass
class _Message:
    id: str
    raw: bytes
    labels: tuple[str, ...]
    internal_ms: int
    history_id: int
    seq: int  # delivery order, to break ties between equal internal dates
    deleted: bool = False

    def listing_key(self) -> tuple[int, int]:
        return (self.internal_ms, self.seq)


@dataclass
class _HistoryRecord:
    id: int
    kind: str  # messagesAdded | messagesDeleted | labelsAdded | labelsRemoved
    message: _Message
    labels: tuple[str, ...]  # the message's labels after the change
    changed: tuple[str, ...] = ()  # for labelsAdded / labelsRemoved


@dataclass
class _Mailbox:
    email: str
    history_id: int
    oldest_retained: int = 0
    messages: dict[str, _Message] = field(default_factory=dict)
    history: list[_HistoryRecord] = field(default_factory=list)


class _Answer(Exception):
    """Ends request handling with this status, body and headers."""

    def __init__(self, status: int, body: dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class GmailFake:
    """Gmail API v1 + OAuth token endpoint on http://127.0.0.1:PORT/, in a thread."""

    def __init__(self, *, seed: int = 0) -> None:
        self.page_size = 100
        self.requests: list[Recorded] = []
        self.errors: list[str] = []  # exceptions inside the fake; the fixture fails on any
        self.client_id = "ingestd-test.apps.googleusercontent.com"
        self.client_secret = secrets.token_urlsafe(12)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._ids = itertools.count(0x18C0_0000_0000_0000 + self._rng.randrange(1 << 32))
        self._seq = itertools.count()
        self._mailboxes: dict[str, _Mailbox] = {}
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self._codes: dict[str, str] = {}  # one-time authorization code -> user
        self._service_accounts: set[str] = set()  # client_email of keys we handed out
        self._access_tokens: dict[str, str] = {}  # live access token -> user
        self._faults: list[_Fault] = []
        self._delays: list[_Fault] = []  # status unused: these answer normally, only late
        self._closing = threading.Event()
        self._revoked = False
        self._server = _Server(("127.0.0.1", 0), self)
        port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}/"
        self.token_uri = self.base_url + "token"
        # A short poll interval keeps close() quick; idle polling costs next to nothing.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        name="gmailfake", daemon=True)
        self._thread.start()

    # --- the mailbox model -------------------------------------------------------------

    def add_user(self, email: str) -> None:
        with self._lock:
            if email not in self._mailboxes:
                self._mailboxes[email] = _Mailbox(email, self._rng.randrange(1000, 100_000))

    def deliver(self, email: str, raw: bytes, labels: tuple[str, ...] = ("INBOX",),
                internal_date: datetime | None = None) -> str:
        """Puts a message in ``email``'s mailbox and logs it in the history; returns its id."""
        when = internal_date or datetime.now(UTC)
        if when.tzinfo is None:
            raise ValueError("internal_date must carry a time zone")
        with self._lock:
            box = self._mailbox(email)
            message = _Message(id=f"{next(self._ids):016x}", raw=bytes(raw), labels=tuple(labels),
                               internal_ms=int(when.timestamp() * 1000),
                               history_id=self._next_history_id(box), seq=next(self._seq))
            box.messages[message.id] = message
            box.history.append(_HistoryRecord(message.history_id, "messagesAdded", message,
                                              message.labels))
            return message.id

    def delete(self, email: str, message_id: str) -> None:
        """Deletes a message for good, as if the user emptied it from the trash."""
        with self._lock:
            box = self._mailbox(email)
            message = box.messages[message_id]
            message.deleted = True
            box.history.append(_HistoryRecord(self._next_history_id(box), "messagesDeleted",
                                              message, message.labels))

    def relabel(self, email: str, message_id: str, *, add: tuple[str, ...] = (),
                remove: tuple[str, ...] = ()) -> None:
        """Changes a message's labels (e.g. archived, or moved into INBOX), logging it."""
        with self._lock:
            box = self._mailbox(email)
            message = box.messages[message_id]
            before = message.labels
            added = tuple(label for label in add if label not in before)
            removed = tuple(label for label in remove if label in before)
            message.labels = tuple(label for label in before if label not in removed) + added
            for kind, changed in (("labelsAdded", added), ("labelsRemoved", removed)):
                if changed:
                    message.history_id = self._next_history_id(box)
                    box.history.append(_HistoryRecord(message.history_id, kind, message,
                                                      message.labels, changed))

    def expire_history(self, email: str) -> None:
        """Every historyId issued so far becomes too old: history.list answers 404 for it."""
        with self._lock:
            box = self._mailbox(email)
            box.history.clear()
            # The current id must expire too, so move past it; ids issued later are fine.
            box.oldest_retained = self._next_history_id(box)

    def history_id(self, email: str) -> int:
        """The mailbox's current historyId, as getProfile would report it."""
        with self._lock:
            return self._mailbox(email).history_id

    # --- faults --------------------------------------------------------------------------

    def fail_next(self, method: str, path_pattern: str, status: int, *,
                  body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                  times: int = 1) -> None:
        """The next ``times`` requests whose path matches (re.search) get this answer instead.

        Without ``body`` the answer carries the error JSON Gmail sends for that status (429 →
        rateLimitExceeded, 403 → userRateLimitExceeded, 5xx → backendError; OAuth shape on
        /token). The faulted requests are recorded like any other.
        """
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_pattern), status, body,
                                       dict(headers or {}), times))

    def delay_next(self, method: str, path_pattern: str, seconds: float, *,
                   times: int = 1) -> None:
        """The next ``times`` matching requests are answered only after ``seconds``.

        For client timeouts: the answer is the normal one, just late (close() cuts the wait).
        """
        with self._lock:
            self._delays.append(_Fault(method.upper(), re.compile(path_pattern), 0, None, {},
                                       times, seconds))

    def expire_access_tokens(self) -> None:
        """Access tokens issued so far are refused with 401; clients must refresh."""
        with self._lock:
            self._access_tokens.clear()

    def revoke(self) -> None:
        """The grant is gone: live tokens stop working and the token endpoint says invalid_grant."""
        with self._lock:
            self._revoked = True
            self._access_tokens.clear()

    def restore(self) -> None:
        """The token endpoint grants again (after revoke())."""
        with self._lock:
            self._revoked = False

    def writes(self) -> list[Recorded]:
        """Requests that would change a mailbox; an import-only client must never send one."""
        with self._lock:
            return [r for r in self.requests
                    if r.method in _WRITE_METHODS and r.path not in ("/token", "/batch")]

    def api_requests(self) -> list[Recorded]:
        """Requests to the Gmail API (not the token endpoint)."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/gmail/")]

    def token_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/token"]

    # --- credentials files -----------------------------------------------------------------

    def authorization_code(self, email: str) -> str:
        """A one-time code, as Google's consent page hands the browser for ``email``."""
        code = "4/" + secrets.token_urlsafe(16)
        with self._lock:
            self._mailbox(email)
            self._codes[code] = email
        return code

    def client_file(self, path: Path) -> Path:
        """An OAuth client's JSON ("Desktop app") whose token_uri is this fake."""
        info = {"installed": {
            "client_id": self.client_id, "client_secret": self.client_secret,
            "auth_uri": self.base_url + "o/oauth2/auth", "token_uri": self.token_uri,
            "redirect_uris": ["http://localhost"]}}
        path.write_text(json.dumps(info), encoding="utf-8")
        return path

    def authorized_user_file(self, path: Path, email: str) -> Path:
        """Writes user OAuth credentials (as ``Credentials.to_json()`` would) for ``email``.

        google-auth replaces token_uri when loading these (connectors.md G4): call
        ``.with_token_uri(fake.token_uri)`` on the loaded credentials.
        """
        refresh_token = "1//" + secrets.token_urlsafe(24)
        with self._lock:
            self._mailbox(email)
            self._refresh_tokens[refresh_token] = email
        info = {
            "type": "authorized_user",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": refresh_token,
            "token_uri": self.token_uri,
            "scopes": [GMAIL_READONLY],
            "account": email,
        }
        path.write_text(json.dumps(info), encoding="utf-8")
        return path

    def service_account_file(self, path: Path) -> Path:
        """Writes a service-account key (a fresh RSA key) whose token_uri is this fake.

        Domain-wide delegation is taken as granted for every user the fake knows.
        """
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
        client_email = f"ingestd-{secrets.token_hex(4)}@ingestd-test.iam.gserviceaccount.com"
        with self._lock:
            self._service_accounts.add(client_email)
        info = {
            "type": "service_account",
            "project_id": "ingestd-test",
            "private_key_id": secrets.token_hex(20),
            "private_key": pem,
            "client_email": client_email,
            "client_id": str(self._rng.randrange(10**20, 10**21)),
            "auth_uri": self.base_url + "auth",
            "token_uri": self.token_uri,
        }
        path.write_text(json.dumps(info), encoding="utf-8")
        return path

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GmailFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- request handling (server threads) -------------------------------------------------

    def _mailbox(self, email: str) -> _Mailbox:
        try:
            return self._mailboxes[email]
        except KeyError:
            raise KeyError(f"GmailFake: no user {email!r}; call add_user() first") from None

    def _next_history_id(self, box: _Mailbox) -> int:
        # Gmail's ids grow with gaps; a client that assumes +1 steps must fail here too.
        box.history_id += self._rng.randrange(2, 9)
        return box.history_id

    def _handle(self, method: str, target: str, headers: dict[str, str],
                body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Answers one HTTP request: status, body and headers (Content-Type included)."""
        with self._lock:
            delay = _take(self._delays, method, unquote(urlsplit(target).path))
        if delay is not None:
            self._closing.wait(delay.seconds)
        with self._lock:
            if method == "POST" and urlsplit(target).path == "/batch":
                return self._batch(target, headers, body)
            status, answer, extra = self._dispatch(method, target, headers, body)
        return status, json.dumps(answer).encode("utf-8"), {**_JSON, **extra}

    def _dispatch(self, method: str, target: str, headers: dict[str, str],
                  body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        extra: dict[str, str] = {}
        try:
            self._inject_fault(method, path)
            if path == "/token" and method == "POST":
                status, answer = 200, self._token(body)
            elif method in _WRITE_METHODS:
                # A pull must never change a mailbox; fail loudly and leave a record.
                raise _Answer(500, google_error(500, "backendError", "GmailFake refuses writes"))
            elif method == "GET" and (match := _USER_PATH.match(path)):
                user = self._authorize(headers, match["user"])
                status, answer = 200, self._api(user, match["rest"], query)
            else:
                raise _Answer(404, NOT_FOUND)
        except _Answer as a:
            status, answer, extra = a.status, a.body, a.headers
        self.requests.append(Recorded(method, path, query, headers, body, status))
        return status, answer, extra

    def _batch(self, target: str, headers: dict[str, str],
               body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """A batch (multipart/mixed of application/http parts), each part served on its own.

        The client builds it as googleapiclient.http.BatchHttpRequest does (connectors.md §1.3);
        every part is recorded and can be faulted like a lone request, the outer POST too.
        """
        query = parse_qs(urlsplit(target).query, keep_blank_values=True)
        try:
            self._inject_fault("POST", "/batch")
            envelope = BytesParser().parsebytes(
                b"Content-Type: " + headers.get("content-type", "").encode("latin-1")
                + b"\r\n\r\n" + body)
            if not envelope.is_multipart():
                raise _Answer(400, google_error(400, "badRequest", "Batch is not multipart"))
            boundary = f"batch_{secrets.token_hex(12)}"
            out: list[str] = []
            for part in cast(list[Message], envelope.get_payload()):
                content_id = str(part.get("Content-ID", ""))
                inner = cast(str, part.get_payload())
                status, answer, extra = self._dispatch(*_inner_request(inner))
                lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
                         "Content-Type: application/json; charset=UTF-8",
                         *(f"{k}: {v}" for k, v in extra.items()), "", json.dumps(answer)]
                reply_id = content_id.replace("<", "<response-", 1)
                out += [f"--{boundary}", "Content-Type: application/http",
                        f"Content-ID: {reply_id}", "", *lines]
            out += [f"--{boundary}--", ""]
        except _Answer as a:
            self.requests.append(Recorded("POST", "/batch", query, headers, body, a.status))
            return a.status, json.dumps(a.body).encode("utf-8"), {**_JSON, **a.headers}
        self.requests.append(Recorded("POST", "/batch", query, headers, body, 200))
        return 200, "\r\n".join(out).encode("utf-8"), {
            "Content-Type": f"multipart/mixed; boundary={boundary}"}

    def _inject_fault(self, method: str, path: str) -> None:
        fault = _take(self._faults, method, path)
        if fault is not None:
            raise _Answer(fault.status,
                          fault.body if fault.body is not None
                          else _default_fault_body(path, fault.status),
                          fault.headers)

    def _token(self, body: bytes) -> dict[str, Any]:
        form = {k: v[0] for k, v in parse_qs(body.decode("ascii"), keep_blank_values=True).items()}
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if (form.get("client_id"), form.get("client_secret")) != (self.client_id,
                                                                      self.client_secret):
                raise _Answer(401, {"error": "invalid_client",
                                    "error_description": "The OAuth client was not found."})
            user = self._refresh_tokens.get(form.get("refresh_token", ""))
            if user is None or self._revoked:
                raise _Answer(400, {"error": "invalid_grant",
                                    "error_description": "Token has been expired or revoked."})
        elif grant == JWT_BEARER:
            user = self._delegated_user(form.get("assertion", ""))
        elif grant == "authorization_code":
            # The consent flow's last step (the client may authenticate by Basic auth,
            # which this fake does not see: the one-time code is what it checks).
            user = self._codes.pop(form.get("code", ""), None)
            if user is None or not form.get("redirect_uri"):
                raise _Answer(400, {"error": "invalid_grant",
                                    "error_description": "Malformed auth code."})
            refresh_token = "1//" + secrets.token_urlsafe(24)
            self._refresh_tokens[refresh_token] = user
            token = "ya29." + secrets.token_urlsafe(24)
            self._access_tokens[token] = user
            return {"access_token": token, "expires_in": 3600, "token_type": "Bearer",
                    "scope": GMAIL_READONLY, "refresh_token": refresh_token}
        else:
            raise _Answer(400, {"error": "unsupported_grant_type",
                                "error_description": f"Invalid grant_type: {grant}"})
        token = "ya29." + secrets.token_urlsafe(24)
        self._access_tokens[token] = user
        return {"access_token": token, "expires_in": 3600, "token_type": "Bearer",
                "scope": GMAIL_READONLY}

    def _delegated_user(self, assertion: str) -> str:
        """The user a service account asks to act for; the signature and aud go unchecked."""
        try:
            payload_b64 = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64)
                                                                               % 4)))
        except (IndexError, ValueError, binascii.Error):
            raise _Answer(400, {"error": "invalid_grant",
                                "error_description": "Invalid JWT Signature."}) from None
        if claims.get("iss") not in self._service_accounts or self._revoked:
            raise _Answer(400, {"error": "invalid_grant",
                                "error_description": "Invalid grant: account not found"})
        scopes = str(claims.get("scope", "")).split()
        sub = claims.get("sub")
        if not sub or not any("gmail" in s or s == "https://mail.google.com/" for s in scopes):
            # What Google says when domain-wide delegation lacks the user or the scope.
            raise _Answer(401, {"error": "unauthorized_client",
                                "error_description": "Client is unauthorized to retrieve access "
                                "tokens using this method, or client not authorized for any of "
                                "the scopes requested."})
        if sub not in self._mailboxes:
            raise _Answer(400, {"error": "invalid_grant",
                                "error_description": "Invalid email or User ID"})
        return str(sub)

    def _authorize(self, headers: dict[str, str], user_in_path: str) -> _Mailbox:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        user = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            raise _Answer(401, _UNAUTHENTICATED,
                          {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        if user_in_path not in ("me", user):
            raise _Answer(403, google_error(403, "forbidden",
                                            f"Delegation denied for {user}"))
        return self._mailboxes[user]

    def _api(self, box: _Mailbox, rest: str, query: dict[str, list[str]]) -> dict[str, Any]:
        if rest == "profile":
            return {"emailAddress": box.email, "messagesTotal": len(_live(box.messages.values())),
                    "threadsTotal": len(_live(box.messages.values())),
                    "historyId": str(box.history_id)}
        if rest == "messages":
            return self._list_messages(box, query)
        if rest.startswith("messages/") and "/" not in rest[len("messages/"):]:
            return self._get_message(box, rest[len("messages/"):], query)
        if rest == "history":
            return self._list_history(box, query)
        raise _Answer(404, NOT_FOUND)

    def _page_size(self, query: dict[str, list[str]]) -> int:
        asked = _int_param(query, "maxResults", 100)
        if asked < 1:
            raise _Answer(400, google_error(400, "invalidArgument", "Invalid maxResults"))
        return min(asked, _MAX_RESULTS, self.page_size)

    def _list_messages(self, box: _Mailbox, query: dict[str, list[str]]) -> dict[str, Any]:
        wanted_labels = set(query.get("labelIds", []))
        spam_trash = query.get("includeSpamTrash", ["false"])[0].lower() == "true"
        matches = _search(query.get("q", [""])[0])
        found = [m for m in _live(box.messages.values())
                 if wanted_labels <= set(m.labels) and matches(m)
                 and (spam_trash or not {"SPAM", "TRASH"} & set(m.labels))]
        found.sort(key=_Message.listing_key, reverse=True)  # newest first, as Gmail lists
        token = query.get("pageToken", [""])[0]
        if token:
            after = _decode_token(token)
            found = [m for m in found if list(m.listing_key()) < after]
        size = self._page_size(query)
        page = found[:size]
        answer: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            answer["messages"] = [{"id": m.id, "threadId": m.id} for m in page]
        if len(found) > size:
            answer["nextPageToken"] = _encode_token(list(page[-1].listing_key()))
        return answer

    def _get_message(self, box: _Mailbox, message_id: str,
                     query: dict[str, list[str]]) -> dict[str, Any]:
        message = box.messages.get(message_id)
        if message is None or message.deleted:
            raise _Answer(404, NOT_FOUND)
        fmt = query.get("format", ["full"])[0]
        answer: dict[str, Any] = {
            "id": message.id, "threadId": message.id, "labelIds": list(message.labels),
            "snippet": "", "sizeEstimate": len(message.raw),
            "historyId": str(message.history_id), "internalDate": str(message.internal_ms),
        }
        if fmt == "raw":
            answer["raw"] = base64.urlsafe_b64encode(message.raw).decode("ascii")
        elif fmt != "minimal":
            raise _Answer(400, google_error(400, "invalidArgument",
                                            f"GmailFake serves format=raw or minimal, not {fmt}"))
        return answer

    def _list_history(self, box: _Mailbox, query: dict[str, list[str]]) -> dict[str, Any]:
        start_values = query.get("startHistoryId")
        if not start_values:
            raise _Answer(400, google_error(400, "invalidArgument",
                                            "Missing required field: startHistoryId"))
        start = _int_param(query, "startHistoryId", 0)
        if start < box.oldest_retained:
            raise _Answer(404, NOT_FOUND)
        kinds = {_HISTORY_KINDS.get(t, t) for t in query.get("historyTypes", [])}
        label = query.get("labelId", [""])[0]
        token = query.get("pageToken", [""])[0]
        after = max(start, _decode_token(token)[0] if token else start)
        records = [r for r in box.history
                   if r.id > after and (not kinds or r.kind in kinds)
                   and (not label or label in r.labels)]
        size = self._page_size(query)
        page = records[:size]
        answer: dict[str, Any] = {"historyId": str(box.history_id)}
        if page:
            answer["history"] = [_history_entry(r) for r in page]
        if len(records) > size:
            answer["nextPageToken"] = _encode_token([page[-1].id])
        return answer


def _take(faults: list[_Fault], method: str, path: str) -> _Fault | None:
    """The first fault planned for this request, used up once its ``times`` run out."""
    for fault in faults:
        if fault.method == method and fault.path.search(path):
            fault.times -= 1
            if fault.times <= 0:
                faults.remove(fault)
            return fault
    return None


def _inner_request(text: str) -> tuple[str, str, dict[str, str], bytes]:
    """Method, target, headers and body of one serialized request inside a batch."""
    request_line, _, rest = text.replace("\r\n", "\n").partition("\n")
    try:
        method, target, _version = request_line.split(" ", 2)
    except ValueError:
        raise _Answer(400, google_error(400, "badRequest", "Bad batch part")) from None
    head, _, body = rest.partition("\n\n")
    parsed = Parser().parsestr(head + "\n\n", headersonly=True)
    headers = {k.lower(): str(v) for k, v in parsed.items()}
    return method.upper(), target, headers, body.encode("utf-8")


def _live(messages: Iterable[_Message]) -> list[_Message]:
    return [m for m in messages if not m.deleted]


def _history_entry(record: _HistoryRecord) -> dict[str, Any]:
    ref = {"id": record.message.id, "threadId": record.message.id}
    change: dict[str, Any] = {"message": {**ref, "labelIds": list(record.labels)}}
    if record.changed:
        change["labelIds"] = list(record.changed)
    return {"id": str(record.id), "messages": [ref], record.kind: [change]}


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise _Answer(400, google_error(400, "invalidArgument",
                                        f"Invalid value for {name}: {values[0]}")) from None


def _encode_token(position: list[int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode("ascii")


def _decode_token(token: str) -> list[int]:
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, binascii.Error):
        raise _Answer(400, google_error(400, "invalidArgument", "Invalid pageToken")) from None
    if not isinstance(position, list) or not all(isinstance(p, int) for p in position):
        raise _Answer(400, google_error(400, "invalidArgument", "Invalid pageToken"))
    return position


def _search(q: str) -> Callable[[_Message], bool]:
    """The subset of Gmail search the pull uses: after:/before: with epoch seconds or a date."""
    bounds: list[Callable[[_Message], bool]] = []
    for term in q.split():
        name, _, value = term.partition(":")
        if name not in ("after", "before") or not value:
            raise _Answer(400, google_error(400, "invalidArgument",
                                            f"GmailFake does not understand q term {term!r}"))
        bounds.append(_time_bound(name == "after", _search_instant_ms(value)))
    return lambda m: all(bound(m) for bound in bounds)


def _time_bound(after: bool, ms: int) -> Callable[[_Message], bool]:
    def within(message: _Message) -> bool:
        return message.internal_ms >= ms if after else message.internal_ms < ms

    return within


def _search_instant_ms(value: str) -> int:
    if value.isdigit():
        return int(value) * 1000
    try:
        day = datetime.strptime(value.replace("-", "/"), "%Y/%m/%d")
    except ValueError:
        raise _Answer(400, google_error(400, "invalidArgument",
                                        f"GmailFake does not understand date {value!r}")) from None
    return int(day.replace(tzinfo=_PST).timestamp() * 1000)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: GmailFake) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) leaves a dead socket; that is not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
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
                with contextlib.suppress(OSError):
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
            # A bug in the fake must fail the test (see GmailFake.errors), not pass as a 500
            # that a retrying client shrugs off; still answer, so the client does not hang.
            self.server.fake.errors.append(f"{self.command} {self.path}: {exc!r}")
            status, payload, extra = 500, json.dumps(google_error(
                500, "backendError", f"GmailFake failed: {exc!r}")).encode(), dict(_JSON)
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is self.server.fake.requests
