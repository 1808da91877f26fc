"""One SMTP session: aiosmtpd's SMTP with what ingestd adds to the protocol: admission
(smtp_admission.py), the pregreet test, idle / DATA / session timeouts with 421 4.4.2, the
error count that ends a probing session, NUL in envelope addresses, DATA read by
``data_reader`` within the in-flight budget, a reply written after a half-close, ``shut()``
for the drain, STARTTLS's second ``connection_made``, and no AUTH. The message policy
(recipients, the store) is ``IntakeHandler``'s, in smtp.py."""

from __future__ import annotations

import asyncio
from typing import Any, AnyStr

import structlog
from aiosmtpd.smtp import MISSING, SMTP

from ingestd.intake.client_networks import ClientNetworks
from ingestd.intake.connection_limits import ConnectionLimits
from ingestd.intake.data_reader import DataRead, InflightBudget, read_data
from ingestd.intake.smtp_admission import Sessions, admit
from ingestd.intake.smtp_replies import (
    REPLY_NO_AUTH,
    REPLY_NUL_RECIPIENT,
    REPLY_NUL_SENDER,
    REPLY_OVER_BUDGET,
    REPLY_PREGREET,
    REPLY_SHUTTING_DOWN,
    REPLY_TIMEOUT,
    REPLY_TOO_BIG,
    REPLY_TOO_MANY_ERRORS,
    REWRITES,
    emit,
)
from ingestd.metrics.counters import count_reply, count_reply_bytes

log = structlog.get_logger("ingestd.smtp")

# Reader buffer while reading commands (aiosmtpd's command limit is 512 octets).
_COMMAND_BUFFER = 64 * 1024


class IngestSMTP(SMTP):
    """aiosmtpd's SMTP with connection limits, long lines allowed, enhanced codes, drain."""

    def __init__(self, handler: Any, *, max_message_size: int, limits: ConnectionLimits,
                 sessions: Sessions, max_errors: int = 20, greet_delay: float = 0.0,
                 data_timeout: float = 1800.0, session_timeout: float = 3600.0,
                 budget: InflightBudget | None = None,
                 networks: ClientNetworks | None = None, **kwargs: Any) -> None:
        self._limits = limits
        self._networks = networks or ClientNetworks(())
        self._sessions = sessions
        self.in_data = False
        self._admitted_ip: str | None = None
        self._raw_transport: asyncio.BaseTransport | None = None
        # aiosmtpd's session starts (and greets) only after greet_delay: a
        # client that talks before it is no patient MTA (postscreen's pregreet).
        self._greet_delay = greet_delay
        self._started = False
        self._greeting: asyncio.TimerHandle | None = None
        self._max_errors = max_errors
        self.errors = 0
        self._eof_in_data = False
        self._data_timeout = data_timeout
        self._session_timeout = session_timeout
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Between STARTTLS's 220 and the end of its handshake.
        self._handshaking = False
        self._budget = budget or InflightBudget(256 * 1024 * 1024)
        super().__init__(handler, data_size_limit=max_message_size, **kwargs)

    def _cb_client_connected(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        super()._cb_client_connected(reader, writer)
        reader._limit = _COMMAND_BUFFER  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._started:
            # The TLS layer's, once STARTTLS's handshake is done: the same client
            # and slot. aiosmtpd forgets the session (RFC 3207 4.2) and drops what
            # was pipelined in clear after STARTTLS (the CVE-2011-0411 class).
            self._handshaking = False
            super().connection_made(transport)
            return
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        refusal = admit(ip, draining=self._sessions.draining, networks=self._networks,
                        limits=self._limits)
        if refusal is not None:
            # No session and no greeting: the refusal, and the connection is closed.
            transport.write(refusal)  # type: ignore[attr-defined]
            count_reply_bytes(refusal)
            transport.close()
            return
        self._admitted_ip = ip
        self._raw_transport = transport
        self._sessions.open.add(self)
        if self._greet_delay > 0:
            self._greeting = asyncio.get_running_loop().call_later(
                self._greet_delay, self._greet, transport)
            return
        self._greet(transport)

    def _greet(self, transport: asyncio.BaseTransport) -> None:
        self._greeting = None
        if transport.is_closing():
            return
        self._started = True
        super().connection_made(transport)
        self._start_timer("session", self._session_timeout)

    def _start_timer(self, which: str, seconds: float) -> None:
        self._stop_timer(which)
        self._timers[which] = asyncio.get_running_loop().call_later(
            seconds, self._timed_out, which)

    def _stop_timer(self, which: str) -> None:
        handle = self._timers.pop(which, None)
        if handle is not None:
            handle.cancel()

    async def smtp_STARTTLS(self, arg: str) -> None:
        self._handshaking = self.tls_context is not None and not arg
        try:
            await super().smtp_STARTTLS(arg)
        finally:
            if self._handshaking and self._tls_protocol is not None:
                # The handshake ended without the TLS layer ever connecting (a
                # timeout closed it mid-way): Python's sslproto then never tells
                # us the connection is lost, so the slot would be held for good.
                self._drop()
            self._handshaking = False

    def _drop(self) -> None:
        """End a connection whose TLS handshake is under way: nothing can be said in it."""
        self._handshaking = False
        if isinstance(self._raw_transport, asyncio.Transport):
            self._raw_transport.abort()
        elif self._raw_transport is not None:
            self._raw_transport.close()
        self.connection_lost(None)

    def _timed_out(self, which: str) -> None:
        """End the session with 421 4.4.2 (RFC 5321 3.8), whatever it was doing."""
        self._timers.pop(which, None)
        if self._handshaking:
            emit(log.info, "smtp.timeout", peer=self._admitted_ip, which=which,
                 in_data=False, during="tls handshake")
            self._drop()
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        emit(log.info, "smtp.timeout", peer=self._admitted_ip, which=which,
              in_data=self.in_data)
        transport.write(REPLY_TIMEOUT % which.capitalize().encode())  # type: ignore[attr-defined]
        count_reply_bytes(REPLY_TIMEOUT % which.capitalize().encode())
        transport.close()

    def _timeout_cb(self) -> None:
        # aiosmtpd's idle timer: between commands, and (reset in data_received)
        # between chunks of DATA; it closed without a word, this says 421.
        self._timed_out("idle")

    def data_received(self, data: bytes) -> None:
        if self.in_data:
            # Idle time inside DATA is time between chunks, not the transfer.
            self._reset_timeout()
        if not self._started:
            # Spoke before the greeting: refused, and nothing it said is read.
            emit(log.info, "smtp.pregreet", peer=self._admitted_ip)
            self._cancel_greeting()
            if self._raw_transport is not None:
                self._raw_transport.write(REPLY_PREGREET)  # type: ignore[attr-defined]
                count_reply_bytes(REPLY_PREGREET)
                self._raw_transport.close()
            return
        super().data_received(data)

    def eof_received(self) -> bool | None:
        if not self._started:
            return False
        if self.in_data:
            # A client may half-close right after its final dot: its reply must
            # still be written, so the session is not cancelled (aiosmtpd's
            # default) but closed once DATA has answered.
            self._eof_in_data = True
            return asyncio.StreamReaderProtocol.eof_received(self)
        return super().eof_received()

    def _cancel_greeting(self) -> None:
        if self._greeting is not None:
            self._greeting.cancel()
            self._greeting = None

    def connection_lost(self, error: Exception | None) -> None:
        if self._admitted_ip is None:
            return
        if self.errors:
            # One event per session, not one per refused line.
            emit(log.info, "smtp.session_errors", peer=self._admitted_ip, errors=self.errors)
        self._limits.release(self._admitted_ip)
        self._admitted_ip = None
        self._sessions.left(self)
        self._cancel_greeting()
        for which in list(self._timers):
            self._stop_timer(which)
        if self._started:
            super().connection_lost(error)

    async def smtp_AUTH(self, arg: str) -> None:
        # Never offered (see IntakeHandler.handle_EHLO): with TLS up, aiosmtpd
        # would otherwise start an exchange no authenticator can complete.
        await self.push(REPLY_NO_AUTH)

    async def smtp_MAIL(self, arg: str | None) -> None:
        if arg is not None and "\x00" in arg:
            # Dropping the NUL would record a sender the client never named.
            await self.push(REPLY_NUL_SENDER)
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if arg is not None and "\x00" in arg:
            await self.push(REPLY_NUL_RECIPIENT)
            return
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str | None) -> None:
        """aiosmtpd's DATA, with the content read by ``read_data`` (chunks, budget)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        self.in_data = True
        self._start_timer("data", self._data_timeout)
        read: DataRead | None = None
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            # Lines of any length are accepted: only max_message_size bounds
            # DATA (real mail has long HTML and base64 lines).
            read = await read_data(self._reader, max_size=self.data_size_limit or 0,
                                   budget=self._budget)
            if read.problem is not None:
                self._set_post_data_state()  # type: ignore[no-untyped-call]
                await self.push(REPLY_TOO_BIG if read.problem == "too_big"
                                else REPLY_OVER_BUDGET)
                return
            self.envelope.content = self.envelope.original_content = read.content
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("250 OK" if status is MISSING else status)
        finally:
            if read is not None:
                # The message is committed (or refused) and its bytes let go.
                self._budget.release(read.reserved)
            self._stop_timer("data")
            self.in_data = False
            self._sessions.changed.set()
            if self._eof_in_data and self.transport is not None:
                # The client half-closed: its reply is out (or it left mid-DATA).
                self.transport.close()
        if self._sessions.draining:
            # The reply for this transaction is out; no next one is taken.
            self.shut()

    def shut(self) -> None:
        """Say 421 4.3.2 and close (RFC 5321 3.8: the client retries later)."""
        self._cancel_greeting()
        if self._handshaking:
            self._drop()
            return
        transport = self.transport or self._raw_transport
        if transport is not None and not transport.is_closing():
            transport.write(REPLY_SHUTTING_DOWN)  # type: ignore[attr-defined]
            count_reply_bytes(REPLY_SHUTTING_DOWN)
            transport.close()

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            status = REWRITES.get(status, status)
        await super().push(status)
        text = status if isinstance(status, str) else status.decode("ascii", "replace")
        if text[3:4] != "-":  # a multi-line reply is one reply: counted at its last line
            count_reply(text)
        if text[:1] == "5" and self._max_errors:
            # Refused recipients, unknown commands, bad sequences: a client that
            # keeps failing is probing or broken; it is cut off, not answered forever.
            self.errors += 1
            if self.errors == self._max_errors and self.transport is not None:
                emit(log.warning, "smtp.too_many_errors", peer=self._admitted_ip,
                      errors=self.errors)
                await super().push(REPLY_TOO_MANY_ERRORS)
                count_reply(REPLY_TOO_MANY_ERRORS)
                self.transport.close()
