"""The SMTP door: aiosmtpd, our recipient policy, and 250 only after commit.

Reply policy (each line is tested in tests/test_smtp_*.py):

* RCPT for an address no mailbox owns        → 550 5.1.1 (no relaying, nothing stored)
* more than ``max_recipients`` recipients     → 452 4.5.3
* SIZE above ``max_message_size``             → 552 5.3.4, at MAIL or at the end of DATA
* bare CR or bare LF in DATA                  → 550 5.6.0 (SMTP smuggling, parser differentials)
* lines longer than RFC 5321's 1,000 octets   → accepted; only the message size limit applies
* the commit failed, or anything unexpected   → 451 4.3.0 with a generic text
* the database did not commit in time         → 451 4.3.0 within ``database.reply_within_seconds``
* committed                                   → 250 2.0.0 with the message's id
* stopping (SIGTERM): idle sessions           → 421 4.3.2 at once; sessions in DATA
  finish (250 or 451) within ``smtp.drain_seconds``, then hear 421 4.3.2
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AnyStr

import structlog
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from ingestd import __version__
from ingestd.config.settings import SmtpSettings
from ingestd.errors import IngestdError, ListenFailed
from ingestd.intake.commit import GroupCommitter
from ingestd.intake.data_reader import DataRead, InflightBudget, read_data
from ingestd.intake.files import looks_like_mail
from ingestd.intake.recipients import MailboxAddresses
from ingestd.intake.source import Source

log = structlog.get_logger("ingestd.smtp")


def has_bare_line_end(data: bytes) -> bool:
    """A CR not followed by LF, or an LF not preceded by CR, anywhere in ``data``.

    Counting is some 40 times faster than a look-behind regex on a 4 KB message,
    and this runs on every message on the event loop.
    """
    pairs = data.count(b"\r\n")
    return data.count(b"\n") != pairs or data.count(b"\r") != pairs

REPLY_TEMPFAIL = "451 4.3.0 Temporary failure storing the message, please try again later"
REPLY_BARE_LINE_END = (
    "550 5.6.0 Message contains a bare CR or LF; lines must end with CRLF (RFC 5321 2.3.8)"
)
REPLY_TOO_BIG = "552 5.3.4 Message size exceeds the fixed maximum message size"
REPLY_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
REPLY_SHUTTING_DOWN = b"421 4.3.2 Service shutting down, please try again later\r\n"
REPLY_PREGREET = b"421 4.7.0 Talked before the greeting, closing connection\r\n"
REPLY_TIMEOUT = b"421 4.4.2 %s timeout, closing connection\r\n"
REPLY_OVER_BUDGET = (
    "452 4.3.1 Insufficient system storage for the message now, please try again later")
REPLY_TOO_MANY_ERRORS = "421 4.7.0 Too many errors in this session, closing connection"
REPLY_NO_HEADER = "550 5.6.0 Message has no header section (RFC 5322 2.1)"
REPLY_NUL_SENDER = "501 5.1.7 NUL is not allowed in an address"
REPLY_NUL_RECIPIENT = "501 5.1.3 NUL is not allowed in an address"

# aiosmtpd's own replies that lack an enhanced status code, rewritten on the way out.
_REWRITES = {
    "552 Error: message size exceeds fixed maximum message size": REPLY_TOO_BIG,
    "552 Error: Too much mail data": REPLY_TOO_BIG,
}


def _emit(method: Any, event: str, **fields: Any) -> None:
    """Log without ever letting a logging failure change an SMTP reply.

    After a commit, an exception here would turn 250 into an error and make
    the sender deliver the message twice.
    """
    with contextlib.suppress(Exception):
        method(event, **fields)


# Reader buffer while reading commands (aiosmtpd's command limit is 512 octets).
_COMMAND_BUFFER = 64 * 1024
REPLY_TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"


class ConnectionLimits:
    """Counts open SMTP connections, in all and per client address."""

    def __init__(self, total: int, per_ip: int) -> None:
        self._total, self._per_ip = total, per_ip
        self._open = 0
        self._by_ip: dict[str, int] = {}

    def admit(self, ip: str) -> bool:
        if self._open >= self._total or self._by_ip.get(ip, 0) >= self._per_ip:
            return False
        self._open += 1
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        return True

    def release(self, ip: str) -> None:
        self._open -= 1
        left = self._by_ip.get(ip, 1) - 1
        if left:
            self._by_ip[ip] = left
        else:
            self._by_ip.pop(ip, None)


class Sessions:
    """The open SMTP sessions, so that a stop can drain them."""

    def __init__(self) -> None:
        self.open: set[IngestSMTP] = set()
        self.draining = False
        self.changed = asyncio.Event()

    def in_data(self) -> list[IngestSMTP]:
        return [s for s in self.open if s.in_data]

    def left(self, session: IngestSMTP) -> None:
        self.open.discard(session)
        self.changed.set()


class IngestSMTP(SMTP):
    """aiosmtpd's SMTP with connection limits, long lines allowed, enhanced codes, drain."""

    def __init__(self, handler: Any, *, max_message_size: int, limits: ConnectionLimits,
                 sessions: Sessions, max_errors: int = 20, greet_delay: float = 0.0,
                 data_timeout: float = 1800.0, session_timeout: float = 3600.0,
                 budget: InflightBudget | None = None, **kwargs: Any) -> None:
        self._limits = limits
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
        self._budget = budget or InflightBudget(256 * 1024 * 1024)
        super().__init__(handler, data_size_limit=max_message_size, **kwargs)

    def _cb_client_connected(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        super()._cb_client_connected(reader, writer)
        reader._limit = _COMMAND_BUFFER  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self._sessions.draining:
            # Accepted just before the listener closed: no session, no slot.
            transport.write(REPLY_SHUTTING_DOWN)  # type: ignore[attr-defined]
            transport.close()
            return
        if not self._limits.admit(ip):
            # Refused before aiosmtpd sees the connection: no session, no greeting.
            _emit(log.warning, "smtp.connection_refused", peer=ip, reason="too many connections")
            transport.write(REPLY_TOO_MANY_CONNECTIONS)  # type: ignore[attr-defined]
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

    def _timed_out(self, which: str) -> None:
        """End the session with 421 4.4.2 (RFC 5321 3.8), whatever it was doing."""
        self._timers.pop(which, None)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        _emit(log.info, "smtp.timeout", peer=self._admitted_ip, which=which,
              in_data=self.in_data)
        transport.write(REPLY_TIMEOUT % which.capitalize().encode())  # type: ignore[attr-defined]
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
            _emit(log.info, "smtp.pregreet", peer=self._admitted_ip)
            self._cancel_greeting()
            if self._raw_transport is not None:
                self._raw_transport.write(REPLY_PREGREET)  # type: ignore[attr-defined]
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
            _emit(log.info, "smtp.session_errors", peer=self._admitted_ip, errors=self.errors)
        self._limits.release(self._admitted_ip)
        self._admitted_ip = None
        self._sessions.left(self)
        self._cancel_greeting()
        for which in list(self._timers):
            self._stop_timer(which)
        if self._started:
            super().connection_lost(error)

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
        transport = self.transport or self._raw_transport
        if transport is not None and not transport.is_closing():
            transport.write(REPLY_SHUTTING_DOWN)  # type: ignore[attr-defined]
            transport.close()

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            status = _REWRITES.get(status, status)
        await super().push(status)
        text = status if isinstance(status, str) else status.decode("ascii", "replace")
        if text[:1] == "5" and self._max_errors:
            # Refused recipients, unknown commands, bad sequences: a client that
            # keeps failing is probing or broken; it is cut off, not answered forever.
            self.errors += 1
            if self.errors == self._max_errors and self.transport is not None:
                _emit(log.warning, "smtp.too_many_errors", peer=self._admitted_ip,
                      errors=self.errors)
                await super().push(REPLY_TOO_MANY_ERRORS)
                self.transport.close()


class IntakeHandler:
    """aiosmtpd hooks: recipient policy at RCPT, durable store at DATA."""

    def __init__(
        self,
        settings: SmtpSettings,
        addresses: MailboxAddresses,
        committer: GroupCommitter,
    ) -> None:
        self._settings = settings
        self._addresses = addresses
        self._committer = committer
        self._source = SmtpSource()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if self._addresses.mailbox_for(address) is None:
            # debug: a session's refusals are summed up in smtp.session_errors.
            _emit(log.debug, "smtp.rcpt_refused", peer=_peer(session), rcpt=address)
            return f"550 5.1.1 <{address}>: no such mailbox here"
        if len(envelope.rcpt_tos) >= self._settings.max_recipients:
            return REPLY_TOO_MANY_RCPTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        started = time.perf_counter()
        raw = envelope.original_content or b""
        fields: dict[str, Any] = {
            "peer": _peer(session),
            "mail_from": envelope.mail_from,
            "rcpt_count": len(envelope.rcpt_tos),
            "size": len(raw),
        }
        try:
            if has_bare_line_end(raw):
                _emit(log.info, "smtp.transaction", outcome="refused_bare_line_end", **fields)
                return REPLY_BARE_LINE_END
            if not looks_like_mail(raw):
                # The rule `ingest` applies too: without a header section there is
                # no sender, subject or date to make a ticket of.
                _emit(log.info, "smtp.transaction", outcome="refused_no_header", **fields)
                return REPLY_NO_HEADER
            mailbox, others = self._addresses.assign(envelope.rcpt_tos)
            message = self._source.message(
                raw, mailbox, also_mailboxes=others, envelope_from=envelope.mail_from,
                envelope_to=list(envelope.rcpt_tos), peer=fields["peer"],
            )
            message_id = await self._committer.submit(message)
        except asyncio.CancelledError:
            raise
        except IngestdError as exc:
            _emit(log.warning, "smtp.transaction", outcome="tempfail", error=str(exc), **fields)
            return REPLY_TEMPFAIL
        except Exception as exc:
            # A bug of ours must not bounce mail permanently: the sender retries.
            _emit(log.exception, "smtp.transaction", outcome="tempfail",
                  error=type(exc).__name__, **fields)
            return REPLY_TEMPFAIL
        _emit(
            log.info, "smtp.transaction", outcome="stored", id=message_id, source="smtp",
            mailbox=mailbox,
            seconds=round(time.perf_counter() - started, 4), **fields,
        )
        return f"250 2.0.0 OK queued as {message_id}"

    async def handle_exception(self, error: Exception) -> str:
        # Backstop for failures outside our hooks; aiosmtpd would answer a 500
        # carrying the exception text.
        _emit(log.error, "smtp.internal_error", error=type(error).__name__)
        return "451 4.3.0 Temporary local problem, please try again later"


def _peer(session: Session) -> str | None:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else None


class SmtpSource(Source):
    """Mail received over SMTP, keyed by its bytes (a resend after a lost 250 is the same)."""

    kind = "smtp"


class SmtpService:
    """A daemon service: the listening socket and its sessions."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings, addresses: MailboxAddresses,
                 committer: GroupCommitter) -> None:
        self._settings = settings
        self._addresses = addresses
        self._committer = committer
        self._sessions = Sessions()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def ready(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        try:
            self._server = await start_smtp_server(
                self._settings, self._addresses, self._committer, self._sessions)
        except OSError as exc:
            raise ListenFailed(
                f"cannot listen on {self._settings.host}:{self._settings.port}: "
                f"{exc.strerror or exc}") from exc

    async def stop(self) -> None:
        """Drain: no new connections; idle sessions 421 now; DATA finishes, then 421."""
        if self._server is None:
            return
        self._server.close()
        sessions = self._sessions
        sessions.draining = True
        for session in list(sessions.open):
            if not session.in_data:
                session.shut()
        deadline = time.monotonic() + self._settings.drain_seconds
        while sessions.in_data() and time.monotonic() < deadline:
            sessions.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sessions.changed.wait(), deadline - time.monotonic())
        unfinished = sessions.in_data()
        for session in list(sessions.open):
            session.shut()
        _emit(log.info, "smtp.drained", cut_off=len(unfinished))
        # Python 3.12's wait_closed also waits for every connection: bounded here.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._server = None


async def start_smtp_server(
    settings: SmtpSettings,
    addresses: MailboxAddresses,
    committer: GroupCommitter,
    sessions: Sessions,
) -> asyncio.Server:
    """Listen on ``settings.host:settings.port`` in the running loop."""
    handler = IntakeHandler(settings, addresses, committer)
    limits = ConnectionLimits(settings.max_connections, settings.max_connections_per_ip)
    budget = InflightBudget(settings.max_inflight_bytes)
    loop = asyncio.get_running_loop()

    def factory() -> IngestSMTP:
        return IngestSMTP(
            handler,
            max_message_size=settings.max_message_size,
            limits=limits,
            sessions=sessions,
            max_errors=settings.max_errors,
            greet_delay=settings.greet_delay_ms / 1000,
            hostname=settings.hostname,
            ident=f"ingestd {__version__}",
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=settings.idle_timeout_seconds,
            data_timeout=settings.data_timeout_seconds,
            session_timeout=settings.session_timeout_seconds,
            budget=budget,
            loop=loop,
        )

    return await loop.create_server(factory, host=settings.host, port=settings.port)
