"""Protection 2: the tag hijack guard and the closed-ticket policy (the `guard` stage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from tests.conftest import write_config
from tests.processing_env import ProcessingEnv, import_directory, processing_config
from tests.test_rules import mail


def _env(tmp_path: Path, db_url: str, **support: Any) -> ProcessingEnv:
    config = processing_config(db_url, workers=0)
    config["mailboxes"][0].update(support)
    path = write_config(tmp_path, config)
    import_directory(path)
    return ProcessingEnv(path, make_engine(load_settings(path).database), "ingest")


def _opened(env: ProcessingEnv) -> Any:
    raw = (b"From: Alice <alice@acme.example>\r\nTo: support@example.com\r\n"
           b"Subject: Printer broken\r\nMessage-ID: <t1@acme.example>\r\n\r\nIt jams.\r\n")
    return env.deliver("", raw=raw)


def _stranger(env: ProcessingEnv, ticket_id: int, by: str) -> Any:
    if by == "tag":
        return env.deliver("", raw=mail(subject=f"Re: [ID:{ticket_id}] Printer broken",
                                        sender="mallory@evil.example", body="by tag"))
    return env.deliver("", raw=mail(subject="Re: Printer broken", sender="mallory@evil.example",
                                    body="by reference",
                                    extra="In-Reply-To: <t1@acme.example>\r\n"))


@pytest.mark.parametrize("by", ["tag", "reference"])
@pytest.mark.parametrize("policy", ["accept", "new_ticket", "hold"])
def test_the_hijack_guard(tmp_path: Path, sqlite_url: str, policy: str, by: str) -> None:
    """A stranger naming someone's ticket, by tag or by In-Reply-To: accepted (and said so),
    a ticket of its own, or held (quarantined, unrelated-sender)."""
    env = _env(tmp_path, sqlite_url, unrelated_sender=policy)
    row = _opened(env)
    # A colleague at the same client is related: always accepted without remark.
    colleague = env.deliver("", raw=mail(subject=f"Re: [ID:{row.ticket_id}] Printer broken",
                                         sender="bob@acme.example", body="colleague"))
    assert colleague.ticket_id == row.ticket_id and "unrelated" not in colleague.reason
    other = _stranger(env, row.ticket_id, by)
    if policy == "accept":
        assert other.ticket_id == row.ticket_id and "unrelated" in other.reason
    elif policy == "new_ticket":
        assert other.status == "processed" and other.ticket_id != row.ticket_id
    else:
        assert (other.status, other.reason) == ("quarantined", "unrelated-sender")
    assert len(env.ticket(row.ticket_id)["actions"]) == (3 if policy == "accept" else 2)


def test_strangers_filed_under_the_catch_all_client_are_not_related(
        tmp_path: Path, sqlite_url: str) -> None:
    """Two unknown senders both filed under the default client are still strangers."""
    env = _env(tmp_path, sqlite_url, unrelated_sender="hold")
    row = env.deliver("", raw=mail(subject="Help", sender="one@nowhere.example"))
    other = env.deliver("", raw=mail(subject=f"Re: [ID:{row.ticket_id}] Help",
                                     sender="two@elsewhere.example", body="me too"))
    assert (other.status, other.reason) == ("quarantined", "unrelated-sender")


@pytest.mark.parametrize("policy", ["reopen", "new_ticket", "reject"])
def test_the_closed_ticket_policy(tmp_path: Path, db_url: str, policy: str) -> None:
    """Mail for a closed ticket reopens it, opens a new one linked to it, or is recorded
    and changes nothing (ignored, closed-ticket)."""
    env = _env(tmp_path, db_url, closed_ticket=policy)
    row = _opened(env)
    assert env.cli("tickets", "set-status", str(row.ticket_id), "closed") == 0
    reply = env.deliver("", raw=mail(subject=f"Re: [ID:{row.ticket_id}] Printer broken",
                                     body="it broke again"))
    old = env.ticket(row.ticket_id)
    if policy == "reopen":
        assert reply.ticket_id == row.ticket_id and old["status"] == "open"
    elif policy == "new_ticket":
        assert reply.ticket_id != row.ticket_id and old["status"] == "closed"
        assert env.ticket(reply.ticket_id)["linked_ticket_id"] == row.ticket_id
    else:
        assert (reply.status, reply.reason) == ("ignored", "closed-ticket")
        assert old["status"] == "closed" and len(old["actions"]) == 1


def test_the_rate_limit_holds_a_looping_sender(
        tmp_path: Path, db_url: str, start_daemon: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Over SMTP, beyond rate_limit messages from one address within the window (new
    tickets and replies alike) further mail is held (quarantined, loop) with an error event;
    other senders and agents are not affected, nor an admin's `ingest` of files."""
    config = processing_config(db_url, workers=1)
    config["mailboxes"][0]["rate_limit"] = {"new_tickets": 3, "per_seconds": 3600}
    path = write_config(tmp_path, config)
    import_directory(path)
    daemon = start_daemon(path)
    env = ProcessingEnv(path, daemon.engine, "smtp", daemon.port)
    first = env.deliver("", raw=mail(subject="Away 1", sender="robot@loop.example"))
    env.deliver("", raw=mail(subject="Away 2", sender="robot@loop.example"))
    env.deliver("", raw=mail(subject=f"Re: [ID:{first.ticket_id}] Away 1",
                             sender="robot@loop.example", body="again"))
    held = env.deliver("", raw=mail(subject="Away 4", sender="robot@loop.example"))
    assert (held.status, held.reason) == ("quarantined", "loop")
    captured = capsys.readouterr()
    assert "message.loop" in captured.out + captured.err
    other = env.deliver("", raw=mail(subject="Hello", sender="alice@acme.example"))
    assert other.status == "processed"
    for i in range(4):
        agent = env.deliver("", raw=mail(subject=f"Note {i}", sender="nina@example.com",
                                         body=f"agent {i}"))
        assert agent.status == "processed"

    # The same sender's archive imported by an admin is not a loop.
    imported = ProcessingEnv(path, daemon.engine, "ingest").deliver(
        "", raw=mail(subject="Archived 1", sender="robot@loop.example"))
    assert imported.status == "processed"


def test_an_auto_responder_ping_pong_stops_at_the_rate_limit(
        tmp_path: Path, sqlite_url: str, start_daemon: Any) -> None:
    """Two auto-replying parties over SMTP: the helpdesk acknowledges every update (recorded
    with `tickets add-outgoing`, as the helpdesk would), the customer's autoresponder answers
    every acknowledgement. Each answer is an update to the ticket, so only the rate limit
    can end the exchange: exactly `rate_limit` messages are taken, the next is held (loop),
    and with nothing new on the ticket the helpdesk sends nothing more."""
    config = processing_config(sqlite_url, workers=1)
    config["mailboxes"][0]["rate_limit"] = {"new_tickets": 5, "per_seconds": 3600}
    path = write_config(tmp_path, config)
    import_directory(path)
    daemon = start_daemon(path)
    env = ProcessingEnv(path, daemon.engine, "smtp", daemon.port)
    robot = "robot@loop.example"
    opened = env.deliver("", raw=mail(subject="Order 1", sender=robot, body="new order"))
    ticket = opened.ticket_id
    taken, last, rounds = 1, opened, 0
    while last.status == "processed" and rounds < 50:
        rounds += 1
        ack = f"<ack-{rounds}@helpdesk.example.com>"
        assert env.cli("tickets", "add-outgoing", str(ticket), "--message-id", ack,
                       "--to", robot, "--subject", f"[ID:{ticket}] We got your message") == 0
        last = env.deliver("", raw=mail(
            subject=f"Auto: [ID:{ticket}] We got your message", sender=robot,
            body=f"autoresponse {rounds}",
            extra=f"Auto-Submitted: auto-replied\r\nIn-Reply-To: {ack}\r\n"))
        taken += last.status == "processed"
    assert (last.status, last.reason) == ("quarantined", "loop")
    assert taken == 5 and rounds == 5
    assert env.count("tickets") == 1
    kinds = [a["kind"] for a in env.ticket(ticket)["actions"]]
    assert kinds == ["email"] + ["outgoing", "auto_reply"] * 4 + ["outgoing"]
