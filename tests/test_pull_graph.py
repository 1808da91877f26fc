"""The Microsoft 365 source through the real msal and requests, against an Entra ID and
Microsoft Graph fake over HTTPS on 127.0.0.1: the pull contract, then Graph's own cases."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ingestd.config.settings import Mailbox
from ingestd.intake.sources.graph import GraphSource
from ingestd.intake.sources.poll import Poller, PollReport
from ingestd.intake.sources.pull import PullSource
from ingestd.intake.sources.retry import RetryPolicy
from tests.graphfake import GraphFake
from tests.pull_contract import (
    FAST_RETRY,
    PullSourceContract,
    message,
    sqlite_engine,
    state_row,
    stored,
)

__all__ = ["sqlite_engine"]  # the `engine` fixture of the Graph-only tests below

_numbers = itertools.count(1)


class GraphMailbox:
    """One user's mailbox at the fake, pulled with the app's client secret from a file."""

    def __init__(self, fake: GraphFake, directory: Path) -> None:
        n = next(_numbers)
        self.fake = fake
        self.user = f"sales{n}@contoso.example"
        self.name = f"graph-{n}"
        fake.add_user(self.user)
        self.secret_file = directory / f"secret{n}.txt"
        self.secret_file.write_text(fake.client_secret + "\n")

    def mailbox(self, **settings: Any) -> Mailbox:
        graph = {"tenant_id": self.fake.tenant, "client_id": self.fake.client_id,
                 "client_secret_file": str(self.secret_file), "user": self.user,
                 "authority": self.fake.base_url, "graph_url": self.fake.base_url,
                 "ca_file": self.fake.ca_file, "timeout_seconds": 5,
                 **settings.pop("graph", {})}
        return Mailbox.model_validate({
            "name": self.name, "addresses": [self.user], "source": "graph",
            "poll_interval": 5, "graph": graph, **settings})

    def source(self, mailbox: Mailbox) -> PullSource:
        assert mailbox.graph is not None
        return GraphSource(mailbox.graph)

    def deliver(self, raw: bytes, received_at: datetime | None = None) -> None:
        self.fake.deliver(self.user, raw, received_at=received_at)

    def state(self) -> object:
        return [(r.method, r.path) for r in self.fake.writes()]

    def lose_cursor(self) -> None:
        self.fake.expire_delta(self.user)


@pytest.fixture
def provider(graph_fake: GraphFake, tmp_path: Path) -> GraphMailbox:
    return GraphMailbox(graph_fake, tmp_path)


class TestGraphContract(PullSourceContract):
    """The Microsoft 365 source passes the pull contract."""


def _poller(engine: Engine, provider: GraphMailbox, mailbox: Mailbox,
            retry: RetryPolicy = FAST_RETRY) -> Poller:
    return Poller(engine, mailbox, provider.source(mailbox), batch_size=2, retry=retry)


def _poll(engine: Engine, provider: GraphMailbox, mailbox: Mailbox,
          retry: RetryPolicy = FAST_RETRY) -> PollReport:
    return _poller(engine, provider, mailbox, retry).poll()


def test_delta_pages_are_followed_with_immutable_ids(
        engine: Engine, provider: GraphMailbox) -> None:
    """Seven new messages over pages of two arrive in order, once; every Graph call asked
    for immutable ids."""
    provider.fake.page_size = 2
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    raws = [message(f"paged {i}") for i in range(7)]
    for raw in raws:
        provider.deliver(raw)
    report = _poll(engine, provider, mailbox)
    assert (report.status, report.imported) == ("ok", 7), report
    assert [bytes(r.raw) for r in stored(engine, mailbox.name)] == raws
    graph_calls = [r for r in provider.fake.requests if "/v1.0/" in r.path]
    assert graph_calls and all('IdType="ImmutableId"' in r.headers.get("prefer", "")
                               for r in graph_calls)


def test_a_410_resync_reimports_nothing_old(engine: Engine, provider: GraphMailbox) -> None:
    """410 with a Location (and the syncStateNotFound variant) relists the lookback window;
    what is stored is not fetched again."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message("before"))
    assert _poll(engine, provider, mailbox).imported == 1
    for how in ("410", "syncStateNotFound"):
        provider.fake.expire_delta(provider.user, how=how)
        report = _poll(engine, provider, mailbox)
        assert report.status == "ok" and report.resynced and report.imported == 0, report
    provider.deliver(message("after"))
    assert _poll(engine, provider, mailbox).imported == 1
    assert [r.subject for r in stored(engine, mailbox.name)] == ["before", "after"]


def test_throttling_waits_as_asked(engine: Engine, provider: GraphMailbox) -> None:
    """429 with Retry-After: the next request waits that long; 503 then success."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message())
    provider.fake.fail_next("GET", r"/delta$", 429, headers={"Retry-After": "1"})
    patient = RetryPolicy(attempts=3, first_wait=0.01, max_wait=5)
    started = time.monotonic()
    report = _poll(engine, provider, mailbox, patient)
    assert (report.status, report.imported) == ("ok", 1), report
    assert time.monotonic() - started >= 1.0
    provider.deliver(message())
    provider.fake.fail_next("GET", r"/\$value$", 503)
    assert _poll(engine, provider, mailbox).imported == 1


def test_an_unreachable_authority_is_temporary(engine: Engine, provider: GraphMailbox) -> None:
    """The authority down when msal is built: the mailbox is `error`, not needs_reauth, and
    the next poll recovers."""
    mailbox = provider.mailbox()
    poller = _poller(engine, provider, mailbox)
    provider.fake.stop_authority()
    report = poller.poll()
    assert report.status == "error", report
    provider.fake.start_authority()
    assert poller.poll().status == "ok"


def test_an_expired_token_is_replaced(engine: Engine, provider: GraphMailbox) -> None:
    """Graph's 401 for a token it no longer takes: a new one is fetched and the call repeated."""
    mailbox = provider.mailbox()
    poller = _poller(engine, provider, mailbox)
    assert poller.poll().status == "ok"
    provider.deliver(message())
    provider.fake.expire_access_tokens()
    report = poller.poll()
    assert (report.status, report.imported) == ("ok", 1), report


def test_a_refused_client_needs_reauth_then_recovers(
        engine: Engine, provider: GraphMailbox) -> None:
    """invalid_client (a wrong or expired secret): needs_reauth, the secret never shown;
    accepted again, the mailbox recovers."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.fake.reject_client()
    provider.deliver(message("meanwhile"))
    report = _poll(engine, provider, mailbox)
    assert report.status == "needs_reauth" and "invalid_client" in (report.error or "")
    assert provider.fake.client_secret not in (report.error or "")
    assert state_row(engine, mailbox.name).status == "needs_reauth"
    provider.fake.accept_client()
    again = _poll(engine, provider, mailbox)
    assert (again.status, again.imported) == ("ok", 1)


def test_a_message_deleted_before_its_fetch_is_skipped(
        engine: Engine, provider: GraphMailbox) -> None:
    """Listed by the delta round, gone when its MIME is asked for (404): skipped, the rest
    imported, the poll ok."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message("deleted"))
    provider.deliver(message("kept"))
    provider.fake.fail_next("GET", r"/\$value$", 404,
                            body={"error": {"code": "ErrorItemNotFound", "message": "gone"}})
    report = _poll(engine, provider, mailbox)
    assert (report.status, report.imported) == ("ok", 1), report
    assert [r.subject for r in stored(engine, mailbox.name)] == ["kept"]


def test_secret_expiry_is_reported_ahead(
        engine: Engine, provider: GraphMailbox, capsys: pytest.CaptureFixture[str]) -> None:
    """secret_expires within 30 days: a warning event at the poll."""
    from datetime import UTC, timedelta

    soon = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    mailbox = provider.mailbox(graph={"secret_expires": soon})
    assert _poll(engine, provider, mailbox).status == "ok"
    captured = capsys.readouterr()
    assert "mailbox.secret_expiring" in captured.out + captured.err
    from ingestd.config.settings import IngestdSettings
    from ingestd.services.mailboxes import mailbox_records

    with engine.connect() as conn:
        records = mailbox_records(conn, IngestdSettings(mailboxes=(mailbox,)),
                                  datetime.now(UTC))
    assert records[0]["secret_expires_in_days"] == 10


def test_a_certificate_credential_works(
        engine: Engine, provider: GraphMailbox, tmp_path: Path) -> None:
    """certificate_file + certificate_thumbprint instead of a secret: msal signs a client
    assertion with the key, and the mailbox polls."""
    key, thumbprint = provider.fake.certificate_credential(tmp_path)
    mailbox = provider.mailbox(graph={"client_secret_file": None, "certificate_file": str(key),
                                      "certificate_thumbprint": thumbprint})
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message("signed for"))
    assert _poll(engine, provider, mailbox).imported == 1
    token_calls = provider.fake.token_requests()
    assert token_calls and b"client_assertion=" in token_calls[-1].body


def test_an_unfetchable_message_is_passed_by_after_five_polls(
        engine: Engine, provider: GraphMailbox, capsys: pytest.CaptureFixture[str]) -> None:
    """A message whose MIME the server never serves (Exchange's 500 for a corrupt item)
    holds up its folder for five polls, then is passed by with an error event; the mail
    after it is imported. Each poll counts once, however many retries it makes."""
    import re

    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    poison = provider.fake.deliver(provider.user, message("corrupt item"))
    provider.deliver(message("later, fine"))
    provider.fake.fail_next("GET", re.escape(poison[-16:]) + r".*\$value$", 500, times=1000)
    reports = [_poll(engine, provider, mailbox) for _ in range(5)]
    assert [r.status for r in reports] == ["error"] * 4 + ["ok"], reports
    assert reports[-1].unfetchable == 1
    assert [r.subject for r in stored(engine, mailbox.name)] == ["later, fine"]
    captured = capsys.readouterr()
    assert "mailbox.message_unfetchable" in captured.out + captured.err
