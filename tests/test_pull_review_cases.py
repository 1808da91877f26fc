"""The Gmail and Microsoft 365 sources against what a review found: mail moved into INBOX
later, sizes checked before downloading, quota 403s, a stop during a hanging call or a long
delta round, a rotated secret file, Retry-After as a date, msal's own throttle, a bad key."""
from __future__ import annotations

import threading
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from ingestd.intake.sources.poll import Poller
from ingestd.intake.sources.retry import RetryPolicy
from tests.pull_contract import FAST_RETRY, message, sqlite_engine
from tests.test_pull_gmail import GmailMailbox
from tests.test_pull_graph import GraphMailbox

__all__ = ["sqlite_engine"]


# --- Gmail ------------------------------------------------------------------------------

def test_gmail_mail_moved_into_inbox_later_is_imported(
        engine: Engine, gmail_fake: Any, tmp_path: Path) -> None:
    """Mail that arrives in Spam (or archived by a filter) and is moved into INBOX later."""
    p = GmailMailbox(gmail_fake, tmp_path)
    mailbox = p.mailbox()
    assert Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY).poll().status == "ok"
    mid = gmail_fake.deliver(p.email, message("rescued from spam"), labels=("SPAM",))
    gmail_fake.relabel(p.email, mid, add=("INBOX",), remove=("SPAM",))
    report = Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY).poll()
    assert (report.status, report.imported) == ("ok", 1), report


def test_gmail_too_large_is_not_downloaded(
        engine: Engine, gmail_fake: Any, tmp_path: Path) -> None:
    """A message over the limit is measured (format=minimal), never downloaded raw."""
    p = GmailMailbox(gmail_fake, tmp_path)
    mailbox = p.mailbox()
    assert Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY).poll().status == "ok"
    big = message("big") + b"x" * 200_000
    p.deliver(big)
    report = Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY,
                    max_message_bytes=1000).poll()
    assert report.too_large == 1
    raw_gets = [r for r in gmail_fake.requests if r.query.get("format") == ["raw"]]
    assert raw_gets == [], [r.path for r in raw_gets]


def test_gmail_403_daily_limit_is_temporary(
        engine: Engine, gmail_fake: Any, tmp_path: Path) -> None:
    """A 403 for a quota (dailyLimitExceeded) is temporary, not needs_reauth."""
    p = GmailMailbox(gmail_fake, tmp_path)
    mailbox = p.mailbox()
    assert Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY).poll().status == "ok"
    p.deliver(message())
    gmail_fake.fail_next("GET", r"/history$", 403, times=5, body={"error": {
        "code": 403, "message": "Daily Limit Exceeded",
        "errors": [{"domain": "usageLimits", "reason": "dailyLimitExceeded"}]}})
    report = Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY).poll()
    assert report.status == "error", report


def _abort_timing(poller: Poller, arm) -> float:
    done = threading.Event()
    out = []
    t = threading.Thread(target=lambda: (out.append(poller.poll()), done.set()))
    arm()
    t.start()
    time.sleep(0.7)
    started = time.monotonic()
    poller.abort()
    t.join(30)
    print("report", out)
    return time.monotonic() - started


def test_gmail_abort_ends_a_hanging_poll_at_once(
        engine: Engine, gmail_fake: Any, tmp_path: Path) -> None:
    """abort() ends a poll waiting on a slow answer at once; httplib2 may not resend."""
    p = GmailMailbox(gmail_fake, tmp_path)
    mailbox = p.mailbox(gmail={"timeout_seconds": 6})
    assert Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY).poll().status == "ok"
    p.deliver(message())
    poller = Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY)
    took = _abort_timing(poller, lambda: gmail_fake.delay_next("GET", r"/history$", 5, times=3))
    print("history calls", [(r.status) for r in gmail_fake.requests if r.path.endswith("/history")])
    assert took < 1.5, took


# --- Graph ------------------------------------------------------------------------------

def test_graph_abort_ends_a_hanging_poll_at_once(
        engine: Engine, graph_fake: Any, tmp_path: Path) -> None:
    """abort() shuts the socket a Graph call is waiting on."""
    p = GraphMailbox(graph_fake, tmp_path)
    mailbox = p.mailbox(graph={"timeout_seconds": 6})
    assert Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY).poll().status == "ok"
    p.deliver(message())
    poller = Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY)
    took = _abort_timing(poller, lambda: graph_fake.delay_next("GET", r"/delta$", 5))
    assert took < 1.5, took


def test_graph_rotated_secret_file_is_used(
        engine: Engine, graph_fake: Any, tmp_path: Path) -> None:
    """A secret rotated in its file is used by the next poll, without a restart."""
    p = GraphMailbox(graph_fake, tmp_path)
    mailbox = p.mailbox()
    poller = Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY)
    assert poller.poll().status == "ok"
    # The admin adds a new secret in Entra, writes it to the file, deletes the old one.
    graph_fake.client_secret = "fake~rotated-secret"
    p.secret_file.write_text("fake~rotated-secret\n")
    graph_fake.expire_access_tokens()  # an hour later the cached token is gone
    p.deliver(message("after rotation"))
    report = poller.poll()
    assert (report.status, report.imported) == ("ok", 1), report


def test_graph_retry_after_http_date_is_honoured(
        engine: Engine, graph_fake: Any, tmp_path: Path) -> None:
    """A Retry-After given as an HTTP date is waited out."""
    p = GraphMailbox(graph_fake, tmp_path)
    mailbox = p.mailbox()
    assert Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY).poll().status == "ok"
    p.deliver(message())
    graph_fake.fail_next("GET", r"/delta$", 429,
                         headers={"Retry-After": formatdate(time.time() + 3, usegmt=True)})
    patient = RetryPolicy(attempts=3, first_wait=0.01, max_wait=10)
    started = time.monotonic()
    report = Poller(engine, mailbox, p.source(mailbox), retry=patient).poll()
    assert report.status == "ok"
    assert time.monotonic() - started >= 2.0, time.monotonic() - started


def test_graph_token_endpoint_throttle_is_waited_out(
        engine: Engine, graph_fake: Any, tmp_path: Path) -> None:
    """A token endpoint 429: our retries wait out msal's own throttle window."""
    p = GraphMailbox(graph_fake, tmp_path)
    mailbox = p.mailbox()
    poller = Poller(engine, mailbox, p.source(mailbox),
                    retry=RetryPolicy(attempts=4, first_wait=0.05, max_wait=10))
    graph_fake.fail_next("POST", r"/token$", 429, headers={"Retry-After": "3"})
    report = poller.poll()
    print("token requests", len(graph_fake.token_requests()))
    assert report.status == "ok", report


def test_graph_unreadable_private_key_is_needs_reauth(
        engine: Engine, graph_fake: Any, tmp_path: Path) -> None:
    """A certificate key that is not a usable PEM key is needs_reauth, not a crash."""
    p = GraphMailbox(graph_fake, tmp_path)
    key = tmp_path / "bad.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    mailbox = p.mailbox(graph={"client_secret_file": None, "certificate_file": str(key),
                               "certificate_thumbprint": "AB" * 20})
    report = Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY).poll()
    assert report.status == "needs_reauth", report


def test_graph_abort_stops_a_long_delta_round(
        engine: Engine, graph_fake: Any, tmp_path: Path) -> None:
    """abort() ends a first connection walking many delta pages at the next page."""
    p = GraphMailbox(graph_fake, tmp_path)
    for i in range(20):
        p.deliver(message(f"old {i}"))
    graph_fake.page_size = 1
    mailbox = p.mailbox()
    poller = Poller(engine, mailbox, p.source(mailbox), retry=FAST_RETRY)
    took = _abort_timing(poller, lambda: graph_fake.delay_next("GET", r"/delta$", 0.25, times=40))
    pages = len([r for r in graph_fake.graph_requests() if "delta" in r.path])
    print("pages", pages)
    assert took < 1.0, (took, pages)
