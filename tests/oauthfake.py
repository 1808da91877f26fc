"""An OAuth 2.0 token introspection endpoint (RFC 7662) on 127.0.0.1, for Dovecot's oauth2 passdb.

Dovecot, configured with ``introspection_mode = post``, POSTs ``token=…`` for every XOAUTH2 or
OAUTHBEARER login and lets the user in when the answer is ``{"active": true, "username": …}``
naming the user who logs in. Tests decide which tokens are good with ``grant`` and ``revoke``;
a token never granted is inactive. Every token asked about is kept in ``requests``, so a test
can tell that the server really checked the token it was sent.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs

HOST = "127.0.0.1"
PATH = "/introspect"


class IntrospectionFake:
    """Answers ``POST /introspect``; ``url`` is what Dovecot's ``introspection_url`` needs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, str] = {}
        self._requests: list[str] = []
        self._server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://{HOST}:{self.port}{PATH}"
        # A short poll interval only so close() returns at once, not after half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="introspection-fake", daemon=True)
        self._thread.start()

    def grant(self, token: str, username: str) -> None:
        """From now on ``token`` is active and belongs to ``username``."""
        with self._lock:
            self._grants[token] = username

    def revoke(self, token: str) -> None:
        """From now on ``token`` is inactive (logins already done stay, as at a real provider)."""
        with self._lock:
            self._grants.pop(token, None)

    @property
    def requests(self) -> list[str]:
        """The tokens asked about, oldest first."""
        with self._lock:
            return list(self._requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> IntrospectionFake:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _introspect(self, token: str) -> dict[str, object]:
        with self._lock:
            self._requests.append(token)
            username = self._grants.get(token)
        if username is None:
            return {"active": False}
        return {"active": True, "username": username}


def _handler_for(fake: IntrospectionFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 with Content-Length: Dovecot's HTTP client keeps the connection open.
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
            if self.path.split("?")[0] != PATH or "token" not in form:
                self._reply(400, {"error": "invalid_request"})
                return
            self._reply(200, fake._introspect(form["token"][0]))

        def _reply(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            # Quiet: the request log above is what tests read, not stderr.
            pass

    return Handler
