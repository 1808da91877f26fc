"""The IMAP pull source against a real Dovecot: the pull contract, then what only IMAP has."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ingestd.config.settings import DatabaseSettings, IngestdSettings, Mailbox
from ingestd.intake.source import NewMessage, commit_messages
from ingestd.intake.sources.imap import ImapSource
from ingestd.intake.sources.imap_wire import modified_utf7
from ingestd.intake.sources.poll import Poller, PollReport
from ingestd.intake.sources.pull import PullSource
from ingestd.message_keys import content_key
from tests.faultproxy import FaultProxy
from tests.imapserver import Dovecot, ImapUser
from tests.pull_contract import (
    FAST_RETRY,
    PullSourceContract,
    message,
    process_all,
    sqlite_engine,
    state_row,
    stored,
)

__all__ = ["sqlite_engine"]  # the `engine` fixture of the IMAP-only tests below

_names = itertools.count(1)


class DovecotMailbox:
    """One Dovecot user's INBOX as a pulled mailbox."""

    def __init__(self, server: Dovecot, user: ImapUser, secrets: Path) -> None:
        self.server = server
        self.user = user
        self.password_file = secrets / f"{user.name}.pass"
        self.password_file.write_text(user.password + "\n")
        self.name = f"imap-{next(_names)}"

    def mailbox(self, **settings: Any) -> Mailbox:
        imap = {"host": self.server.host, "port": self.server.port, "tls": "none",
                "username": self.user.name, "password_file": str(self.password_file),
                "timeout_seconds": 5, **settings.pop("imap", {})}
        return Mailbox.model_validate({
            "name": self.name, "addresses": [f"{self.name}@example.com"], "source": "imap",
            "poll_interval": 5, "imap": imap, **settings})

    def source(self, mailbox: Mailbox) -> PullSource:
        assert mailbox.imap is not None
        return ImapSource(mailbox.imap)

    def deliver(self, raw: bytes, received_at: datetime | None = None) -> None:
        self.server.append(self.user.name, raw, internal_date=received_at)

    def state(self) -> object:
        return (self.server.flags(self.user.name), self.server.status(self.user.name))

    def lose_cursor(self) -> None:
        self.server.set_uidvalidity(self.user.name, "INBOX",
                                    self.server.uidvalidity(self.user.name) + 1000)


@pytest.fixture
def provider(dovecot: Dovecot, imap_user: ImapUser, tmp_path: Path) -> DovecotMailbox:
    return DovecotMailbox(dovecot, imap_user, tmp_path)


class TestImapContract(PullSourceContract):
    """Dovecot passes the pull contract."""


def _poll(engine: Engine, provider: DovecotMailbox, mailbox: Mailbox) -> PollReport:
    return Poller(engine, mailbox, provider.source(mailbox), batch_size=2,
                  retry=FAST_RETRY).poll()


def test_wrong_password_needs_reauth_once_then_recovers(
        engine: Engine, provider: DovecotMailbox, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused login marks the mailbox needs_reauth (keeping its checkpoint) and logs the
    error once; with the right password again it recovers and imports what came meanwhile."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.password_file.write_text("wrong-password\n")
    provider.deliver(message("while locked out"))
    capsys.readouterr()
    first = _poll(engine, provider, mailbox)
    second = _poll(engine, provider, mailbox)
    assert first.status == second.status == "needs_reauth"
    captured = capsys.readouterr()
    logged = [line for line in (captured.out + captured.err).splitlines()
              if "mailbox.needs_reauth" in line and "error" in line.split("]")[0]]
    assert len(logged) == 1, logged
    assert "refused" in (first.error or "")
    assert "wrong-password" not in (first.error or "")
    row = state_row(engine, mailbox.name)
    assert row.status == "needs_reauth" and row.last_error
    provider.password_file.write_text(provider.user.password)
    again = _poll(engine, provider, mailbox)
    assert again.status == "ok" and again.imported == 1
    assert state_row(engine, mailbox.name).status == "ok"
    assert [r.subject for r in stored(engine, mailbox.name)] == ["while locked out"]


def test_implicit_tls_and_starttls_with_a_private_ca(
        engine: Engine, provider: DovecotMailbox, dovecot: Dovecot) -> None:
    """Both TLS modes connect to a server whose certificate only ``ca_file`` vouches for."""
    for tls, port in (("implicit", dovecot.tls_port), ("starttls", dovecot.port)):
        mailbox = provider.mailbox(imap={"tls": tls, "port": port, "ca_file": dovecot.ca_file})
        report = _poll(engine, provider, mailbox)
        assert report.status == "ok", report


def test_an_unknown_certificate_is_an_error_not_a_connection(
        engine: Engine, provider: DovecotMailbox, dovecot: Dovecot) -> None:
    """Without the CA the certificate does not verify: the poll fails, nothing is sent."""
    mailbox = provider.mailbox(imap={"tls": "implicit", "port": dovecot.tls_port})
    report = _poll(engine, provider, mailbox)
    assert report.status == "error"
    assert "CERTIFICATE_VERIFY_FAILED" in (report.error or "") or "certificate" in (
        report.error or "").lower()


def test_a_missing_folder_is_reported(engine: Engine, provider: DovecotMailbox) -> None:
    """A configured folder the server does not have is named in the mailbox's error."""
    mailbox = provider.mailbox(imap={"folders": ["INBOX", "Nope"]})
    report = _poll(engine, provider, mailbox)
    assert report.status == "error" and "Nope" in (report.error or "")


def test_other_folders_and_non_ascii_names(
        engine: Engine, provider: DovecotMailbox, dovecot: Dovecot) -> None:
    """Each folder keeps its own checkpoint; a non-ASCII folder name works (modified UTF-7)."""
    dovecot.create_folder(provider.user.name, "Ventes/Clients é")
    mailbox = provider.mailbox(imap={"folders": ["INBOX", "Ventes/Clients é"]})
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message("in the inbox"))
    # The helper's APPEND takes the name as it goes on the wire.
    dovecot.append(provider.user.name, message("in the folder"),
                   modified_utf7("Ventes/Clients é"))
    report = _poll(engine, provider, mailbox)
    assert report.imported == 2, report
    assert sorted(r.subject for r in stored(engine, mailbox.name)) == ["in the folder",
                                                                      "in the inbox"]


def test_the_server_going_away_mid_fetch_loses_and_doubles_nothing(
        engine: Engine, provider: DovecotMailbox, imap_proxy: FaultProxy) -> None:
    """A connection reset inside a message literal is retried within the poll; every message
    ends up stored once, byte-exact."""
    mailbox = provider.mailbox(imap={"port": imap_proxy.port})
    assert _poll(engine, provider, mailbox).status == "ok"
    raws = [message() for _ in range(5)]
    for raw in raws:
        provider.deliver(raw)
    imap_proxy.cut_after(40, after=b"BODY[] {")
    report = _poll(engine, provider, mailbox)
    assert imap_proxy.cuts == 1
    assert report.status == "ok" and report.imported == 5, report
    assert sorted(bytes(r.raw) for r in stored(engine, mailbox.name)) == sorted(raws)


def test_a_server_that_stays_away_is_an_error_and_keeps_the_checkpoint(
        engine: Engine, provider: DovecotMailbox, imap_proxy: FaultProxy) -> None:
    """Every attempt cut: status error with the reason; the next good poll imports all."""
    mailbox = provider.mailbox(imap={"port": imap_proxy.port, "timeout_seconds": 1})
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message())
    imap_proxy.stall()
    report = _poll(engine, provider, mailbox)
    assert report.status == "error" and "127.0.0.1" in (report.error or "")
    assert state_row(engine, mailbox.name).status == "error"
    imap_proxy.resume()
    imap_proxy.drop_all()
    again = _poll(engine, provider, mailbox)
    assert again.status == "ok" and again.imported == 1


def test_the_same_mail_by_smtp_and_by_imap_is_one_ticket(
        engine: Engine, provider: DovecotMailbox) -> None:
    """A message stored from SMTP and pulled again from the mailbox (with the extra trace
    header the mailbox server adds) makes one ticket and one duplicate row."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    raw = message("Printer on fire")
    commit_messages(engine, [NewMessage(source="smtp", source_key=content_key(raw),
                                        mailbox=mailbox.name, raw=raw)])
    provider.deliver(b"Delivered-To: nina@example.com\r\n" + raw)
    assert _poll(engine, provider, mailbox).imported == 1
    settings = IngestdSettings(mailboxes=(mailbox,), database=DatabaseSettings(
        url=engine.url.render_as_string(hide_password=False)))
    process_all(engine, settings)
    rows = stored(engine, mailbox.name)
    assert sorted(r.status for r in rows) == ["duplicate", "processed"]
    assert len({r.ticket_id for r in rows if r.ticket_id}) == 1


def test_a_message_over_the_size_limit_is_left_at_the_source(
        engine: Engine, provider: DovecotMailbox, capsys: pytest.CaptureFixture[str]) -> None:
    """A message larger than smtp.max_message_size is not downloaded; it is logged with its
    size, the messages around it are imported, and the next poll does not try it again."""
    mailbox = provider.mailbox()
    poller = Poller(engine, mailbox, provider.source(mailbox), batch_size=2,
                    retry=FAST_RETRY, max_message_bytes=4096)
    assert poller.poll().status == "ok"
    provider.deliver(message("small before"))
    provider.deliver(message("x" * 10) + b"y" * 10_000 + b"\r\n")
    provider.deliver(message("small after"))
    report = poller.poll()
    assert (report.status, report.imported, report.too_large) == ("ok", 2, 1)
    captured = capsys.readouterr()  # stderr once a CLI test configured logging there
    assert "mailbox.message_too_large" in captured.out + captured.err
    assert sorted(r.subject for r in stored(engine, mailbox.name)) == ["small after",
                                                                      "small before"]
    assert poller.poll().too_large == 0


def test_the_password_can_come_from_the_environment(
        engine: Engine, provider: DovecotMailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """password_env names a variable read at each connection; unset, it is needs_reauth."""
    mailbox = provider.mailbox(imap={"password_file": None, "password_env": "NINA_IMAP_PW"})
    monkeypatch.delenv("NINA_IMAP_PW", raising=False)
    report = _poll(engine, provider, mailbox)
    assert report.status == "needs_reauth" and "NINA_IMAP_PW" in (report.error or "")
    monkeypatch.setenv("NINA_IMAP_PW", provider.user.password)
    assert _poll(engine, provider, mailbox).status == "ok"
