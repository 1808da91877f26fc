"""imaplib adapted to the IMAP source: a client whose socket can be shut from another
thread, connection trouble as our errors, SASL answers, and response-code reading."""

from __future__ import annotations

import contextlib
import imaplib
import socket
from collections.abc import Callable, Iterator
from typing import Any

from ingestd.errors import SourceUnavailable
from ingestd.intake.sources.imap_wire import response_code


class _ToldSocket:
    """imaplib's client, telling us its socket before it waits for the greeting."""

    def __init__(self, on_socket: Callable[[socket.socket], None], *args: Any,
                 **kwargs: Any) -> None:
        self._on_socket = on_socket
        super().__init__(*args, **kwargs)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock: socket.socket = super()._create_socket(timeout)  # type: ignore[misc]
        self._on_socket(sock)
        return sock


class Imap4(_ToldSocket, imaplib.IMAP4):
    pass


class Imap4Ssl(_ToldSocket, imaplib.IMAP4_SSL):
    pass


@contextlib.contextmanager
def network(where: str) -> Iterator[None]:
    """Connection trouble of any kind → ``SourceUnavailable`` (retried)."""
    try:
        yield
    except imaplib.IMAP4.abort as exc:
        raise SourceUnavailable(f"{where}: connection lost: {exc}") from exc
    except imaplib.IMAP4.error as exc:
        raise SourceUnavailable(f"{where}: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise SourceUnavailable(f"{where}: {type(exc).__name__}: {exc}") from exc


def by_size(uids: list[int], sizes: dict[int, int], limit: int) -> Iterator[list[int]]:
    """``uids`` in groups whose sizes add up to at most ``limit`` (a larger one alone)."""
    group: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if group and total + size > limit:
            yield group
            group, total = [], 0
        group.append(uid)
        total += size
    if group:
        yield group


def xoauth2(username: str, token: str) -> Callable[[bytes], bytes]:
    """The SASL XOAUTH2 answer; a second challenge is the server's error: answer it empty."""
    asked = 0

    def answer(_challenge: bytes) -> bytes:
        nonlocal asked
        asked += 1
        return f"user={username}\x01auth=Bearer {token}\x01\x01".encode() if asked == 1 else b""

    return answer


def server_said_no(error: BaseException) -> bool:
    """A NO from the server (the credential was refused), not imaplib's own complaint
    about the exchange ("command: LOGIN => ..." for BAD, an over-long line ...)."""
    text = str(error)
    if response_code(error) in ("AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED"):
        return True
    return not (text.startswith("command:") or "got more than" in text
                or text.startswith("unexpected"))


def text(error: BaseException) -> str:
    text = str(error)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text[:300]
