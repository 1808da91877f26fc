"""IMAP pulls that log in with SASL XOAUTH2, end to end against a real Dovecot.

Dovecot asks a local introspection endpoint about every token (tests.oauthfake), so a
token is good exactly while the test has granted it. The access token is a secret like a
password: whatever goes wrong, it must not end up in a report, the database or the log.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ingestd.config.settings import Mailbox
from ingestd.intake.sources.imap import ImapSource
from ingestd.intake.sources.imap_client import xoauth2
from ingestd.intake.sources.poll import Poller, PollReport
from tests.imapserver import Dovecot, ImapUser
from tests.oauthfake import IntrospectionFake
from tests.pull_contract import FAST_RETRY, message, sqlite_engine, state_row, stored

__all__ = ["sqlite_engine"]  # the `engine` fixture

_names = itertools.count(1)


class OAuthMailbox:
    """One user's INBOX on the OAuth Dovecot, pulled with the token in ``token_file``."""

    def __init__(self, server: Dovecot, user: ImapUser, directory: Path) -> None:
        assert server.oauth is not None
        self.server = server
        self.oauth: IntrospectionFake = server.oauth
        self.user = user
        self.token_file = directory / f"{user.name}.token"
        self.name = f"xoauth-{next(_names)}"

    def new_token(self) -> str:
        """A token granted to this user, written to the token file as a refresher would."""
        token = f"ya29.{secrets.token_urlsafe(24)}"
        self.oauth.grant(token, self.user.name)
        self.token_file.write_text(token + "\n")
        return token

    def mailbox(self) -> Mailbox:
        return Mailbox.model_validate({
            "name": self.name, "addresses": [f"{self.name}@example.com"], "source": "imap",
            "poll_interval": 5,
            "imap": {"host": self.server.host, "port": self.server.port, "tls": "none",
                     "username": self.user.name, "auth": "xoauth2",
                     "token_file": str(self.token_file), "timeout_seconds": 5}})

    def deliver(self, raw: bytes) -> None:
        self.server.append(self.user.name, raw)


@pytest.fixture
def provider(dovecot_oauth: Dovecot, oauth_user: ImapUser, tmp_path: Path) -> OAuthMailbox:
    return OAuthMailbox(dovecot_oauth, oauth_user, tmp_path)


def _poll(engine: Engine, mailbox: Mailbox) -> PollReport:
    assert mailbox.imap is not None
    return Poller(engine, mailbox, ImapSource(mailbox.imap), batch_size=2,
                  retry=FAST_RETRY).poll()


def _everything_said(report: PollReport, row: Any, capsys: pytest.CaptureFixture[str],
                     caplog: pytest.LogCaptureFixture) -> str:
    """The report, the mailbox_states row and every log line, as one text to search."""
    captured = capsys.readouterr()
    return "\n".join([repr(report), repr(report.record()), repr(tuple(row)),
                      captured.out, captured.err, caplog.text])


def test_a_granted_token_logs_in_and_new_mail_arrives_byte_exact(
        engine: Engine, provider: OAuthMailbox) -> None:
    """With a token the provider accepts, the first poll is ok and later mail is imported
    with the bytes the server holds; the server really checked that token."""
    token = provider.new_token()
    provider.deliver(message("before the first poll"))
    mailbox = provider.mailbox()
    first = _poll(engine, mailbox)
    assert first.status == "ok", first
    assert first.imported == 0
    assert token in provider.oauth.requests

    raws = [message("first pulled"), message("second pulled"), message("third pulled")]
    for raw in raws:
        provider.deliver(raw)
    second = _poll(engine, mailbox)
    assert second.status == "ok" and second.imported == 3, second
    assert sorted(bytes(r.raw) for r in stored(engine, mailbox.name)) == sorted(raws)
    assert state_row(engine, mailbox.name).status == "ok"


def test_a_revoked_token_needs_reauth_and_is_never_repeated(
        engine: Engine, provider: OAuthMailbox, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A token the provider no longer accepts marks the mailbox needs_reauth after one
    login attempt (no retries against a refusal), and the token appears nowhere."""
    caplog.set_level(logging.DEBUG)
    mailbox = provider.mailbox()
    token = provider.new_token()
    assert _poll(engine, mailbox).status == "ok"
    provider.oauth.revoke(token)
    asked = len(provider.oauth.requests)
    capsys.readouterr()
    caplog.clear()

    report = _poll(engine, mailbox)

    assert report.status == "needs_reauth", report
    assert "refused" in (report.error or "") and provider.user.name in (report.error or "")
    # The server's own verdict, which it gives only once the client has answered its error
    # challenge with an empty line (cancelling with "*" instead gets BAD "aborted by client").
    assert "AUTHENTICATIONFAILED" in (report.error or "")
    assert provider.oauth.requests[asked:] == [token]
    row = state_row(engine, mailbox.name)
    assert row.status == "needs_reauth" and row.last_error
    said = _everything_said(report, row, capsys, caplog)
    assert "mailbox.needs_reauth" in said
    assert token not in said


def test_an_unknown_token_needs_reauth_without_showing_it(
        engine: Engine, provider: OAuthMailbox, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """A token the provider never issued is refused on the very first poll."""
    caplog.set_level(logging.DEBUG)
    unknown = f"ya29.never-granted-{secrets.token_hex(8)}"
    provider.token_file.write_text(unknown)
    mailbox = provider.mailbox()

    report = _poll(engine, mailbox)

    assert report.status == "needs_reauth", report
    assert unknown in provider.oauth.requests
    row = state_row(engine, mailbox.name)
    assert row.status == "needs_reauth"
    assert unknown not in _everything_said(report, row, capsys, caplog)


def test_a_refreshed_token_file_recovers_without_restart(
        engine: Engine, provider: OAuthMailbox) -> None:
    """The token file is read at every connection: once a refresher writes a good token,
    the next poll of the same source logs in and imports what came meanwhile."""
    mailbox = provider.mailbox()
    assert mailbox.imap is not None
    source = ImapSource(mailbox.imap)
    poller = Poller(engine, mailbox, source, batch_size=2, retry=FAST_RETRY)
    old = provider.new_token()
    assert poller.poll().status == "ok"
    provider.oauth.revoke(old)
    provider.deliver(message("while the token was expired"))
    assert poller.poll().status == "needs_reauth"

    fresh = provider.new_token()
    again = poller.poll()

    assert again.status == "ok" and again.imported == 1, again
    assert provider.oauth.requests[-1] == fresh
    assert state_row(engine, mailbox.name).status == "ok"
    assert [r.subject for r in stored(engine, mailbox.name)] == ["while the token was expired"]


def test_a_missing_token_file_needs_reauth_naming_the_file(
        engine: Engine, provider: OAuthMailbox) -> None:
    """No token file: nothing is sent to the server, and the error says which file."""
    mailbox = provider.mailbox()
    asked = len(provider.oauth.requests)

    report = _poll(engine, mailbox)

    assert report.status == "needs_reauth", report
    assert str(provider.token_file) in (report.error or "")
    assert str(provider.token_file) in state_row(engine, mailbox.name).last_error
    assert len(provider.oauth.requests) == asked


def test_the_xoauth2_answers_are_the_initial_response_then_an_empty_line() -> None:
    """RFC 7628 / Google's XOAUTH2: the first answer carries user and token; the answer to
    the server's error challenge (base64 JSON) must be empty, never the token again."""
    answer = xoauth2("nina@example.com", "ya29.secret")
    assert answer(b"") == b"user=nina@example.com\x01auth=Bearer ya29.secret\x01\x01"
    assert answer(b'{"status":"401","schemes":"bearer","scope":"mail"}') == b""
