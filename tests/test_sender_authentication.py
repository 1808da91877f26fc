"""Sender authentication: a From address speaks for an agent only when a trusted MTA (or our
own DKIM check) proved it; forged Authentication-Results change nothing."""

from __future__ import annotations

import base64
import ipaddress
import json
from pathlib import Path
from typing import Any

import dkim as dkimpy
import pytest
import sqlalchemy as sa
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ingestd.authentication import dkim as our_dkim
from ingestd.authentication.alignment import aligned
from ingestd.authentication.results import parse, topmost_fields
from ingestd.authentication.verdict import judge
from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.config.authentication import SenderAuthentication, peer_ip
from ingestd.db.engine import make_engine
from ingestd.db.tables import USERS
from ingestd.errors import DnsUnavailable
from ingestd.workers.worker import Worker
from tests.conftest import write_config
from tests.inbox_env import INBOX_DIRECTORY, INBOX_MAILBOXES, NINA, OMAR
from tests.processing_env import ProcessingEnv, import_directory, processing_config

MX = "mx1.our-company.example"
AGENT = "nina@example.com"  # an agent in tests/processing_env.DIRECTORY


# --- reading Authentication-Results --------------------------------------------------------

def test_several_results_comments_and_a_version_are_read() -> None:
    fields = parse(
        f'{MX} 1; spf=pass (sender (nested) IP is 192.0.2.1) smtp.mailfrom=a@Example.com;\r\n'
        ' dkim=pass (good signature) header.d=Example.COM header.s="sel;1";'
        ' dmarc=fail (p=reject) header.from=example.com')
    assert fields is not None and fields.authserv_id == MX
    assert [(r.method, r.result) for r in fields.results] == [
        ("spf", "pass"), ("dkim", "pass"), ("dmarc", "fail")]
    assert fields.results[0].properties["smtp.mailfrom"] == "a@Example.com"
    assert fields.results[1].properties["header.s"] == "sel;1"  # ; inside quotes
    assert fields.results[1].domain() == "example.com"
    assert fields.results[2].domain() == "example.com"


def test_header_i_gives_the_domain_when_header_d_is_missing() -> None:
    """Gmail names the signing identity (header.i), not header.d."""
    fields = parse("mx.google.com; dkim=pass header.i=@mail.example.org header.s=2023")
    assert fields is not None and fields.results[0].domain() == "mail.example.org"


def test_exchange_onlines_field_names_no_authserv_id_and_has_bare_domains() -> None:
    fields = parse("spf=pass (sender IP is 104.47.124.209) smtp.helo=x.outlook.com; "
                   "outlook.com; dkim=none (message not signed) header.d=none;outlook.com; "
                   "dmarc=pass action=none header.from=outlook.com;compauth=pass reason=100")
    assert fields is not None and fields.authserv_id is None
    assert [(r.method, r.result) for r in fields.results] == [
        ("spf", "pass"), ("dkim", "none"), ("dmarc", "pass"), ("compauth", "pass")]
    assert fields.results[1].domain() is None  # header.d=none


@pytest.mark.parametrize("value", [
    f"{MX}; dkim=pass (never closed", f'{MX}; dkim=pass header.d="open', "", "   ;",
    "(only a comment)",
])
def test_unreadable_fields_do_not_count_and_do_not_raise(value: str) -> None:
    assert parse(value) is None


def test_none_and_an_unknown_statement_give_no_results() -> None:
    fields = parse(f"{MX}; none")
    assert fields is not None and fields.results == ()
    odd = parse(f"{MX}; something odd here; dkim=pass header.d=example.com")
    assert odd is not None and [r.method for r in odd.results] == ["dkim"]


def test_only_the_topmost_run_of_fields_counts() -> None:
    headers = [("Received", "by us"), ("Authentication-Results", "a"),
               ("authentication-results", "b"), ("Received", "by them"),
               ("Authentication-Results", "forged")]
    assert topmost_fields(headers) == ["a", "b"]
    assert topmost_fields([("From", "x@y.example")]) == []


@pytest.mark.parametrize("signed,author,expected", [
    ("example.com", "example.com", True),
    ("mail.example.com", "example.com", True),
    ("example.com", "news.example.com", True),
    ("evil.example", "example.com", False),
    ("example.co.uk", "other.co.uk", False),
    ("co.uk", "co.uk", False),  # a public suffix is no one's
    (None, "example.com", False),
])
def test_relaxed_alignment(signed: str | None, author: str, expected: bool) -> None:
    assert aligned(signed, author) is expected


# --- whose fields count --------------------------------------------------------------------

def _raw(sender: str = AGENT, *, top: tuple[str, ...] = (), below: tuple[str, ...] = (),
         subject: str = "Closing #1", body: str = "Done.", froms: int = 1) -> bytes:
    lines = [f"Authentication-Results: {value}" for value in top]
    lines.append(f"Received: from mail.sender.example ([198.51.100.7]) by {MX}; "
                 "Fri, 4 Dec 2026 10:00:00 +0000")
    lines += [f"Authentication-Results: {value}" for value in below]
    lines += [f"From: Nina <{sender}>"] * froms
    lines += ["To: support@example.com", f"Subject: {subject}",
              f"Message-ID: <{abs(hash((sender, top, below, subject, body, froms)))}@x.example>",
              "", body, ""]
    return "\r\n".join(lines).encode()


@pytest.mark.parametrize("peer,ip", [
    ("192.0.2.25:40000", "192.0.2.25"), ("::1:5000", "::1"), ("[2001:db8::1]:25", "2001:db8::1"),
    ("2001:db8::25:40000", "2001:db8::25"), ("::ffff:192.0.2.9:25", "192.0.2.9"),
    ("192.0.2.7", "192.0.2.7"), ("nonsense", None), (None, None),
])
def test_the_smtp_peer_as_stored_gives_the_client_ip(peer: str | None, ip: str | None) -> None:
    assert peer_ip(peer) == (ipaddress.ip_address(ip) if ip else None)


_POLICY = SenderAuthentication.model_validate({
    "trusted_authserv_ids": [MX], "trusted_relays": ["192.0.2.0/24"], "require_for": ["agent"]})
_PASS = f"{MX}; dmarc=pass header.from=example.com"


@pytest.mark.parametrize("source,peer,field,expected", [
    ("smtp", "192.0.2.25:40000", _PASS, True),
    ("smtp", "[::ffff:192.0.2.25]:40000", _PASS, True),
    ("smtp", "::ffff:192.0.2.25:5000", _PASS, True),  # IPv6 as the listener stores it
    ("smtp", "203.0.113.9:40000", _PASS, None),  # the client wrote it itself
    ("stdin", None, _PASS, True),
    ("file", None, _PASS, True),
    ("imap", None, _PASS, True),
    ("imap", None, "mx.google.com; dmarc=pass header.from=example.com", None),
    ("gmail", None, "mx.google.com; dmarc=pass header.from=example.com", True),
    ("graph", None, "spf=pass smtp.mailfrom=example.com; dmarc=pass action=none "
                    "header.from=example.com", True),
    ("gmail", None, "spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com",
     None),
    ("smtp", "192.0.2.25:40000", "other.example; dmarc=pass header.from=example.com", None),
])
def test_whose_fields_count(source: str, peer: str | None, field: str,
                            expected: bool | None) -> None:
    verdict = judge(_raw(top=(field,)), AGENT, _POLICY, source=source, peer=peer)
    assert verdict.verified is expected, verdict.why


@pytest.mark.parametrize("field,expected", [
    (f"{MX}; dmarc=pass header.from=example.com", True),
    (f"{MX}; dmarc=pass header.from=evil.example", False),  # DMARC for another From
    (f"{MX}; dkim=pass header.d=mail.example.com; dmarc=none", True),
    (f"{MX}; dkim=pass header.d=evil.example; dmarc=none", False),
    (f"{MX}; dkim=fail header.d=example.com; dmarc=fail header.from=example.com", False),
    (f"{MX}; spf=pass smtp.mailfrom=example.com", False),  # SPF alone proves no From
    (f"{MX}; none", False),
])
def test_what_proves_the_from_address(field: str, expected: bool) -> None:
    verdict = judge(_raw(top=(field,)), AGENT, _POLICY, source="file", peer=None)
    assert verdict.verified is expected, verdict.why


def test_dns_trouble_defers_the_dkim_verdict() -> None:
    def away(name: str, timeout: float) -> bytes | None:
        raise DnsUnavailable("timeout")

    key = _Key()
    raw = key.signed(_raw(), domain="example.com")
    policy = _POLICY.model_copy(update={"verify_dkim": True})
    verdict = judge(raw, AGENT, policy, source="file", peer=None, lookup=away)
    assert (verdict.verified, verdict.deferred) == (None, True)


# --- through the daemon and `ingest` ------------------------------------------------------

def _env(tmp_path: Path, db_url: str, via: str, start_daemon: Any = None, *,
         workers: int = 1, **policy: Any) -> ProcessingEnv:
    config = processing_config(db_url, workers=workers)
    config["sender_authentication"] = {"trusted_authserv_ids": [MX],
                                       "trusted_relays": ["127.0.0.1/32"],
                                       "require_for": ["agent"], **policy}
    path = write_config(tmp_path, config)
    import_directory(path)
    if via == "smtp":
        daemon = start_daemon(path)
        return ProcessingEnv(path, daemon.engine, "smtp", daemon.port)
    return ProcessingEnv(path, make_engine(load_settings(path).database), via)


def _action(env: ProcessingEnv, row: Any) -> dict[str, Any]:
    assert row.status == "processed", (row.status, row.reason)
    action: dict[str, Any] = env.ticket(row.ticket_id)["actions"][-1]
    return action


def _users_named(env: ProcessingEnv, address: str) -> int:
    with env.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(USERS)
                                .where(USERS.c.email == address)).scalar_one())


def test_spoofed_agent_mail_over_smtp_changes_nothing(
        tmp_path: Path, sqlite_url: str, start_daemon: Any) -> None:
    """Over a real SMTP connection from a trusted relay: only the trusted MTA's passing
    verdict makes the agent's address speak for the agent; missing, failing and forged
    fields leave an unknown sender, and no user is made for the agent's address."""
    env = _env(tmp_path, sqlite_url, "smtp", start_daemon)
    cases: list[tuple[str, bytes, str, bool | None]] = [
        ("none", _raw(subject="no field"), "unknown", None),
        ("failing", _raw(subject="failing", top=(
            f"{MX}; dkim=fail header.d=example.com; dmarc=fail header.from=example.com",)),
         "unknown", False),
        ("forged below", _raw(subject="forged", top=(f"{MX}; dmarc=none",),
                              below=(_PASS,)), "unknown", False),
        ("dmarc pass", _raw(subject="dmarc", top=(_PASS,)), "agent", True),
        ("dkim aligned", _raw(subject="dkim", top=(
            f"{MX}; dkim=pass header.d=mail.example.com; dmarc=none",)), "agent", True),
        ("dkim unaligned", _raw(subject="dkim other", top=(
            f"{MX}; dkim=pass header.d=evil.example; dmarc=none",)), "unknown", False),
    ]
    for name, raw, kind, verified in cases:
        action = _action(env, env.deliver("", raw=raw))
        assert (action["sender_kind"], action["sender_verified"]) == (kind, verified), name
    assert _users_named(env, AGENT) == 0


def test_a_client_that_is_not_a_trusted_relay_cannot_vouch_for_itself(
        tmp_path: Path, sqlite_url: str, start_daemon: Any) -> None:
    """The topmost field naming our MTA, sent by a client connecting directly (not one of
    trusted_relays): ignored, and with on_fail: quarantine the message is held."""
    env = _env(tmp_path, sqlite_url, "smtp", start_daemon, trusted_relays=["192.0.2.0/24"],
               on_fail="quarantine")
    row = env.deliver("", raw=_raw(top=(_PASS,)))
    assert (row.status, row.reason) == ("quarantined", "unauthenticated-sender")
    # Other senders are not affected.
    other = env.deliver("", raw=_raw("alice@acme.example", top=(_PASS,), subject="hello"))
    assert _action(env, other)["sender_kind"] == "user"
    assert _users_named(env, AGENT) == 0


def test_quarantined_unauthenticated_mail_can_be_retried(
        tmp_path: Path, sqlite_url: str) -> None:
    """on_fail: quarantine holds mail nothing proves; retried once the MTA that judged it
    is trusted, it becomes the agent's."""
    env = _env(tmp_path, sqlite_url, "ingest", workers=0, on_fail="quarantine")
    mx2 = "mx2.our-company.example"
    held = env.deliver("", raw=_raw(top=(f"{mx2}; dmarc=pass header.from=example.com",)))
    assert (held.status, held.reason) == ("quarantined", "unauthenticated-sender")
    forged = env.deliver("", raw=_raw(subject="forged", top=(f"{MX}; dmarc=none",),
                                      below=(_PASS,)))
    assert (forged.status, forged.reason) == ("quarantined", "unauthenticated-sender")

    config = yaml.safe_load(env.config_path.read_text())
    config["sender_authentication"]["trusted_authserv_ids"].append(mx2)
    env.config_path.write_text(yaml.safe_dump(config))
    assert env.cli("quarantine", "retry", "--all") == 0
    worker = Worker(env.engine, load_settings(env.config_path), "test-worker")
    results = [worker.run_once() for _ in range(2)]
    outcomes = {result[0]: result[1] for result in results if result is not None}
    assert outcomes[held.id].result == "ticket_created"
    assert (outcomes[forged.id].status, outcomes[forged.id].reason) == (
        "quarantined", "unauthenticated-sender")
    ticket_id = outcomes[held.id].ticket_id
    assert ticket_id is not None
    assert env.ticket(ticket_id)["actions"][0]["sender_kind"] == "agent"


def test_several_from_headers_need_the_proof(tmp_path: Path, sqlite_url: str) -> None:
    env = _env(tmp_path, sqlite_url, "ingest", workers=0)
    proven = env.deliver("", raw=_raw(froms=2, top=(_PASS,), subject="two froms, proven"))
    assert _action(env, proven)["sender_kind"] == "agent"
    unproven = env.deliver("", raw=_raw(froms=2, subject="two froms"))
    action = _action(env, unproven)
    assert (action["sender_kind"], action["sender_verified"]) == ("unknown", None)
    assert "several From headers" in unproven.reason


def test_the_verdict_is_on_the_action_in_tickets_show_json(
        tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    env = _env(tmp_path, sqlite_url, "ingest", workers=0)
    rows = [env.deliver("", raw=_raw(subject="true", top=(_PASS,))),
            env.deliver("", raw=_raw(subject="false", top=(f"{MX}; dmarc=fail",))),
            env.deliver("", raw=_raw(subject="null"))]
    seen = []
    for row in rows:
        capsys.readouterr()
        assert env.cli("tickets", "show", str(row.ticket_id), "--json") == 0
        seen.append(json.loads(capsys.readouterr().out)["actions"][-1]["sender_verified"])
    assert seen == [True, False, None]


def test_off_by_default_nothing_is_checked(tmp_path: Path, sqlite_url: str) -> None:
    env = _env(tmp_path, sqlite_url, "ingest", workers=0, require_for=[])
    action = _action(env, env.deliver("", raw=_raw(below=(_PASS,))))
    assert (action["sender_kind"], action["sender_verified"]) == ("agent", None)


# --- our own DKIM check ---------------------------------------------------------------------

class _Key:
    """A fresh RSA key, its DNS record, and a signer (dkimpy) for test messages."""

    selector = "test"

    def __init__(self) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = private.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption())
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        self.asked: list[str] = []

    def signed(self, raw: bytes, *, domain: str) -> bytes:
        signature: bytes = dkimpy.sign(raw, self.selector.encode(), domain.encode(), self.pem,
                                       include_headers=[b"from", b"to", b"subject",
                                                        b"message-id"])
        return signature + raw

    def lookup(self, name: str, timeout: float) -> bytes | None:
        self.asked.append(name)
        return self.record if name.startswith(f"{self.selector}._domainkey.") else None


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> _Key:
    made = _Key()
    monkeypatch.setattr(our_dkim, "dns_lookup", made.lookup)
    return made


def test_a_dkim_signed_message_is_verified_by_ingestd(
        tmp_path: Path, sqlite_url: str, key: _Key) -> None:
    """verify_dkim: with no trusted field, the signature is checked with the key DNS gives
    (here: the injected lookup); a tampered body, another domain's key, or no signature
    prove nothing."""
    env = _env(tmp_path, sqlite_url, "ingest", workers=0, verify_dkim=True)
    good = env.deliver("", raw=key.signed(_raw(subject="signed"), domain="example.com"))
    action = _action(env, good)
    assert (action["sender_kind"], action["sender_verified"]) == ("agent", True)
    assert "DKIM signature d=example.com verified by ingestd" in good.reason
    assert key.asked == ["test._domainkey.example.com"]

    tampered = key.signed(_raw(subject="tampered"), domain="example.com").replace(
        b"Done.", b"Gone.")
    action = _action(env, env.deliver("", raw=tampered))
    assert (action["sender_kind"], action["sender_verified"]) == ("unknown", False)

    other = env.deliver("", raw=key.signed(_raw(subject="other domain"), domain="evil.example"))
    action = _action(env, other)
    assert (action["sender_kind"], action["sender_verified"]) == ("unknown", False)
    assert "not aligned" in other.reason

    action = _action(env, env.deliver("", raw=_raw(subject="unsigned")))
    assert (action["sender_kind"], action["sender_verified"]) == ("unknown", None)
    assert _users_named(env, AGENT) == 0


def test_a_trusted_field_is_preferred_to_our_own_check(
        tmp_path: Path, sqlite_url: str, key: _Key) -> None:
    env = _env(tmp_path, sqlite_url, "ingest", workers=0, verify_dkim=True)
    raw = key.signed(_raw(subject="signed but failed upstream"), domain="example.com")
    row = env.deliver("", raw=b"Authentication-Results: " + MX.encode()
                      + b"; dmarc=fail header.from=example.com\r\n" + raw)
    assert _action(env, row)["sender_verified"] is False
    assert key.asked == []


def test_dns_trouble_retries_instead_of_demoting_the_agent(
        tmp_path: Path, sqlite_url: str, key: _Key, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DNS server that does not answer: the agent's message fails this attempt (and is
    tried again later), it is not turned into an unknown sender's for good."""
    def away(name: str, timeout: float) -> bytes | None:
        raise DnsUnavailable(f"{name}: timeout")

    env = _env(tmp_path, sqlite_url, "ingest", workers=0, verify_dkim=True)
    config = load_settings(env.config_path)
    assert config.processing.max_attempts > 1
    monkeypatch.setattr(our_dkim, "dns_lookup", away)
    raw = key.signed(_raw(subject="dns away"), domain="example.com")
    path = tmp_path / "dns.eml"
    path.write_bytes(raw)
    main(["ingest", "--config", str(env.config_path), "--mailbox", "support", str(path)])
    with env.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, last_error, ticket_id FROM inbound_messages "
                                   "ORDER BY id DESC LIMIT 1")).one()
    assert row.status == "pending" and row.ticket_id is None
    assert "DnsUnavailable" in row.last_error
    assert _users_named(env, AGENT) == 0


# --- explain ------------------------------------------------------------------------------

def test_explain_shows_the_verdict(tmp_path: Path, sqlite_url: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    env = _env(tmp_path, sqlite_url, "ingest", workers=0)
    path = tmp_path / "m.eml"
    path.write_bytes(_raw(top=(_PASS,)))
    capsys.readouterr()
    assert env.cli("explain", "--mailbox", "support", "--json", str(path)) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["authentication"]["verified"] is True
    assert "dmarc=pass" in record["authentication"]["why"]
    assert record["sender"]["kind"] == "agent" and record["sender"]["verified"] is True

    # As mail over SMTP from a client that is not a trusted relay: not checked.
    assert env.cli("explain", "--mailbox", "support", "--peer", "203.0.113.9", str(path)) == 0
    text = capsys.readouterr().out
    assert "auth      sender not checked: SMTP client 203.0.113.9 is not a trusted relay" in text
    assert "sender    unknown nina@example.com" in text
    assert "--peer" not in text


# --- My Inbox -----------------------------------------------------------------------------

def test_my_inbox_attach_judges_the_stored_message_again(
        tmp_path: Path, sqlite_url: str) -> None:
    """An item attached later is classified as processing would: a proven agent's mail is
    the agent's (verified), an unproven one's is an unknown sender's, and no user is made."""
    config = processing_config(sqlite_url, workers=0)
    config["mailboxes"] = [*config["mailboxes"], *INBOX_MAILBOXES]
    config["sender_authentication"] = {"trusted_authserv_ids": [MX], "require_for": ["agent"]}
    path = write_config(tmp_path, config)
    (tmp_path / "directory.yaml").write_text(yaml.safe_dump(INBOX_DIRECTORY))
    assert main(["directory", "import", str(tmp_path / "directory.yaml"),
                 "--config", str(path)]) == 0
    env = ProcessingEnv(path, make_engine(load_settings(path).database), "ingest")
    ticket = env.deliver("", raw=_raw("alice@acme.example", subject="Quote")).ticket_id
    seen = []
    for subject, top in (("proven", (_PASS,)), ("unproven", ())):
        row = env.deliver("", "triage", raw=_raw(OMAR, subject=subject, top=top))
        assert row.inbox_item_id is not None, row.reason
        assert env.cli("inbox", "attach", str(row.inbox_item_id), "--ticket", str(ticket),
                       "--as", NINA) == 0
        action = env.ticket(ticket)["actions"][-1]
        seen.append((action["sender_kind"], action["sender_verified"]))
    assert seen == [("agent", True), ("unknown", None)]
    assert _users_named(env, OMAR) == 0
