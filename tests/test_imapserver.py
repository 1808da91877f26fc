"""The IMAP test helpers themselves: the Dovecot wrapper and the TCP fault proxy.

The client here is stdlib imaplib, so a broken helper cannot hide behind a broken ingestd.
"""

from __future__ import annotations

import imaplib
import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.faultproxy import FaultProxy
from tests.imapserver import Dovecot, DovecotError, ImapUser
from tests.support.waiting import wait_for

CRLF_MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: printer\r\n"
    b"Message-ID: <crlf-1@example.com>\r\n"
    b"\r\n"
    b"The printer is on fire.\r\n"
    b"  Trailing spaces stay.   \r\n"
)
EIGHT_BIT_MESSAGE = (
    b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.com>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x82\xac\r\n"
    b"Latin-1 byte left alone: \xe9\r\n"
)


def fetch_raw(client: imaplib.IMAP4, uid: int) -> bytes:
    status, data = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
    assert status == "OK", data
    first = data[0]
    assert isinstance(first, tuple), data
    return first[1]


@pytest.fixture
def session(dovecot: Dovecot, imap_user: ImapUser) -> Iterator[imaplib.IMAP4]:
    client = dovecot.login(imap_user.name)
    yield client
    try:
        client.logout()
    except (imaplib.IMAP4.abort, OSError):
        client.shutdown()


# -- Dovecot -----------------------------------------------------------------------------------


def test_plain_starttls_and_implicit_tls_logins(dovecot: Dovecot, imap_user: ImapUser) -> None:
    plain = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    assert "STARTTLS" in plain.capabilities
    plain.starttls(ssl_context=dovecot.ssl_context())
    assert plain.login(imap_user.name, imap_user.password)[0] == "OK"
    plain.logout()

    implicit = imaplib.IMAP4_SSL(
        dovecot.host, dovecot.tls_port, ssl_context=dovecot.ssl_context(), timeout=10
    )
    assert implicit.login(imap_user.name, imap_user.password)[0] == "OK"
    implicit.logout()

    # The certificate really comes from ca_file: the system store does not know that CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(dovecot.host, dovecot.tls_port,
                          ssl_context=ssl.create_default_context(), timeout=10)


def test_wrong_password_is_refused_without_the_default_delay(
    dovecot: Dovecot, imap_user: ImapUser
) -> None:
    client = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    started = time.monotonic()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(imap_user.name, imap_user.password + "x")
    # Dovecot's default auth_failure_delay is 2 s.
    assert time.monotonic() - started < 1.5
    client.logout()


def test_append_returns_uids_and_messages_round_trip_byte_for_byte(
    dovecot: Dovecot, imap_user: ImapUser, session: imaplib.IMAP4
) -> None:
    first = dovecot.append(imap_user.name, CRLF_MESSAGE)
    second = dovecot.append(imap_user.name, EIGHT_BIT_MESSAGE)

    assert second > first
    assert dovecot.uids(imap_user.name) == [first, second]
    session.select("INBOX", readonly=True)
    assert fetch_raw(session, first) == CRLF_MESSAGE
    assert fetch_raw(session, second) == EIGHT_BIT_MESSAGE
    # BODY.PEEK[] leaves the messages unread, and flags() reads without marking either.
    assert dovecot.flags(imap_user.name) == {first: set(), second: set()}
    assert dovecot.status(imap_user.name)["messages"] == 2


def test_append_with_flags_and_internal_date(
    dovecot: Dovecot, imap_user: ImapUser, session: imaplib.IMAP4
) -> None:
    when = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    uid = dovecot.append(imap_user.name, CRLF_MESSAGE, flags=("\\Seen", "$Forwarded"),
                         internal_date=when)

    assert dovecot.flags(imap_user.name) == {uid: {"\\Seen", "$Forwarded"}}
    session.select("INBOX", readonly=True)
    status, data = session.uid("FETCH", str(uid), "(INTERNALDATE)")
    assert status == "OK"
    assert b'INTERNALDATE "01-Mar-2026 09:30:00 +0000"' in data[0]


def test_folders_have_uids_of_their_own(
    dovecot: Dovecot, imap_user: ImapUser, session: imaplib.IMAP4
) -> None:
    dovecot.create_folder(imap_user.name, "Archive/2026")
    inbox_uid = dovecot.append(imap_user.name, CRLF_MESSAGE)
    archive_uid = dovecot.append(imap_user.name, EIGHT_BIT_MESSAGE, "Archive/2026")

    assert dovecot.uids(imap_user.name) == [inbox_uid]
    assert dovecot.uids(imap_user.name, "Archive/2026") == [archive_uid]
    status, listing = session.list()
    assert status == "OK"
    assert any(b'"Archive/2026"' in line or b"Archive/2026" in line for line in listing)
    session.select('"Archive/2026"', readonly=True)
    assert fetch_raw(session, archive_uid) == EIGHT_BIT_MESSAGE


def test_set_uidvalidity_is_what_clients_see(
    dovecot: Dovecot, imap_user: ImapUser, session: imaplib.IMAP4
) -> None:
    uid = dovecot.append(imap_user.name, CRLF_MESSAGE)
    before = dovecot.uidvalidity(imap_user.name)

    dovecot.set_uidvalidity(imap_user.name, "INBOX", before + 7)

    assert dovecot.uidvalidity(imap_user.name) == before + 7
    session.select("INBOX", readonly=True)
    assert session.response("UIDVALIDITY")[1] == [str(before + 7).encode()]
    status, data = session.status("INBOX", "(UIDVALIDITY)")
    assert status == "OK" and f"UIDVALIDITY {before + 7}".encode() in data[0]
    assert dovecot.uids(imap_user.name) == [uid]


def test_set_password_applies_to_new_logins_only(
    dovecot: Dovecot, imap_user: ImapUser, session: imaplib.IMAP4
) -> None:
    # Same length as the old password and (most likely) the same second as the login the
    # session fixture made: Dovecot must still notice the change.
    assert len(imap_user.password) == 16
    dovecot.set_password(imap_user.name, "b" * 16)

    assert session.noop()[0] == "OK"
    client = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        client.login(imap_user.name, imap_user.password)
    client.logout()
    client = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    assert client.login(imap_user.name, "b" * 16)[0] == "OK"
    client.logout()
    assert dovecot.password(imap_user.name) == "b" * 16
    # The helper follows the change for its own logins.
    assert dovecot.append(imap_user.name, CRLF_MESSAGE) == 1


def test_add_user_refuses_duplicates_and_unsafe_names(
    dovecot: Dovecot, imap_user: ImapUser
) -> None:
    with pytest.raises(DovecotError):
        dovecot.add_user(imap_user.name, "other")
    with pytest.raises(ValueError):
        dovecot.add_user("bad:name", "pw")
    with pytest.raises(ValueError):
        dovecot.add_user("fine", "pass word")


def test_imap_user_gives_each_test_an_empty_inbox(
    dovecot: Dovecot, imap_user: ImapUser
) -> None:
    # The earlier tests appended to their users; this one starts with nothing.
    assert dovecot.uids(imap_user.name) == []
    assert dovecot.status(imap_user.name) == {
        "messages": 0, "uidnext": 1, "uidvalidity": dovecot.uidvalidity(imap_user.name)
    }


def test_kick_drops_only_that_users_connections(dovecot: Dovecot, imap_user: ImapUser) -> None:
    other = ImapUser(imap_user.name + "-bystander", "pw")
    dovecot.add_user(other.name, other.password)
    kicked = [dovecot.login(imap_user.name) for _ in range(2)]
    bystander = dovecot.login(other.name)
    for client in (*kicked, bystander):
        client.select("INBOX", readonly=True)
    assert dovecot.sessions(imap_user.name) == 2

    dovecot.kick(imap_user.name)

    def dropped(client: imaplib.IMAP4) -> bool:
        try:
            client.noop()
        except (imaplib.IMAP4.abort, OSError):
            return True
        return False  # the kick is asynchronous: the session may answer once more

    for client in kicked:
        wait_for(lambda c=client: dropped(c), what="a kicked session to be dropped")
        client.shutdown()
    wait_for(lambda: dovecot.sessions(imap_user.name) == 0, what="kicked sessions to end")
    assert bystander.noop()[0] == "OK"
    bystander.logout()


def test_stop_and_start_keep_ports_and_mail(dovecot: Dovecot, imap_user: ImapUser) -> None:
    uid = dovecot.append(imap_user.name, CRLF_MESSAGE)
    ports = (dovecot.port, dovecot.tls_port)
    client = dovecot.login(imap_user.name)
    try:
        dovecot.stop()
        assert not dovecot.running
        with pytest.raises((imaplib.IMAP4.abort, OSError)):
            client.noop()
        client.shutdown()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((dovecot.host, dovecot.port), timeout=5)
    finally:
        dovecot.start()

    assert (dovecot.port, dovecot.tls_port) == ports
    again = dovecot.login(imap_user.name, tls=True)
    again.select("INBOX", readonly=True)
    assert fetch_raw(again, uid) == CRLF_MESSAGE
    again.logout()


# -- Dovecot with OAuth ------------------------------------------------------------------------


def _xoauth2_login(server: Dovecot, user: str, token: str,
                   challenges: list[bytes] | None = None) -> imaplib.IMAP4:
    """A stdlib XOAUTH2 login; ``challenges`` collects what the server sent."""
    seen = challenges if challenges is not None else []

    def answer(challenge: bytes) -> bytes:
        seen.append(challenge)
        # After a bad token the server's second challenge is its error; an empty answer ends it.
        if len(seen) == 1:
            return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
        return b""

    client = imaplib.IMAP4(server.host, server.port, timeout=10)
    try:
        client.authenticate("XOAUTH2", answer)
    except imaplib.IMAP4.error:
        client.logout()
        raise
    return client


def test_oauth_dovecot_takes_a_granted_token_and_checks_it_every_login(
    dovecot_oauth: Dovecot, oauth_user: ImapUser
) -> None:
    fake = dovecot_oauth.oauth
    assert fake is not None
    greeting = imaplib.IMAP4(dovecot_oauth.host, dovecot_oauth.port, timeout=10)
    assert {"AUTH=XOAUTH2", "AUTH=OAUTHBEARER", "AUTH=PLAIN"} <= set(greeting.capabilities)
    greeting.logout()
    token = f"tok-{oauth_user.name}"
    fake.grant(token, oauth_user.name)
    client = _xoauth2_login(dovecot_oauth, oauth_user.name, token)
    assert client.select("INBOX", readonly=True)[0] == "OK"
    client.logout()
    assert fake.requests[-1] == token

    # A revoke applies to the very next login: nothing caches the first answer.
    fake.revoke(token)
    challenges: list[bytes] = []
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        _xoauth2_login(dovecot_oauth, oauth_user.name, token, challenges)
    assert fake.requests[-2:] == [token, token]
    # The refusal comes as a JSON challenge first (RFC 7628's error), as at Gmail.
    assert len(challenges) == 2 and json.loads(challenges[1])["status"] == "401"


def test_oauth_dovecot_refuses_a_token_of_another_user_and_keeps_passwords(
    dovecot_oauth: Dovecot, oauth_user: ImapUser
) -> None:
    fake = dovecot_oauth.oauth
    assert fake is not None
    fake.grant("tok-of-someone-else", "someone-else")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        _xoauth2_login(dovecot_oauth, oauth_user.name, "tok-of-someone-else")
    asked = len(fake.requests)
    # Passwords go to the passwd-file only, never to the introspection endpoint.
    dovecot_oauth.login(oauth_user.name).logout()
    assert len(fake.requests) == asked


def test_the_plain_dovecot_offers_no_oauth(dovecot: Dovecot) -> None:
    client = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    assert "AUTH=XOAUTH2" not in client.capabilities
    assert dovecot.oauth is None
    client.logout()


# -- FaultProxy --------------------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    """A bare listening socket: the test plays the server and controls every byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    yield listener
    listener.close()


def connect_through(
    proxy: FaultProxy, upstream: socket.socket
) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    server, _ = upstream.accept()
    server.settimeout(10)
    return client, server


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def read_until_reset(sock: socket.socket) -> bytes:
    """Everything that arrives before the connection is reset; fails on a clean close."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        assert chunk, f"closed with FIN, not reset, after {data!r}"
        data += chunk


def test_proxy_forwards_both_ways(upstream: socket.socket) -> None:
    with FaultProxy(*upstream.getsockname()) as proxy:
        client, server = connect_through(proxy, upstream)
        client.sendall(b"A1 NOOP\r\n")
        assert read_exactly(server, 9) == b"A1 NOOP\r\n"
        server.sendall(b"A1 OK\r\n")
        assert read_exactly(client, 7) == b"A1 OK\r\n"
        assert proxy.accepted == 1
        client.close()
        server.close()


def test_cut_after_counts_from_a_marker_split_across_reads(upstream: socket.socket) -> None:
    with FaultProxy(*upstream.getsockname()) as proxy:
        client, server = connect_through(proxy, upstream)
        proxy.cut_after(4, after=b"FETCH (")
        server.sendall(b"* 1 FET")
        # The first half is through before the second is sent, so the proxy sees two reads.
        assert read_exactly(client, 7) == b"* 1 FET"
        server.sendall(b"CH (BODY[] {100}\r\nFrom: x")

        assert read_until_reset(client) == b"CH (BODY"
        with pytest.raises(ConnectionResetError):
            read_until_reset_or_eof(server)
        assert proxy.cuts == 1

        # One-shot: the next connection is left alone.
        client2, server2 = connect_through(proxy, upstream)
        whole = b"* 2 FETCH (BODY[] {3}\r\nabc)\r\n"
        server2.sendall(whole)
        assert read_exactly(client2, len(whole)) == whole
        client2.close()
        server2.close()


def read_until_reset_or_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_cut_after_without_marker_counts_from_now(upstream: socket.socket) -> None:
    with FaultProxy(*upstream.getsockname()) as proxy:
        client, server = connect_through(proxy, upstream)
        server.sendall(b"* OK hello\r\n")
        assert read_exactly(client, 12) == b"* OK hello\r\n"
        proxy.cut_after(1000)
        server.sendall(bytes(range(256)) * 40)
        assert read_until_reset(client) == (bytes(range(256)) * 40)[:1000]


def test_stall_holds_bytes_until_resume(upstream: socket.socket) -> None:
    with FaultProxy(*upstream.getsockname()) as proxy:
        client, server = connect_through(proxy, upstream)
        proxy.stall()
        server.sendall(b"* 3 EXISTS\r\n")
        client.sendall(b"A2 NOOP\r\n")
        client.settimeout(0.3)
        server.settimeout(0.3)
        with pytest.raises(TimeoutError):
            client.recv(100)
        with pytest.raises(TimeoutError):
            server.recv(100)

        proxy.resume()
        client.settimeout(10)
        server.settimeout(10)
        assert read_exactly(client, 12) == b"* 3 EXISTS\r\n"
        assert read_exactly(server, 9) == b"A2 NOOP\r\n"


def test_drop_all_resets_open_connections_and_keeps_listening(upstream: socket.socket) -> None:
    with FaultProxy(*upstream.getsockname()) as proxy:
        pairs = [connect_through(proxy, upstream) for _ in range(2)]
        wait_for(lambda: proxy.open_connections == 2, what="both links up")

        proxy.drop_all()

        for client, server in pairs:
            assert read_until_reset(client) == b""
            with pytest.raises(ConnectionResetError):
                read_until_reset_or_eof(server)
        wait_for(lambda: proxy.open_connections == 0, what="links gone")
        client, server = connect_through(proxy, upstream)
        server.sendall(b"* OK\r\n")
        assert read_exactly(client, 6) == b"* OK\r\n"


def test_cut_mid_fetch_through_dovecot(
    dovecot: Dovecot, imap_user: ImapUser, imap_proxy: FaultProxy
) -> None:
    body = b"".join(b"line %05d of a long message\r\n" % n for n in range(2000))
    uid = dovecot.append(imap_user.name, b"Subject: big\r\n\r\n" + body)
    client = imaplib.IMAP4(dovecot.host, imap_proxy.port, timeout=10)
    client.login(imap_user.name, imap_user.password)
    client.select("INBOX", readonly=True)

    imap_proxy.cut_after(5000, after=b"FETCH (")
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        client.uid("FETCH", str(uid), "(BODY.PEEK[])")
    client.shutdown()
    assert imap_proxy.cuts == 1

    # The server is fine, and so is the next connection through the proxy.
    again = imaplib.IMAP4(dovecot.host, imap_proxy.port, timeout=10)
    again.login(imap_user.name, imap_user.password)
    again.select("INBOX", readonly=True)
    assert fetch_raw(again, uid).endswith(body)
    again.logout()
    assert dovecot.flags(imap_user.name) == {uid: set()}


def test_stall_makes_an_imap_client_time_out(
    dovecot: Dovecot, imap_user: ImapUser, imap_proxy: FaultProxy
) -> None:
    client = imaplib.IMAP4(dovecot.host, imap_proxy.port, timeout=10)
    client.login(imap_user.name, imap_user.password)
    client.sock.settimeout(0.3)
    imap_proxy.stall()
    with pytest.raises(TimeoutError):
        client.noop()
    client.shutdown()
    imap_proxy.resume()


def test_uid_search_with_a_star_range_returns_the_last_message(
    dovecot: Dovecot, imap_user: ImapUser, session: imaplib.IMAP4
) -> None:
    # connectors.md G10, kept here as a fact about the server the IMAP source is tested on.
    uids = [dovecot.append(imap_user.name, CRLF_MESSAGE) for _ in range(3)]
    session.select("INBOX", readonly=True)
    status, data = session.uid("SEARCH", f"UID {uids[-1] + 5}:*")
    assert status == "OK"
    assert re.findall(rb"\d+", data[0]) == [str(uids[-1]).encode()]
