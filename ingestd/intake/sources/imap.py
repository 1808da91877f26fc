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

from ingestd.config.pulls import ImapSettings
from ingestd.errors import CredentialsRejected, SourceRefused, SourceUnavailable
from ingestd.intake.sources.imap_client import (
    Imap4,
    Imap4Ssl,
    network,
    server_said_no,
    text,
    xoauth2,
)
from ingestd.intake.sources.imap_mailbox import ImapConnection
from ingestd.intake.sources.imap_wire import (
    response_code,
)
from ingestd.intake.sources.secrets import read_secret

__all__ = ["ImapConnection", "ImapSource"]  # ImapConnection lives in imap_mailbox.py

# Response codes (RFC 5530) that say "later", not "your credentials are wrong".
_TRY_LATER = {"UNAVAILABLE", "SERVERBUG", "INUSE", "LIMIT", "CONTACTADMIN"}


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
        with network(self.where):
            if s.tls == "implicit":
                client = Imap4Ssl(self._sockets.append, s.host, s.effective_port,
                                   ssl_context=context, timeout=s.timeout_seconds)
            else:
                client = Imap4(self._sockets.append, s.host, s.effective_port,
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
                client.authenticate("XOAUTH2", xoauth2(s.username, token))
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
            if response_code(exc) in _TRY_LATER or not server_said_no(exc):
                raise SourceUnavailable(f"{self.where}: login failed for now: {exc}") from exc
            raise CredentialsRejected(f"{self.where}: login as {s.username} refused: "
                                      f"{text(exc)}") from exc
        except OSError as exc:
            raise SourceUnavailable(f"{self.where}: connection lost at login: {exc}") from exc
