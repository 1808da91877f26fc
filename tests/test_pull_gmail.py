"""The Gmail source through the real google-api-python-client and google-auth, against a
Gmail API and token endpoint fake on 127.0.0.1: the pull contract, then Gmail's own cases."""

from __future__ import annotations

import itertools
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ingestd.config.settings import Mailbox
from ingestd.intake.sources.gmail import GmailSource
from ingestd.intake.sources.poll import Poller, PollReport
from ingestd.intake.sources.pull import PullSource
from ingestd.intake.sources.retry import RetryPolicy
from tests.gmailfake import GmailFake
from tests.pull_contract import (
    FAST_RETRY,
    PullSourceContract,
    message,
    sqlite_engine,
    state_row,
    stored,
)
from tests.support.waiting import wait_for

__all__ = ["sqlite_engine"]  # the `engine` fixture of the Gmail-only tests below

_numbers = itertools.count(1)


class GmailMailbox:
    """One user's mailbox at the fake, as a pulled mailbox (service account or OAuth)."""

    def __init__(self, fake: GmailFake, directory: Path, *, oauth: bool = False) -> None:
        n = next(_numbers)
        self.fake = fake
        self.email = f"agent{n}@corp.example"
        self.name = f"gmail-{n}"
        fake.add_user(self.email)
        if oauth:
            self.settings: dict[str, Any] = {
                "credentials_file": str(directory / f"client{n}.json"),
                "token_file": str(fake.authorized_user_file(directory / f"token{n}.json",
                                                           self.email))}
        else:
            self.settings = {
                "credentials_file": str(fake.service_account_file(directory / f"sa{n}.json")),
                "subject": self.email}
        self.settings.update(api_endpoint=fake.base_url, token_uri=fake.token_uri,
                             timeout_seconds=5)

    def mailbox(self, **settings: Any) -> Mailbox:
        gmail = {**self.settings, **settings.pop("gmail", {})}
        return Mailbox.model_validate({
            "name": self.name, "addresses": [self.email], "source": "gmail",
            "poll_interval": 5, "gmail": gmail, **settings})

    def source(self, mailbox: Mailbox) -> PullSource:
        assert mailbox.gmail is not None
        return GmailSource(mailbox.gmail)

    def deliver(self, raw: bytes, received_at: datetime | None = None) -> None:
        self.fake.deliver(self.email, raw, internal_date=received_at)

    def state(self) -> object:
        return [(r.method, r.path) for r in self.fake.writes()]

    def lose_cursor(self) -> None:
        self.fake.expire_history(self.email)


@pytest.fixture
def provider(gmail_fake: GmailFake, tmp_path: Path) -> GmailMailbox:
    return GmailMailbox(gmail_fake, tmp_path)


class TestGmailContract(PullSourceContract):
    """The Gmail source passes the pull contract."""


def _poll(engine: Engine, provider: GmailMailbox, mailbox: Mailbox,
          retry: RetryPolicy = FAST_RETRY) -> PollReport:
    return Poller(engine, mailbox, provider.source(mailbox), batch_size=2, retry=retry).poll()


def test_history_pages_are_followed(engine: Engine, provider: GmailMailbox) -> None:
    """With two entries per page, seven new messages all arrive, in order, once."""
    provider.fake.page_size = 2
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    raws = [message(f"paged {i}") for i in range(7)]
    for raw in raws:
        provider.deliver(raw)
    report = _poll(engine, provider, mailbox)
    assert (report.status, report.imported) == ("ok", 7)
    assert [bytes(r.raw) for r in stored(engine, mailbox.name)] == raws
    history_calls = [r for r in provider.fake.requests if r.path.endswith("/history")]
    assert len(history_calls) >= 4


def test_rate_limits_wait_as_asked_then_succeed(engine: Engine, provider: GmailMailbox) -> None:
    """429 with Retry-After and 403 rateLimitExceeded are temporary: the next request waits
    the time asked, and the poll succeeds."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message())
    provider.fake.fail_next("GET", r"/history$", 429, headers={"Retry-After": "1"}, body={
        "error": {"code": 429, "message": "Rate Limit Exceeded", "errors": [
            {"domain": "usageLimits", "reason": "rateLimitExceeded"}]}})
    patient = RetryPolicy(attempts=3, first_wait=0.01, max_wait=5)
    started = time.monotonic()
    report = _poll(engine, provider, mailbox, patient)
    assert report.status == "ok" and report.imported == 1, report
    assert time.monotonic() - started >= 1.0
    provider.deliver(message())
    provider.fake.fail_next("GET", r"/messages/[^/]+$", 403, body={
        "error": {"code": 403, "message": "User Rate Limit Exceeded", "errors": [
            {"domain": "usageLimits", "reason": "userRateLimitExceeded"}]}})
    assert _poll(engine, provider, mailbox, patient).imported == 1


def test_server_errors_are_retried(engine: Engine, provider: GmailMailbox) -> None:
    """A 503 then success within one poll; persistent 500s make the mailbox `error`."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message())
    provider.fake.fail_next("GET", r"/history$", 503)
    assert _poll(engine, provider, mailbox).imported == 1
    provider.deliver(message())
    provider.fake.fail_next("GET", r"/history$", 500, times=10)
    report = _poll(engine, provider, mailbox)
    assert report.status == "error" and "500" in (report.error or "")
    assert state_row(engine, mailbox.name).status == "error"


def test_an_expired_access_token_is_refreshed(engine: Engine, provider: GmailMailbox) -> None:
    """A 401 mid-run makes google-auth fetch a new token and repeat the call."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message())
    provider.fake.expire_access_tokens()
    report = _poll(engine, provider, mailbox)
    assert (report.status, report.imported) == ("ok", 1)


@pytest.mark.parametrize("oauth", [False, True], ids=["service-account", "oauth"])
def test_a_revoked_grant_needs_reauth_then_recovers(
        engine: Engine, gmail_fake: GmailFake, tmp_path: Path, oauth: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    """invalid_grant at the token endpoint: needs_reauth (checkpoint kept); granted again,
    the next poll imports what arrived meanwhile."""
    provider = GmailMailbox(gmail_fake, tmp_path, oauth=oauth)
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    gmail_fake.revoke()
    gmail_fake.expire_access_tokens()
    provider.deliver(message("meanwhile"))
    report = _poll(engine, provider, mailbox)
    assert report.status == "needs_reauth", report
    assert "invalid_grant" in (report.error or "")
    gmail_fake.restore()
    again = _poll(engine, provider, mailbox)
    assert (again.status, again.imported) == ("ok", 1)
    assert [r.subject for r in stored(engine, mailbox.name)] == ["meanwhile"]


def test_a_message_deleted_before_its_fetch_is_skipped(
        engine: Engine, provider: GmailMailbox) -> None:
    """Listed by the history but gone when fetched (404): skipped, the rest imported."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message("kept 1"))
    doomed = provider.fake.deliver(provider.email, message("deleted"))
    provider.deliver(message("kept 2"))
    provider.fake.delete(provider.email, doomed)
    report = _poll(engine, provider, mailbox)
    assert (report.status, report.imported) == ("ok", 2)
    assert sorted(r.subject for r in stored(engine, mailbox.name)) == ["kept 1", "kept 2"]


def test_other_labels_can_be_polled(engine: Engine, provider: GmailMailbox) -> None:
    """`labels` names what is imported: mail a filter files under a label arrives too."""
    mailbox = provider.mailbox(gmail={"labels": ["INBOX", "Label_7"]})
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.fake.deliver(provider.email, message("filed"), labels=("Label_7",))
    provider.fake.deliver(provider.email, message("not polled"), labels=("Label_9",))
    provider.deliver(message("inbox"))
    report = _poll(engine, provider, mailbox)
    assert report.imported == 2
    assert sorted(r.subject for r in stored(engine, mailbox.name)) == ["filed", "inbox"]


def test_mailboxes_auth_by_paste_stores_a_private_token_that_polls(
        tmp_path: Path, gmail_fake: GmailFake, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`ingestd mailboxes auth NAME --paste`: the consent URL is shown, the pasted redirect
    address is exchanged for a refresh token, the token file is written 0600, and the
    mailbox polls with it."""
    import io
    import json
    import stat
    import sys
    from urllib.parse import parse_qs, urlparse

    from ingestd.cli.main import main
    from tests.conftest import base_config, write_config

    email = "nina@corp.example"
    gmail_fake.add_user(email)
    code = gmail_fake.authorization_code(email)
    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["mailboxes"].append({
        "name": "sales-nina", "addresses": [email], "source": "gmail",
        "gmail": {"credentials_file": str(gmail_fake.client_file(tmp_path / "client.json")),
                  "token_file": str(tmp_path / "secrets" / "nina-token.json"),
                  "api_endpoint": gmail_fake.base_url, "token_uri": gmail_fake.token_uri}})
    path = write_config(tmp_path, config)
    shown = io.StringIO()

    class Browser:
        """Consents on the printed page, then 'pastes' the address it was sent to."""

        def readline(self) -> str:
            url = next(w for w in shown.getvalue().split() if "client_id=" in w)
            query = parse_qs(urlparse(url).query)
            assert query["access_type"] == ["offline"]
            assert query["scope"] == ["https://www.googleapis.com/auth/gmail.readonly"]
            return (f"{query['redirect_uri'][0]}?state={query['state'][0]}&code={code}"
                    "&scope=https://www.googleapis.com/auth/gmail.readonly\n")

    # Run as root for a service user: the token goes to that user (the directory's owner).
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    if os.geteuid() == 0:
        os.chown(secrets_dir, 65534, 65534)
    # oauthlib refuses plain-http token endpoints; the fake is one.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.setattr(sys, "stderr", shown)
    monkeypatch.setattr(sys, "stdin", Browser())
    assert main(["mailboxes", "auth", "sales-nina", "--paste", "--config", str(path)]) == 0
    token_file = tmp_path / "secrets" / "nina-token.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    if os.geteuid() == 0:
        assert (token_file.stat().st_uid, token_file.stat().st_gid) == (65534, 65534)
    assert json.loads(token_file.read_text())["refresh_token"].startswith("1//")
    assert "stored the refresh token" in capsys.readouterr().out
    monkeypatch.undo()
    gmail_fake.deliver(email, message("after consent"))
    assert main(["mailboxes", "poll", "sales-nina", "--config", str(path)]) == 0


def test_a_slow_answer_times_out_and_is_retried(engine: Engine, provider: GmailMailbox) -> None:
    """An API call slower than timeout_seconds is abandoned and retried within the poll."""
    mailbox = provider.mailbox(gmail={"timeout_seconds": 0.5})
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message("late"))
    provider.fake.delay_next("GET", r"/history$", 2.0)
    report = _poll(engine, provider, mailbox)
    assert (report.status, report.imported) == ("ok", 1), report


def test_mailboxes_auth_with_a_browser_on_this_machine(
        tmp_path: Path, gmail_fake: GmailFake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --paste a local server on the given port receives the browser's redirect,
    the code is exchanged, and the token file is stored."""
    import io
    import sys
    import urllib.request
    from urllib.parse import parse_qs, urlparse

    from ingestd.cli.main import main
    from tests.conftest import base_config, write_config
    from tests.support.postgres import free_port

    email = "local@corp.example"
    gmail_fake.add_user(email)
    code = gmail_fake.authorization_code(email)
    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    token_file = tmp_path / "token.json"
    config["mailboxes"].append({
        "name": "sales-local", "addresses": [email], "source": "gmail",
        "gmail": {"credentials_file": str(gmail_fake.client_file(tmp_path / "client.json")),
                  "token_file": str(token_file), "api_endpoint": gmail_fake.base_url,
                  "token_uri": gmail_fake.token_uri}})
    path = write_config(tmp_path, config)
    port = free_port()
    printed = io.StringIO()
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.setattr(sys, "stdout", printed)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    result: list[int] = []
    command = threading.Thread(target=lambda: result.append(main(
        ["mailboxes", "auth", "sales-local", "--port", str(port), "--config", str(path)])))
    command.start()
    try:
        url = wait_for(lambda: next((w for w in printed.getvalue().split()
                                     if "client_id=" in w), None), 10, "the consent URL")
        query = parse_qs(urlparse(url).query)
        assert query["redirect_uri"] == [f"http://127.0.0.1:{port}/"]
        browser = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with browser.open(f"http://127.0.0.1:{port}/?state={query['state'][0]}&code={code}"
                          "&scope=https://www.googleapis.com/auth/gmail.readonly",
                          timeout=10) as answer:
            assert answer.status == 200
    finally:
        command.join(20)
    assert result == [0]
    assert token_file.exists() and "refresh_token" in token_file.read_text()
