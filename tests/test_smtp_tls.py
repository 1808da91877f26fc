"""STARTTLS with a configured certificate (and its reload on SIGHUP), and allowed client
networks, over real sockets; the certificates come from a test CA (trustme)."""

from __future__ import annotations

import hashlib
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import IN_CI, REPO, base_config, write_config
from tests.support.logged_daemon import events, start_logged_daemon
from tests.support.postgres import free_port
from tests.support.waiting import wait_for
from tests.test_drain import Session
from tests.test_smtp_intake import BARE_LINE_END_CASES, SIMPLE, SMUGGLED_SECOND_MESSAGE


@dataclass
class ServerCert:
    certificate_file: Path
    key_file: Path
    der: bytes  # the leaf, as a client's getpeercert(binary_form=True) sees it

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"certificate_file": str(self.certificate_file),
                "key_file": str(self.key_file), **extra}


def issue(ca: trustme.CA, directory: Path, name: str) -> ServerCert:
    """A server certificate for 127.0.0.1, ::1 and localhost, written as PEM files."""
    cert = ca.issue_cert("127.0.0.1", "::1", "localhost")
    certificate_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    certificate_file.write_bytes(b"".join(pem.bytes() for pem in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    return ServerCert(certificate_file, key_file, der)


def subdir(directory: Path, name: str) -> Path:
    """A directory of its own (config file, database) for a second daemon in one test."""
    path = directory / name
    path.mkdir()
    return path


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_cert(ca: trustme.CA, tmp_path: Path) -> ServerCert:
    return issue(ca, tmp_path, "server")


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client that verifies the server against the test CA only."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def tls_daemon(start_daemon: Any, tmp_path: Path, db_url: str | None = None,
               **smtp: Any) -> Any:
    config = base_config(db_url or f"sqlite:///{tmp_path}/ingestd.db")
    config["smtp"].update(smtp)
    return start_daemon(write_config(tmp_path, config))


class TlsSession(Session):
    """The raw client of test_drain, able to switch to TLS after its STARTTLS."""

    def start_tls(self, context: ssl.SSLContext) -> None:
        assert self.buffer == b"", "nothing may be read ahead of the handshake"
        self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")


def starttls_client(port: int, ca: trustme.CA) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo()
    code, reply = client.starttls(context=client_context(ca))
    assert code == 220, reply
    client.ehlo()
    return client


def test_starttls_is_offered_only_with_a_certificate(start_daemon: Any, tmp_path: Path,
                                                     server_cert: ServerCert) -> None:
    plain = tls_daemon(start_daemon, subdir(tmp_path, "plain"))
    with smtplib.SMTP("127.0.0.1", plain.port, timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        code, reply = client.docmd("STARTTLS")
        assert (code, reply) == (454, b"4.7.0 TLS not available")  # no handshake
    secured = tls_daemon(start_daemon, tmp_path, tls=server_cert.config())
    with smtplib.SMTP("127.0.0.1", secured.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.has_extn("8bitmime")


def test_a_transaction_over_tls_is_stored_byte_exact_before_250(
    start_daemon: Any, tmp_path: Path, db_url: str, ca: trustme.CA, server_cert: ServerCert
) -> None:
    daemon = tls_daemon(start_daemon, tmp_path, db_url, tls=server_cert.config())
    with starttls_client(daemon.port, ca) as client:
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.getpeercert(binary_form=True) == server_cert.der
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert not client.has_extn("starttls")  # not offered twice
        assert not client.has_extn("auth")  # an MX's port: no SMTP AUTH, even inside TLS
        code, reply = client.docmd("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==")
        assert (code, reply[:5]) == (502, b"5.5.1")
        client.mail("alice@acme.example")
        client.rcpt("support@example.com")
        code, reply = client.data(SIMPLE)
        assert code == 250, reply
        rows = daemon.rows()  # no waiting: committed before the 250
    assert [bytes(r.raw) for r in rows] == [SIMPLE]
    assert rows[0].envelope_from == "alice@acme.example"
    assert str(rows[0].id).encode() in reply


def test_the_server_context_speaks_tls_1_2_or_later(server_cert: ServerCert) -> None:
    from ingestd.config.listeners import SmtpTlsSettings
    from ingestd.intake.smtp_tls import load_server_tls

    tls = load_server_tls(SmtpTlsSettings(certificate_file=server_cert.certificate_file,
                                          key_file=server_cert.key_file))
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert tls.context.verify_mode == ssl.CERT_NONE  # an MX asks no client certificate
    assert tls.fingerprint == hashlib.sha256(server_cert.der).hexdigest()
    assert tls.require_starttls is False


def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path, ca: trustme.CA,
                                                      server_cert: ServerCert) -> None:
    from cryptography.hazmat.primitives import serialization

    from ingestd.config.listeners import SmtpTlsSettings
    from ingestd.errors import CertificateUnusable
    from ingestd.intake.smtp_tls import load_server_tls

    key = serialization.load_pem_private_key(server_cert.key_file.read_bytes(), None)
    server_cert.key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(CertificateUnusable, match="the key is encrypted"):
        load_server_tls(SmtpTlsSettings(certificate_file=server_cert.certificate_file,
                                        key_file=server_cert.key_file))


def _require_swaks() -> str:
    path = shutil.which("swaks")
    # swaks does TLS only with Perl's Net::SSLeay, a package it merely recommends.
    supported = path is not None and "=== TLS supported" in subprocess.run(
        [path, "--support"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        check=False).stdout
    if not supported:
        if IN_CI:
            pytest.fail("swaks with TLS is missing; CI must run the swaks --tls test")
        pytest.skip("swaks with TLS not installed (apt-get install swaks libnet-ssleay-perl)")
    assert path is not None
    return path


def test_swaks_delivers_over_starttls(start_daemon: Any, tmp_path: Path, ca: trustme.CA,
                                      server_cert: ServerCert) -> None:
    """A real MTA-like client: swaks --tls, verifying the certificate against the test CA."""
    swaks = _require_swaks()
    daemon = tls_daemon(start_daemon, tmp_path, tls=server_cert.config())
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    message = tmp_path / "message.eml"
    message.write_bytes(SIMPLE)
    done = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(daemon.port), "--tls",
         "--tls-verify", "--tls-ca-path", str(ca_file), "--helo", "mta.acme.example",
         "--from", "alice@acme.example", "--to", "support@example.com",
         "--data", f"@{message}"],
        capture_output=True, timeout=60, check=False)
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, output + done.stderr.decode(errors="replace")
    assert "<-  220 Ready to start TLS" in output
    assert "=== TLS started with cipher TLSv1." in output
    assert "<~  250 2.0.0 OK queued as" in output  # over TLS: swaks marks it ~
    assert "AUTH" not in output  # not offered, not even inside TLS
    rows = daemon.rows()
    assert len(rows) == 1
    assert bytes(rows[0].raw).startswith(SIMPLE)  # swaks ends its DATA with one more CRLF


def test_commands_pipelined_after_starttls_are_not_executed(
    start_daemon: Any, tmp_path: Path, ca: trustme.CA, server_cert: ServerCert
) -> None:
    """CVE-2011-0411 class: plaintext sent with STARTTLS must not count as inside TLS."""
    daemon = tls_daemon(start_daemon, tmp_path, tls=server_cert.config())
    session = TlsSession(daemon.port)
    assert session.command(b"EHLO client.example").startswith(b"250")
    session.sock.sendall(b"STARTTLS\r\nEHLO evil.example\r\nMAIL FROM:<evil@evil.example>\r\n"
                         b"RCPT TO:<support@example.com>\r\n")
    assert session.reply().startswith(b"220")
    session.start_tls(client_context(ca))
    # Had the injected lines run, their replies (250 ...) would come first, and this
    # session would already be in a transaction.
    assert session.command(b"DATA").startswith(b"503")
    assert session.command(b"MAIL FROM:<alice@acme.example>").startswith(b"503")  # no EHLO
    session.start_data()
    session.sock.sendall(SIMPLE + b".\r\n")
    assert session.reply().startswith(b"250 2.0.0")
    assert [r.envelope_from for r in daemon.rows()] == ["alice@acme.example"]


def test_require_starttls_refuses_mail_in_clear(start_daemon: Any, tmp_path: Path,
                                                ca: trustme.CA, server_cert: ServerCert
                                                ) -> None:
    daemon = tls_daemon(start_daemon, tmp_path,
                        tls=server_cert.config(require_starttls=True))
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        client.ehlo()
        code, reply = client.mail("alice@acme.example")
        assert (code, reply[:5]) == (530, b"5.7.0")
    with starttls_client(daemon.port, ca) as client:
        assert client.sendmail("alice@acme.example", ["support@example.com"], SIMPLE) == {}
    assert len(daemon.rows()) == 1


@pytest.mark.parametrize("bad", BARE_LINE_END_CASES.values(), ids=BARE_LINE_END_CASES.keys())
def test_bare_cr_or_lf_is_refused_over_tls(start_daemon: Any, tmp_path: Path, ca: trustme.CA,
                                           server_cert: ServerCert, bad: bytes) -> None:
    """The twin of test_smtp_intake's test, inside the TLS session."""
    daemon = tls_daemon(start_daemon, tmp_path, tls=server_cert.config())
    with starttls_client(daemon.port, ca) as client:
        client.mail("alice@acme.example")
        client.rcpt("support@example.com")
        client.putcmd("data")
        assert client.getreply()[0] == 354
        client.send(bad + b"\r\n.\r\n")
        code, reply = client.getreply()
        assert (code, reply[:5]) == (550, b"5.6.0"), reply
    assert daemon.rows() == []


def test_smuggled_second_message_is_not_split_over_tls(
    start_daemon: Any, tmp_path: Path, ca: trustme.CA, server_cert: ServerCert
) -> None:
    daemon = tls_daemon(start_daemon, tmp_path, tls=server_cert.config())
    with starttls_client(daemon.port, ca) as client:
        client.mail("alice@acme.example")
        client.rcpt("support@example.com")
        client.putcmd("data")
        assert client.getreply()[0] == 354
        client.send(SMUGGLED_SECOND_MESSAGE + b".\r\n")
        assert client.getreply()[0] == 550
        assert client.noop()[0] == 250  # one reply per transaction: nothing smuggled ran
    assert daemon.rows() == []


def _peer_certificate(port: int, ca: trustme.CA, session: TlsSession | None = None) -> bytes:
    session = session or TlsSession(port)
    assert session.command(b"EHLO client.example").startswith(b"250")
    assert session.command(b"STARTTLS").startswith(b"220")
    session.start_tls(client_context(ca))
    assert isinstance(session.sock, ssl.SSLSocket)
    certificate = session.sock.getpeercert(binary_form=True)
    assert certificate is not None
    session.sock.close()
    return certificate


def test_sighup_loads_a_new_certificate_for_new_sessions(tmp_path: Path, ca: trustme.CA
                                                         ) -> None:
    first = issue(ca, tmp_path, "server")
    renewed = issue(ca, subdir(tmp_path, "renewed"), "server")
    other = issue(ca, tmp_path, "other")
    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["smtp"].update(port=free_port(), tls=first.config())
    daemon, _, log = start_logged_daemon(config, tmp_path, write_config)
    port = config["smtp"]["port"]
    try:
        wait_for(lambda: daemon.poll() is not None or events(log, "daemon.ready"), 30,
                 "the daemon ready")
        assert daemon.poll() is None, log.read_text()
        assert _peer_certificate(port, ca) == first.der
        early = TlsSession(port)  # connected before the renewal: keeps the old certificate

        # A renewal writes new contents under the same names.
        shutil.copyfile(renewed.certificate_file, first.certificate_file)
        shutil.copyfile(renewed.key_file, first.key_file)
        daemon.send_signal(signal.SIGHUP)
        reloaded = wait_for(lambda: events(log, "smtp.tls_reloaded"), 20, "the reload")
        assert reloaded[0]["changed"] is True
        assert _peer_certificate(port, ca) == renewed.der
        assert _peer_certificate(port, ca, early) == first.der

        # Other file names apply without a restart; a broken key keeps the served one.
        config["smtp"]["tls"] = other.config()
        other.key_file.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n"
                                  "-----END PRIVATE KEY-----\n")
        write_config(tmp_path, config)
        daemon.send_signal(signal.SIGHUP)
        failed = wait_for(lambda: events(log, "smtp.tls_reload_failed"), 20, "the refusal")
        assert failed[0]["level"] == "error"
        assert str(other.key_file) in failed[0]["error"]
        assert _peer_certificate(port, ca) == renewed.der
        wait_for(lambda: len(events(log, "config.reloaded")) == 2, 20, "the second reload")
        assert not events(log, "config.restart_needed")  # smtp.tls is reloadable
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    assert daemon.returncode == 0, log.read_text()[-2000:]


def test_an_unusable_certificate_stops_the_start(tmp_path: Path,
                                                 server_cert: ServerCert) -> None:
    server_cert.key_file.unlink()
    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["smtp"]["tls"] = server_cert.config()
    path = write_config(tmp_path, config)
    done = subprocess.run([sys.executable, "-m", "ingestd", "run", "--config", str(path)],
                          capture_output=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 78, done  # EX_CONFIG
    assert (f"smtp.tls: {server_cert.key_file}: No such file or directory"
            in done.stderr.decode()), done.stderr


def test_check_loads_the_certificate(tmp_path: Path, server_cert: ServerCert,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ingestd.cli.main import main

    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["smtp"]["tls"] = server_cert.config()
    path = write_config(tmp_path, config)
    assert main(["check", "--config", str(path)]) == 0
    stranger = issue(trustme.CA(), subdir(tmp_path, "other"), "other")
    server_cert.key_file.write_bytes(stranger.key_file.read_bytes())  # not this cert's key
    assert main(["check", "--config", str(path)]) == 78
    assert "smtp.tls:" in capsys.readouterr().err


def test_merged_settings_takes_the_new_tls_block(tmp_path: Path, server_cert: ServerCert
                                                 ) -> None:
    from ingestd.config import load_settings
    from ingestd.reload import merged_settings

    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    old = load_settings(write_config(tmp_path, config))
    config["smtp"]["tls"] = server_cert.config()
    new = load_settings(write_config(tmp_path, config))
    merged, _, waiting = merged_settings(old, new)
    assert merged.smtp.tls == new.smtp.tls and waiting == []
    config["smtp"]["max_connections"] = 7
    _, _, waiting = merged_settings(old, load_settings(write_config(tmp_path, config)))
    assert waiting == ["smtp"]


def _greeted(port: int) -> bool:
    """A new client is greeted (220), not turned away for lack of a slot."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.recv(200).startswith(b"220")


def _to_starttls(port: int) -> Session:
    session = Session(port)
    assert session.command(b"EHLO x").startswith(b"250")
    assert session.command(b"STARTTLS").startswith(b"220")
    return session


def test_a_stalled_handshake_ends_at_the_idle_timeout_and_frees_its_slot(
        start_daemon: Any, tmp_path: Path, server_cert: ServerCert) -> None:
    """STARTTLS, then no ClientHello: the connection is dropped at the idle timeout and its
    slot (the only one) is free again. (Found by review: Python's TLS layer never reported
    the connection lost, so the slot was held for good.)"""
    daemon = tls_daemon(start_daemon, tmp_path, tls=server_cert.config(),
                        max_connections=1, max_connections_per_ip=1,
                        idle_timeout_seconds=1, session_timeout_seconds=2)
    session = _to_starttls(daemon.port)
    session.sock.settimeout(10)
    assert session.sock.recv(100) == b""  # closed by the server, well before 10 s
    session.sock.close()
    assert wait_for(lambda: _greeted(daemon.port), 10, "the slot freed")


@pytest.mark.parametrize("client", ["hangs up", "sends garbage"])
def test_a_failed_handshake_frees_its_slot(start_daemon: Any, tmp_path: Path,
                                           server_cert: ServerCert, client: str) -> None:
    daemon = tls_daemon(start_daemon, tmp_path, tls=server_cert.config(),
                        max_connections=2, max_connections_per_ip=2)
    for _ in range(3):
        session = _to_starttls(daemon.port)
        if client == "sends garbage":
            session.sock.sendall(b"this is not a TLS ClientHello\r\n" * 4)
        session.sock.close()
        assert wait_for(lambda: _greeted(daemon.port), 10, "a slot free")
