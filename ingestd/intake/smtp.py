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
* a client outside ``smtp.allowed_networks``  → 554 5.7.1 instead of the greeting, closed
* with ``smtp.tls``: STARTTLS offered; with ``require_starttls`` mail commands before
  it                                          → 530 5.7.0
* AUTH (never offered: the port takes mail from MTAs, as an MX does) → 502 5.5.1
* stopping (SIGTERM): idle sessions           → 421 4.3.2 at once; sessions in DATA
  finish (250 or 451) within ``smtp.drain_seconds``, then hear 421 4.3.2
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException

from ingestd import __version__
from ingestd.config.settings import IngestdSettings, SmtpSettings
from ingestd.errors import IngestdError, ListenFailed
from ingestd.intake.client_networks import ClientNetworks
from ingestd.intake.commit import GroupCommitter
from ingestd.intake.connection_limits import ConnectionLimits
from ingestd.intake.data_reader import InflightBudget
from ingestd.intake.files import looks_like_mail
from ingestd.intake.recipients import MailboxAddresses
from ingestd.intake.smtp_admission import Sessions
from ingestd.intake.smtp_replies import emit
from ingestd.intake.smtp_session import IngestSMTP
from ingestd.intake.smtp_tls import ServerCertificate
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
REPLY_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
REPLY_NO_HEADER = "550 5.6.0 Message has no header section (RFC 5322 2.1)"


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

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        # aiosmtpd offers AUTH once TLS is up; there is no SMTP AUTH here.
        session.host_name = hostname
        return [line for line in responses if not line[4:].upper().startswith("AUTH")]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if self._addresses.mailbox_for(address) is None:
            # debug: a session's refusals are summed up in smtp.session_errors.
            emit(log.debug, "smtp.rcpt_refused", peer=_peer(session), rcpt=address)
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
                emit(log.info, "smtp.transaction", outcome="refused_bare_line_end", **fields)
                return REPLY_BARE_LINE_END
            if not looks_like_mail(raw):
                # The rule `ingest` applies too: without a header section there is
                # no sender, subject or date to make a ticket of.
                emit(log.info, "smtp.transaction", outcome="refused_no_header", **fields)
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
            emit(log.warning, "smtp.transaction", outcome="tempfail", error=str(exc), **fields)
            return REPLY_TEMPFAIL
        except Exception as exc:
            # A bug of ours must not bounce mail permanently: the sender retries.
            emit(log.exception, "smtp.transaction", outcome="tempfail",
                  error=type(exc).__name__, **fields)
            return REPLY_TEMPFAIL
        emit(
            log.info, "smtp.transaction", outcome="stored", id=message_id, source="smtp",
            mailbox=mailbox,
            seconds=round(time.perf_counter() - started, 4), **fields,
        )
        return f"250 2.0.0 OK queued as {message_id}"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client that cannot agree on TLS (old, or a scanner): its problem,
            # not ours; aiosmtpd closes the connection without a reply.
            cause = error.__cause__
            emit(log.info, "smtp.starttls_failed",
                 error=str(cause) if cause is not None else type(error).__name__)
            return "454 4.7.0 TLS not available due to temporary reason"
        # Backstop for failures outside our hooks; aiosmtpd would answer a 500
        # carrying the exception text.
        emit(log.error, "smtp.internal_error", error=type(error).__name__)
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
        # Loaded when the service is made: a bad certificate stops the start-up.
        self.certificate = ServerCertificate(settings.tls)
        self._server: asyncio.Server | None = None
        # Message bytes all sessions hold, against smtp.max_inflight_bytes (and /metrics).
        self.budget = InflightBudget(settings.max_inflight_bytes)

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
                self._settings, self._addresses, self._committer, self._sessions, self.budget,
                self.certificate)
        except OSError as exc:
            raise ListenFailed(
                f"cannot listen on {self._settings.host}:{self._settings.port}: "
                f"{exc.strerror or exc}") from exc

    def reload(self, settings: IngestdSettings) -> None:
        """SIGHUP: re-read the certificate for the sessions that connect from now on."""
        self.certificate.reload(settings.smtp.tls)

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
        emit(log.info, "smtp.drained", cut_off=len(unfinished))
        # Python 3.12's wait_closed also waits for every connection: bounded here.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._server = None


async def start_smtp_server(
    settings: SmtpSettings,
    addresses: MailboxAddresses,
    committer: GroupCommitter,
    sessions: Sessions,
    budget: InflightBudget | None = None,
    certificate: ServerCertificate | None = None,
) -> asyncio.Server:
    """Listen on ``settings.host:settings.port`` in the running loop."""
    handler = IntakeHandler(settings, addresses, committer)
    limits = ConnectionLimits(settings.max_connections, settings.max_connections_per_ip)
    networks = ClientNetworks(settings.allowed_networks)
    certificate = certificate or ServerCertificate(settings.tls)
    budget = budget or InflightBudget(settings.max_inflight_bytes)
    loop = asyncio.get_running_loop()

    def factory() -> IngestSMTP:
        # The certificate current now, for this session's whole life.
        tls = certificate.current
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
            networks=networks,
            tls_context=tls.context if tls is not None else None,
            require_starttls=tls.require_starttls if tls is not None else False,
            loop=loop,
        )

    return await loop.create_server(factory, host=settings.host, port=settings.port)
