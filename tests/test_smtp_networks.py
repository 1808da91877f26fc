"""smtp.allowed_networks: clients outside get 554 5.7.1 at connection, over real sockets."""

from __future__ import annotations

import smtplib
import socket
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.conftest import base_config, write_config
from tests.test_smtp_intake import SIMPLE
from tests.test_smtp_protocol import daemon_with_smtp


def subdir(directory: Path, name: str) -> Path:
    """A directory of its own (config file, database) for a second daemon in one test."""
    path = directory / name
    path.mkdir()
    return path


def test_a_client_inside_allowed_networks_is_greeted(start_daemon: Any, tmp_path: Path) -> None:
    daemon = daemon_with_smtp(start_daemon, tmp_path,
                              allowed_networks=["10.0.0.0/8", "127.0.0.0/8"])
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as client:
        assert client.sendmail("alice@acme.example", ["support@example.com"], SIMPLE) == {}
    assert len(daemon.rows()) == 1


def _refused_at_connect(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=10) as sock:
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        return reply  # everything until the server closed


def test_a_client_outside_allowed_networks_gets_554_and_is_closed(
    start_daemon: Any, tmp_path: Path
) -> None:
    daemon = daemon_with_smtp(start_daemon, tmp_path, allowed_networks=["10.0.0.0/8"],
                        max_connections=1)
    with structlog.testing.capture_logs() as logged:
        for _ in range(3):  # no slot is held: max_connections=1 is never reached
            reply = _refused_at_connect("127.0.0.1", daemon.port)
            assert reply == b"554 5.7.1 Connections from 127.0.0.1 are not accepted here\r\n"
    refused = [e for e in logged if e["event"] == "smtp.connection_refused"]
    assert len(refused) == 3
    assert refused[0]["peer"] == "127.0.0.1"
    assert refused[0]["reason"] == "not in smtp.allowed_networks"
    assert daemon.rows() == []


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_clients_are_matched_against_ipv6_networks(start_daemon: Any, tmp_path: Path
                                                        ) -> None:
    only_v4 = daemon_with_smtp(start_daemon, tmp_path, host="::1", allowed_networks=["127.0.0.0/8"])
    assert _refused_at_connect("::1", only_v4.port).startswith(
        b"554 5.7.1 Connections from ::1 ")
    with_v6 = daemon_with_smtp(start_daemon, subdir(tmp_path, "v6"),
                         host="::1", allowed_networks=["127.0.0.0/8", "::1/128"])
    with smtplib.SMTP("::1", with_v6.port, timeout=10) as client:
        assert client.ehlo()[0] == 250


def test_client_networks_match_mapped_and_plain_addresses() -> None:
    from ipaddress import ip_network

    from ingestd.intake.client_networks import ClientNetworks

    networks = ClientNetworks([ip_network("192.0.2.0/24"), ip_network("2001:db8::/32")])
    assert networks.allows("192.0.2.7")
    assert networks.allows("::ffff:192.0.2.7")  # an IPv4 client on a dual-stack socket
    assert networks.allows("2001:db8::1")
    assert not networks.allows("198.51.100.1")
    assert not networks.allows("::ffff:198.51.100.1")
    assert not networks.allows("::1")
    assert not networks.allows("?")  # no address known: not allowed
    assert ClientNetworks([]).allows("?")  # nothing configured: everyone


def test_allowed_networks_must_be_networks(tmp_path: Path) -> None:
    from ingestd.config import load_settings
    from ingestd.errors import ConfigError

    config = base_config(f"sqlite:///{tmp_path}/ingestd.db")
    config["smtp"]["allowed_networks"] = ["10.0.0.0/8", "10.0.0.1/8", "not-a-net"]
    with pytest.raises(ConfigError) as raised:
        load_settings(write_config(tmp_path, config))
    text = str(raised.value)
    assert "smtp.allowed_networks" in text and "10.0.0.1/8" in text
