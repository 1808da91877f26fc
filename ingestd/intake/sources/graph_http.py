"""The HTTP side of the Microsoft 365 source: a requests session with a timeout on every
call (msal's included) whose in-flight sockets can be shut from another thread, and the
small checks on Graph's answers."""

from __future__ import annotations

import contextlib
import socket
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from ingestd.errors import CredentialsRejected


class TrackingAdapter(requests.adapters.HTTPAdapter):
    """Remembers the connections its pools hand out, so abort() can shut a socket that a
    poll thread is blocked reading (closing the session would leave that one alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: weakref.WeakSet[Any] = weakref.WeakSet()

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        pool: Any = super().get_connection_with_tls_context(*args, **kwargs)
        if not getattr(pool, "_ingestd_tracked", False):
            take = pool._get_conn
            seen = self.connections

            def tracked_get_conn(*a: Any, **k: Any) -> Any:
                connection = take(*a, **k)
                seen.add(connection)
                return connection

            pool._get_conn = tracked_get_conn
            pool._ingestd_tracked = True
        return pool

    def shut_down(self) -> None:
        for connection in list(self.connections):
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class TimedSession(requests.Session):
    """A requests.Session whose every request has a timeout (msal's included)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self.tracker = TrackingAdapter()
        self.mount("https://", self.tracker)
        self.mount("http://", self.tracker)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(*args, **kwargs)


def check_private_key(pem: str, path: Path) -> None:
    """A certificate's key that cannot be used is the admin's to fix: needs_reauth."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsRejected(f"certificate_file {path}: not a usable PEM private key "
                                  f"({type(exc).__name__})") from exc


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def error_code(response: Any) -> str | None:
    try:
        return str(response.json().get("error", {}).get("code")) or None
    except (ValueError, AttributeError):
        return None


