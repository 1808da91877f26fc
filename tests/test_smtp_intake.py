"""SMTP intake over a real socket to a running daemon, on SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest

SIMPLE = (
    b"From: Alice <alice@acme.example>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: Printer broken\r\n"
    b"Message-ID: <m1@acme.example>\r\n"
    b"\r\n"
    b"It jams.\r\n"
)


def send(port: int, rcpts: list[str], data: bytes, sender: str = "alice@acme.example") -> Any:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(sender, rcpts, data)


def test_message_is_stored_byte_exact_before_250(daemon: Any) -> None:
    """A 250 means the raw bytes and the envelope are already in inbound_messages."""
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@acme.example")
        client.rcpt("support@example.com")
        code, reply = client.data(SIMPLE)
        assert code == 250, reply
        assert reply.startswith(b"2.0.0")
        # No waiting: the row must exist the moment 250 arrives.
        rows = daemon.rows()
    assert len(rows) == 1
    row = rows[0]
    assert bytes(row.raw) == SIMPLE
    assert row.status == "pending"
    assert row.source == "smtp"
    assert row.mailbox == "support"
    assert row.envelope_from == "alice@acme.example"
    assert row.subject == "Printer broken"
    assert row.message_id == "<m1@acme.example>"
    assert str(row.id).encode() in reply


def test_unknown_recipient_is_refused_at_rcpt(daemon: Any) -> None:
    """RCPT for an address no mailbox owns gets 550 5.1.1 and nothing is stored."""
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@acme.example")
        code, reply = client.rcpt("someone@elsewhere.example")
        assert code == 550
        assert reply.startswith(b"5.1.1")
        code, _ = client.rcpt("postmaster@example.com")
        assert code == 550
    assert daemon.rows() == []


@pytest.mark.parametrize("address", ["SUPPORT@Example.COM", "support+billing@example.com",
                                     "Help+x@EXAMPLE.com"])
def test_recipient_matching_ignores_case_and_detail(daemon: Any, address: str) -> None:
    """Case and +detail do not matter when matching a recipient to a mailbox."""
    send(daemon.port, [address], SIMPLE)
    rows = daemon.rows()
    assert [r.mailbox for r in rows] == ["support"]
    assert rows[0].envelope_to == [address]


def test_two_mailboxes_in_one_transaction_store_once(daemon: Any) -> None:
    """One transaction to two mailboxes is one row, for the first-configured mailbox."""
    send(daemon.port, ["sales@example.com", "help@example.com"], SIMPLE)
    rows = daemon.rows()
    assert len(rows) == 1
    assert rows[0].mailbox == "support"
    assert rows[0].also_mailboxes == ["sales"]
    assert rows[0].envelope_to == ["sales@example.com", "help@example.com"]


def test_too_many_recipients_get_452(daemon: Any) -> None:
    """Recipients beyond max_recipients (5 here) get 452 4.5.3; the first five count."""
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@acme.example")
        for i in range(5):
            assert client.rcpt(f"support+{i}@example.com")[0] == 250
        code, reply = client.rcpt("support+6@example.com")
        assert code == 452
        assert reply.startswith(b"4.5.3")
        assert client.data(SIMPLE)[0] == 250
    rows = daemon.rows()
    assert len(rows) == 1
    assert len(rows[0].envelope_to) == 5


def test_size_is_advertised_and_enforced(daemon: Any) -> None:
    """EHLO advertises SIZE; a larger SIZE= or a larger message gets 552 5.3.4."""
    limit = daemon.settings.smtp.max_message_size
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("size")
        assert int(client.esmtp_features["size"]) == limit
        code, reply = client.mail("alice@acme.example", [f"SIZE={limit + 1}"])
        assert code == 552 and reply.startswith(b"5.3.4"), reply
        client.rset()
        client.mail("alice@acme.example")
        client.rcpt("support@example.com")
        big = SIMPLE + (b"x" * 998 + b"\r\n") * (limit // 1000 + 10)
        code, reply = client.data(big)
        assert code == 552 and reply.startswith(b"5.3.4"), reply
        # The session carries on.
        client.mail("alice@acme.example")
        client.rcpt("support@example.com")
        assert client.data(SIMPLE)[0] == 250
    assert len(daemon.rows()) == 1


def test_long_lines_are_accepted(daemon: Any) -> None:
    """Lines over RFC 5321's 1,000 octets are accepted and stored unchanged."""
    long_line = b"<p>" + b"a" * 5000 + b"</p>\r\n"
    message = SIMPLE + long_line + b"z" * 100_000 + b"\r\n"
    send(daemon.port, ["support@example.com"], message)
    rows = daemon.rows()
    assert bytes(rows[0].raw) == message


# Also sent inside a TLS session by tests/test_smtp_tls.py.
BARE_LINE_END_CASES = {
    "bare-lf-in-header":
        b"From: a@b.example\r\nSubject: hi\nFrom: evil@evil.example\r\n\r\nbody\r\n",
    "bare-cr-in-body": b"From: a@b.example\r\nSubject: hi\r\n\r\nbody\rmore\r\n",
    "smuggling-probe": b"From: a@b.example\r\n\r\nbody\n.\nMAIL FROM:<x@y>\r\n",
}
SMUGGLED_SECOND_MESSAGE = (
    b"From: a@b.example\r\nSubject: one\r\n\r\nbody\n.\r\n"
    b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
    b"From: ceo@bank.example\r\n\r\nsmuggled\r\n"
)


@pytest.mark.parametrize("bad", BARE_LINE_END_CASES.values(), ids=BARE_LINE_END_CASES.keys())
def test_bare_cr_or_lf_is_refused(daemon: Any, bad: bytes) -> None:
    """DATA with a bare CR or LF gets 550 5.6.0 and nothing is stored."""
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@acme.example")
        client.rcpt("support@example.com")
        # smtplib would turn bare LFs into CRLF; send the bytes ourselves.
        client.putcmd("data")
        assert client.getreply()[0] == 354
        client.send(bad + b"\r\n.\r\n")
        code, reply = client.getreply()
        assert code == 550, reply
        assert reply.startswith(b"5.6.0")
        client.rset()
    assert daemon.rows() == []


def test_smuggled_second_message_is_not_split(daemon: Any) -> None:
    """An LF-dot-CRLF sequence does not end DATA: no second transaction appears."""
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        client.ehlo()
        client.mail("alice@acme.example")
        client.rcpt("support@example.com")
        client.putcmd("data")
        assert client.getreply()[0] == 354
        client.send(SMUGGLED_SECOND_MESSAGE + b".\r\n")
        code, _ = client.getreply()
        assert code == 550
    assert daemon.rows() == []


def test_many_messages_in_one_session(daemon: Any) -> None:
    """Several transactions in one session are each stored once."""
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        for i in range(5):
            client.sendmail("alice@acme.example", ["support@example.com"],
                            SIMPLE.replace(b"<m1@", f"<m{i}x@".encode()))
    assert [r.message_id for r in daemon.rows()] == [f"<m{i}x@acme.example>" for i in range(5)]


def test_connection_limits_answer_421(start_daemon: Any, tmp_path: Any, sqlite_url: str) -> None:
    """Past max_connections_per_ip a new connection gets 421 4.7.0; a freed slot is reusable."""
    from tests.conftest import base_config, write_config
    from tests.support.waiting import wait_for

    config = base_config(sqlite_url)
    config["smtp"]["max_connections_per_ip"] = 2
    daemon = start_daemon(write_config(tmp_path, config))
    first = smtplib.SMTP("127.0.0.1", daemon.port, timeout=10)
    second = smtplib.SMTP("127.0.0.1", daemon.port, timeout=10)
    try:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", daemon.port, timeout=10)
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.7.0")
        assert second.noop()[0] == 250  # the admitted sessions are unaffected
    finally:
        first.quit()

    def third_admitted() -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
                return client.noop()[0] == 250
        except smtplib.SMTPConnectError:
            return False

    assert wait_for(third_admitted, what="a slot freed by QUIT")
    second.sendmail("alice@acme.example", ["support@example.com"], SIMPLE)
    second.quit()
    assert len(daemon.rows()) == 1


def test_eight_bit_sender_is_stored_and_nul_addresses_are_refused(daemon: Any) -> None:
    """An 8-bit MAIL FROM is stored (cleaned); NUL in MAIL FROM / RCPT TO gets 501, unchanged."""
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        client.ehlo()
        client.send(b"MAIL FROM:<j\xf6rg@x.example>\r\n")
        assert client.getreply()[0] == 250
        assert client.rcpt("support@example.com")[0] == 250
        code, reply = client.data(SIMPLE)
        assert code == 250, reply
        client.send(b"MAIL FROM:<a\x00b@x.example>\r\n")
        assert client.getreply() == (501, b"5.1.7 NUL is not allowed in an address")
        assert client.mail("ab@x.example")[0] == 250
        client.send(b"RCPT TO:<support\x00@example.com>\r\n")
        assert client.getreply() == (501, b"5.1.3 NUL is not allowed in an address")
    senders = [r.envelope_from for r in daemon.rows()]
    assert senders == ["j\ufffdrg@x.example"]


def test_a_refused_message_does_not_fail_its_batch_mates(tmp_path: Any, sqlite_url: str) -> None:
    """When a shared commit fails, the others are committed alone and only the bad one fails."""
    import asyncio as aio

    from ingestd.config.settings import DatabaseSettings
    from ingestd.db.engine import make_engine
    from ingestd.db.schema import ensure_schema
    from ingestd.errors import StorageRejected
    from ingestd.intake.commit import GroupCommitter
    from ingestd.intake.smtp import SmtpSource
    from tests.conftest import inbound_rows

    engine = make_engine(DatabaseSettings(url=sqlite_url))
    ensure_schema(engine)
    source = SmtpSource()
    # A value no driver can store stands in for whatever a database may refuse.
    bad = source.message(SIMPLE, "support", peer="\udcff")
    good = [source.message(SIMPLE + bytes([65 + i]), "support") for i in range(3)]

    async def run() -> list[object]:
        committer = GroupCommitter(engine)
        await committer.start()
        try:
            return await aio.gather(*(committer.submit(m) for m in [good[0], bad, *good[1:]]),
                                    return_exceptions=True)
        finally:
            await committer.stop()

    results = aio.run(run())
    engine.dispose()
    assert isinstance(results[1], StorageRejected)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 1)
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    assert len(inbound_rows(engine)) == 3
    engine.dispose()


def test_long_command_line_is_refused_without_buffering_it(daemon: Any) -> None:
    """A 2 MB command line gets 500 (read past, not buffered); the session goes on."""
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        client.ehlo()
        client.send(b"MAIL FROM:<" + b"a" * 2_000_000 + b"@x.example>\r\n")
        code, reply = client.getreply()
        assert code == 500 and b"too long" in reply
        client.sendmail("alice@acme.example", ["support@example.com"], SIMPLE)
    assert len(daemon.rows()) == 1
