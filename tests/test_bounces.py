"""Bounces: read into failed recipients, never a ticket, recorded where their mail belongs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.bounces import read_bounce
from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from ingestd.db.tables import ACTIONS
from tests.conftest import write_config
from tests.processing_env import ProcessingEnv, import_directory, processing_config
from tests.test_rules import mail

FIXTURES = Path(__file__).parent.parent / "fixtures" / "emails"


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_a_dsn_gives_each_failed_recipient_its_status_and_class() -> None:
    bounce = read_bounce(_fixture("bounce-dsn-two-recipients.eml"))
    assert bounce is not None and bounce.read_as == "dsn"
    assert [(r.address, r.status, r.hard) for r in bounce.recipients] == [
        ("bob@acme.example", "5.1.1", True), ("carol@acme.example", "4.2.2", False)]
    assert bounce.original_message_ids == ("<out-777-1@mailer.example.com>",)
    assert bounce.original_subject == "[ID:777] Your printer"
    assert bounce.hard and bounce.worst_status == "5.1.1"


def test_a_prose_bounce_is_read_from_its_report_not_from_the_returned_message() -> None:
    """qmail writes no DSN fields; the address and the server's answer come from its text."""
    bounce = read_bounce(_fixture("bounce-qmail-prose.eml"))
    assert bounce is not None
    assert [(r.address, r.status, r.hard) for r in bounce.recipients] == [
        ("dave@acme.example", "5.1.1", True)]
    assert bounce.original_message_ids == ("<out-qmail-2@mailer.example.com>",)


def test_a_dsn_with_a_boundary_that_never_appears_is_still_read() -> None:
    """The header names one boundary, the body uses another: the whole body is read as text."""
    raw = _fixture("bounce-dsn-two-recipients.eml").replace(
        b'boundary="dsn.boundary.1"', b'boundary="another.one"')
    bounce = read_bounce(raw)
    assert bounce is not None
    assert {r.address for r in bounce.recipients} == {"bob@acme.example", "carol@acme.example"}


def test_exim_names_its_failed_recipients_in_a_header() -> None:
    raw = (b"From: Mail Delivery System <Mailer-Daemon@mx.acme.example>\r\n"
           b"To: helpdesk@example.com\r\nSubject: Mail delivery failed: returning message\r\n"
           b"X-Failed-Recipients: erin@acme.example\r\n\r\n"
           b"This message was created automatically by mail delivery software.\r\n\r\n"
           b"  erin@acme.example\r\n    SMTP error from remote mail server after RCPT TO:\r\n"
           b"    550 5.7.1 Relaying denied\r\n")
    bounce = read_bounce(raw)
    assert bounce is not None and bounce.read_as == "x-failed-recipients"
    assert [(r.address, r.status) for r in bounce.recipients] == [("erin@acme.example", "5.7.1")]


def test_a_delay_warning_is_a_soft_bounce() -> None:
    raw = (b"From: Mail Delivery Subsystem <MAILER-DAEMON@mx.acme.example>\r\n"
           b"To: helpdesk@example.com\r\nSubject: Warning: message delayed\r\n\r\n"
           b"Delivery to the following recipient has been delayed:\r\n\r\n"
           b"     frank@acme.example\r\n\r\nMessage will be retried for 2 more day(s)\r\n")
    bounce = read_bounce(raw)
    assert bounce is not None
    assert [(r.address, r.hard) for r in bounce.recipients] == [("frank@acme.example", False)]


@pytest.mark.parametrize("name", ["report-abuse-arf.eml", "report-read-receipt-mdn.eml"])
def test_abuse_reports_and_read_receipts_are_no_bounces(name: str) -> None:
    assert read_bounce(_fixture(name)) is None


def test_a_dsn_of_successful_delivery_is_no_bounce() -> None:
    raw = _fixture("bounce-dsn-two-recipients.eml").replace(
        b"Action: failed", b"Action: delivered").replace(b"Action: delayed", b"Action: relayed")
    assert read_bounce(raw) is None


@pytest.mark.parametrize("headers", [
    "From: Bob <bob@acme.example>\r\nSubject: Undelivered parcel, order 1234",
    "From: Bob <bob@acme.example>\r\nSubject: Delivery failed for my order",
    "From: MAILER-DAEMON@mx.acme.example\r\nSubject: Your weekly report",
    # A display name proves nothing (found by review: each of these was dropped).
    'From: "DHL Delivery Notification" <noreply@dhl.example>\r\nSubject: Delivery failed',
    'From: "Backup Mail Delivery" <backup@acme.example>\r\nSubject: Backup failed',
    'From: "Acme Mail System" <alice@acme.example>\r\nSubject: Re: [ID:1] Payment failed',
    'From: "MDaemon Admin" <admin@acme.example>\r\nSubject: Licence renewal failure',
    'From: "Bounce Fitness" <hello@bounce.example>\r\nSubject: Payment failed',
    "Subject: Login error",  # no From at all
    # Exim's header and an untyped report are believed from a robot only.
    "From: evil@attacker.example\r\nSubject: Re: [ID:1] hi\r\n"
    "X-Failed-Recipients: carol@acme.example",
    "From: evil@attacker.example\r\nSubject: hi\r\n"
    'Content-Type: multipart/report; boundary="r"',
])
def test_mail_that_only_resembles_a_bounce_is_no_bounce(headers: str) -> None:
    """A bounce needs a DSN report, or a robot sender (MAILER-DAEMON, postmaster, a null
    return path) with a bounce subject or Exim's header: such mail becomes a ticket."""
    raw = (f"{headers}\r\nTo: support@example.com\r\n\r\n--r\r\n\r\n"
           "The parcel to carol@acme.example was not delivered: error 550 5.1.1.\r\n"
           "Contact customerservice@dhl.example.\r\n--r--\r\n").encode()
    assert read_bounce(raw) is None


def test_a_null_envelope_sender_makes_a_robot_but_prose_needs_evidence() -> None:
    """MAIL FROM:<> (a notice, say) with addresses in its text but no server answer, no
    returned message and no MAILER-DAEMON is not read as a bounce."""
    raw = (b"From: Shop <shop@acme.example>\r\nSubject: Delivery failed\r\n\r\n"
           b"Write to help@acme.example about your parcel.\r\n")
    assert read_bounce(raw, null_sender=True) is None
    assert read_bounce(raw + b"Remote server said: 550 5.1.1 unknown user\r\n",
                       null_sender=True) is not None


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> ProcessingEnv:
    config = processing_config(db_url, workers=0)
    config["own_addresses"] = ["helpdesk@example.com"]
    path = write_config(tmp_path, config)
    import_directory(path)
    return ProcessingEnv(path, make_engine(load_settings(path).database), "ingest")


def _actions(env: ProcessingEnv, ticket_id: int) -> list[dict[str, object]]:
    return env.ticket(ticket_id)["actions"]  # type: ignore[no-any-return]


def test_a_bounce_of_outgoing_mail_is_a_delivery_failure_on_its_ticket(
        env: ProcessingEnv) -> None:
    """The Message-ID recorded with `tickets add-outgoing` finds the ticket; a closed ticket
    stays closed; the action JSON carries the failed recipients, status and class."""
    row = env.deliver("", raw=mail(subject="Printer broken"))
    ticket = row.ticket_id
    assert env.cli("tickets", "add-outgoing", str(ticket), "--message-id",
                   "<out-777-1@mailer.example.com>", "--to", "bob@acme.example") == 0
    assert env.cli("tickets", "set-status", str(ticket), "closed") == 0
    raw = _fixture("bounce-dsn-two-recipients.eml").replace(b"[ID:777]", b"[no tag]")
    bounce = env.deliver("", raw=raw)
    assert bounce.status == "processed" and bounce.ticket_id == ticket
    assert "bounce of <out-777-1@mailer.example.com>" in bounce.reason
    shown = env.ticket(ticket)
    assert shown["status"] == "closed"
    failure = shown["actions"][-1]
    assert failure["kind"] == "delivery_failure"
    # Only what was read is stored: never the report's own text (see the hijack test).
    assert failure["body_text"] == ("Delivery failed (hard): bob@acme.example 5.1.1\n"
                                    "Delivery failed (soft): carol@acme.example 4.2.2\n")
    assert failure["attachments"] == []
    assert failure["failed_recipient"] == ["bob@acme.example", "carol@acme.example"]
    assert (failure["status"], failure["hard"]) == ("5.1.1", True)
    assert env.count("tickets") == 1


def test_a_bounce_finds_its_ticket_by_the_tag_in_the_returned_subject(
        env: ProcessingEnv) -> None:
    first = env.deliver("", raw=mail(subject="Printer broken"))
    raw = _fixture("bounce-dsn-two-recipients.eml").replace(
        b"[ID:777]", f"[ID:{first.ticket_id}]".encode())
    bounce = env.deliver("", raw=raw)
    assert bounce.ticket_id == first.ticket_id
    assert "tagged" in bounce.reason


def test_a_bounce_naming_nothing_we_know_is_ignored(env: ProcessingEnv) -> None:
    for name in ("bounce-dsn-two-recipients.eml", "bounce-qmail-prose.eml"):
        row = env.deliver("", raw=_fixture(name))
        assert (row.status, row.reason) == ("ignored", "bounce")
    assert env.count("tickets") == 0
    with env.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ACTIONS)).scalar() == 0


def test_a_bounce_is_never_held_by_the_hijack_guard(tmp_path: Path, db_url: str) -> None:
    """MAILER-DAEMON is related to no ticket, yet its report of our mail belongs there."""
    config = processing_config(db_url, workers=0)
    config["mailboxes"][0]["unrelated_sender"] = "hold"
    path = write_config(tmp_path, config)
    import_directory(path)
    env = ProcessingEnv(path, make_engine(load_settings(path).database), "ingest")
    first = env.deliver("", raw=mail(subject="Printer broken"))
    raw = _fixture("bounce-qmail-prose.eml").replace(
        b"Subject: Your request", f"Subject: [ID:{first.ticket_id}] Your request".encode())
    row = env.deliver("", raw=raw)
    assert row.status == "processed" and row.ticket_id == first.ticket_id


def test_a_report_the_bounce_reader_trips_over_is_kept_as_ordinary_mail(
        env: ProcessingEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault in reading a bounce never fails the message: it is handled as mail (here an
    auto-reply from MAILER-DAEMON with no ticket: ignored, auto-reply), not lost or retried."""
    import ingestd.pipeline.stages.protect as protect

    def broken(raw: bytes) -> None:
        raise ValueError("unreadable report")

    monkeypatch.setattr(protect, "read_bounce", broken)
    row = env.deliver("", raw=_fixture("bounce-qmail-prose.eml"))
    assert (row.status, row.reason) == ("ignored", "auto-reply")


@pytest.mark.parametrize("body", [
    # Shapes a review found taking 2 to 10 minutes each (cubic or quadratic regexes).
    b"Final-Recipient: rfc822; " + b"a@" * 3000 + b"\r\n",
    b" ".join(b"user%d@host%d.example" % (i, i) for i in range(12_000)),
    b"!" * 250_000,
    b"--b\r\nContent-Type: text/html\r\n\r\n" + b"<" * 250_000,
    b"a@" * 200_000,
    b"x@" + b"a." * 1_000_000,
    b"Received: x\r\n" * 300_000,
    b"".join(b"u%d@x%d.example 550 5.1.1\r\n" % (i, i) for i in range(100_000)),
])
def test_a_huge_hostile_report_is_read_in_bounded_time(body: bytes) -> None:
    """Only the report's start is read: megabytes of addresses or header lines stay cheap
    (measured 0.1-0.3 s; unbounded, the vendor detectors took 6 s on the third)."""
    import time

    raw = (b"From: MAILER-DAEMON@mx.example\r\nSubject: failure notice\r\n"
           b"X-Failed-Recipients: " + b"!" * 100_000 + b"\r\n"
           b'Content-Type: multipart/report; boundary="b"\r\n\r\n' + body)
    started = time.perf_counter()
    bounce = read_bounce(raw)
    assert time.perf_counter() - started < 3
    assert bounce is None or len(bounce.recipients) <= 100


def test_a_forged_bounce_cannot_carry_text_onto_a_ticket_or_name_inbound_mail(
        env: ProcessingEnv) -> None:
    """Dressed up as a bounce, a stranger's mail would skip the hijack guard: so a bounce
    is matched by Message-ID only to our outgoing mail, and its action holds no text of
    the sender's."""
    first = env.deliver("", raw=mail(subject="Printer broken"))
    customer_mid = env.ticket(first.ticket_id)["actions"][0]["message_id"]
    forged = (b"From: MAILER-DAEMON@attacker.example\r\nTo: support@example.com\r\n"
              b"Subject: Undelivered Mail Returned to Sender\r\n\r\n"
              b"Pay your invoice at http://evil.example/pay now.\r\n"
              b"<carol@acme.example>: 550 5.1.1 unknown\r\n\r\n"
              b"--- Below this line is a copy of the message.\r\n\r\n"
              b"Message-ID: " + customer_mid.encode() + b"\r\nSubject: hello\r\n")
    row = env.deliver("", raw=forged)
    assert (row.status, row.reason) == ("ignored", "bounce")
    tagged = env.deliver("", raw=forged.replace(
        b"Subject: hello", f"Subject: [ID:{first.ticket_id}] hello".encode()))
    assert tagged.ticket_id == first.ticket_id
    failure = env.ticket(first.ticket_id)["actions"][-1]
    assert failure["body_text"] == "Delivery failed (hard): carol@acme.example 5.1.1\n"
    assert "evil" not in str(failure)


def test_bounces_count_against_the_senders_rate_limit(tmp_path: Path, sqlite_url: str,
                                                     start_daemon: Any) -> None:
    """Over SMTP with rate_limit 3: the fourth bounce from one MAILER-DAEMON in the hour is
    held (loop), as any other flood would be."""
    config = processing_config(sqlite_url, workers=1)
    config["mailboxes"][0]["rate_limit"] = {"new_tickets": 3, "per_seconds": 3600}
    path = write_config(tmp_path, config)
    import_directory(path)
    daemon = start_daemon(path)
    smtp = ProcessingEnv(path, daemon.engine, "smtp", daemon.port)
    first = smtp.deliver("", raw=mail(subject="Printer broken"))
    report = _fixture("bounce-qmail-prose.eml").replace(b"\n", b"\r\n")
    rows = [smtp.deliver("", raw=report.replace(
        b"Subject: Your request", f"Subject: [ID:{first.ticket_id}] try {i}".encode())
        .replace(b"<qmail-1@", f"<qmail-{i}@".encode()), envelope_from="<>") for i in range(4)]
    assert [r.status for r in rows] == ["processed"] * 3 + ["quarantined"]
    assert rows[-1].reason == "loop"
