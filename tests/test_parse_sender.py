"""The sender recovered from malformed From headers; several From headers trust no one."""

from __future__ import annotations

from typing import Any

import pytest

from ingestd.config.settings import ProcessingLimits
from ingestd.pipeline.parsed import ParsedMessage
from ingestd.pipeline.stages.parse import parse_message, with_envelope_sender


def _parsed(from_lines: bytes) -> Any:
    raw = from_lines + b"\r\nTo: support@example.com\r\nSubject: s\r\n\r\nbody\r\n"
    return parse_message(raw, ProcessingLimits())


@pytest.mark.parametrize("header,address,name", [
    (b'From: "someone@example.com"', "someone@example.com", None),
    (b"From: Alice <a@example.com.>", "a@example.com", "Alice"),
    (b"From: Alice Smith alice@example.com", "alice@example.com", "Alice Smith"),
    (b'From: "Bob" bob@x.example', "bob@x.example", "Bob"),
    (b"From: <john smith@example.com>", '"john smith"@example.com', None),
    (b"From: MAILER-DAEMON (Mail Delivery System)", "mailer-daemon", "Mail Delivery System"),
    (b"From: Mail Delivery Subsystem <MAILER-DAEMON>", "mailer-daemon",
     "Mail Delivery Subsystem"),
    (b"From: MAILER-DAEMON <>", "mailer-daemon", None),
    (b"From: =?utf-8?q?Smith=2C_John=3A_Sales?= <john@example.com>", "john@example.com",
     "Smith, John: Sales"),
])
def test_a_malformed_from_still_names_its_sender(header: bytes, address: str,
                                                 name: str | None) -> None:
    """Faults mail-parser gives up on still yield the address (and name) the header holds."""
    parsed = _parsed(header)
    assert (parsed.from_address, parsed.from_name) == (address, name)


@pytest.mark.parametrize("header,name", [
    (b'From: "a b"@example.com', None),
    (b'From: Ann <"A B"@Example.com>', "Ann"),
    (b'From: Ann <"a b"@example.com.>', "Ann"),
])
def test_a_quoted_local_part_keeps_its_quotes(header: bytes, name: str | None) -> None:
    """`"a b"@example.com` is the mailbox; its opening quote is not a stray one."""
    parsed = _parsed(header)
    assert (parsed.from_address, parsed.from_name) == ('"a b"@example.com', name)


def test_quotes_around_the_whole_address_are_dropped() -> None:
    """`"someone@example.com"` (one pair around it all) or a quote with no partner."""
    assert _parsed(b'From: "someone@example.com"').from_address == "someone@example.com"
    assert _parsed(b"From: Bo <bo@example.com'>").from_address == "bo@example.com"


def test_the_null_sender_stays_no_sender() -> None:
    """`From: <>` names nobody: no address is made up for it."""
    assert _parsed(b"From: <>").from_address is None


def test_a_recovered_sender_records_how() -> None:
    """Recovery is never silent: a defect names what was wrong and what was read."""
    defects = _parsed(b"From: Alice Smith alice@example.com").defects
    assert "From header malformed; address found in free text: alice@example.com" in defects


def test_a_well_formed_from_is_read_as_before() -> None:
    """Ordinary headers take the ordinary path: no defect, same address and name."""
    parsed = _parsed(b"From: Alice <Alice@Example.com>")
    assert (parsed.from_address, parsed.from_name) == ("alice@example.com", "Alice")
    assert not any("From" in d for d in parsed.defects)
    assert parsed.sender_doubtful is False


def test_several_from_headers_make_the_sender_doubtful() -> None:
    """Two From headers: the first is shown, the sender is not trusted, a defect says why."""
    parsed = _parsed(b"From: Nina <nina@example.com>\r\nFrom: Mallory <m@evil.example>")
    assert parsed.from_address == "nina@example.com"
    assert parsed.sender_doubtful is True
    assert "2 From headers; the sender is not trusted" in parsed.defects


def test_a_doubtful_sender_is_never_matched_to_an_agent(env: Any) -> None:
    """An agent's address in the first of two From headers makes an 'unknown' action."""
    raw = (b"From: Nina Peach <nina@example.com>\r\nFrom: Mallory <m@evil.example>\r\n"
           b"To: support@example.com\r\nSubject: please reset my password\r\n"
           b"Message-ID: <two-froms@evil.example>\r\n\r\nDo it now.\r\n")
    row = env.deliver("two-froms", raw=raw)
    assert row.status == "processed"
    assert "several From headers" in row.reason
    action = env.ticket(row.ticket_id)["actions"][0]
    assert action["sender_kind"] == "unknown"
    assert env.count("users") == 1  # only the directory's Alice: no user was made


def test_encoded_words_inside_a_quoted_name_are_decoded() -> None:
    """`"=?iso-2022-jp?b?...?=" <taro@example.jp>` shows the name, not the encoded word."""
    parsed = _parsed(b'From: "=?iso-2022-jp?b?GyRCOzNFRBsoQiAbJEJCQE86GyhC?=" <taro@example.jp>')
    assert (parsed.from_name, parsed.from_address) == ("山田 太郎", "taro@example.jp")


@pytest.mark.parametrize("headers,address,header", [
    (b"Sender: Ops <ops@example.com>\r\nReply-To: r@example.com", "ops@example.com", "Sender"),
    (b"From: MAILER-DAEMON\r\nReply-To: Desk <desk@example.com>", "desk@example.com",
     "Reply-To"),
    (b"From: <>\r\nSender: bounces@lists.example", "bounces@lists.example", "Sender"),
])
def test_no_usable_from_falls_back_to_sender_then_reply_to(
        headers: bytes, address: str, header: str) -> None:
    """No From with a domain: Sender, then Reply-To, and a defect says which was used."""
    parsed = _parsed(headers)
    assert (parsed.from_address, parsed.sender_header) == (address, header)
    assert any(d.endswith(f"sender read from {header}") for d in parsed.defects)


def test_a_usable_from_is_never_replaced_by_reply_to() -> None:
    """Reply-To is where answers go, not who wrote it: a good From wins."""
    parsed = _parsed(b"From: a@example.com\r\nReply-To: b@example.com")
    assert (parsed.from_address, parsed.sender_header) == ("a@example.com", "From")
    assert parsed.reply_to == ("b@example.com",)


def test_without_any_sender_header_the_envelope_names_the_sender(env: Any) -> None:
    """The SMTP envelope is the last resort; the reason says the sender came from it."""
    raw = (b"To: support@example.com\r\nSubject: no from at all\r\n"
           b"Message-ID: <no-from@example.net>\r\n\r\nWho am I?\r\n")
    # `ingest` without --envelope-from knows no envelope; processing_env's SMTP
    # client sends MAIL FROM:<relay@example.net>.
    env_from = None if env.via == "ingest" else "relay@example.net"
    row = env.deliver("no-from", raw=raw)
    action = env.ticket(row.ticket_id)["actions"][0]
    assert action["from"] == env_from
    if env_from:
        assert "sender from envelope (no usable From)" in row.reason
        assert "no From header; sender read from the envelope" in row.defects


def test_an_overlong_envelope_sender_leaves_the_mail_without_one(env: Any) -> None:
    """MAIL FROM longer than any address (RFC 5321): processed with no sender, not refused."""
    raw = (b"To: support@example.com\r\nSubject: long envelope\r\n"
           b"Message-ID: <long-envelope@example.net>\r\n\r\nHi\r\n")
    envelope = "x" * 330 + "@example.net"
    row = env.deliver("long-envelope", raw=raw, envelope_from=envelope)
    assert row.status == "processed", row.reason
    assert f"envelope sender of {len(envelope)} characters ignored" in row.defects
    action = env.ticket(row.ticket_id)["actions"][0]
    assert (action["from"], action["sender_kind"]) == (None, "unknown")


def _no_from() -> ParsedMessage:
    return parse_message(b"To: support@example.com\r\nSubject: s\r\n\r\nbody\r\n",
                         ProcessingLimits())


@pytest.mark.parametrize("envelope,address", [
    ("<Ann@Example.NET>", "ann@example.net"),
    ("a\x00n\x01n\x7f@exa\x9fmple.net", "ann@example.net"),
    ("x" * 242 + "@example.net", "x" * 242 + "@example.net"),  # 254, the longest path
    ("x" * 243 + "@example.net", None),
    ("", None),
])
def test_the_envelope_sender_is_cleaned_and_bounded(envelope: str, address: str | None) -> None:
    """No control characters survive, and nothing longer than 254 characters is an address."""
    parsed = with_envelope_sender(_no_from(), envelope)
    assert parsed.from_address == address
    assert parsed.sender_header == ("envelope" if address else "From")


def test_a_usable_from_is_never_replaced_by_the_envelope() -> None:
    parsed = parse_message(b"From: a@example.com\r\n\r\nbody\r\n", ProcessingLimits())
    assert with_envelope_sender(parsed, "b@example.com") is parsed
