"""What an action records of its message: the names and address lists `tickets show` gives."""

from __future__ import annotations

from typing import Any

import pytest

from ingestd.addresses import joined_addresses, split_addresses

RAW = (b"From: =?utf-8?q?M=C3=BCller=2C_Anna?= <anna@acme.example>\r\n"
       b"To: Support <support@example.com>, help@example.com, SUPPORT@example.com\r\n"
       b"Cc: Bob <bob@acme.example>\r\n"
       b"Reply-To: tickets@acme.example\r\n"
       b"Subject: printer\r\nMessage-ID: <record@acme.example>\r\n\r\nIt jams.\r\n")


def test_an_action_keeps_from_name_to_cc_and_reply_to(env: Any) -> None:
    row = env.deliver("record", raw=RAW)
    assert row.status == "processed"
    action = env.ticket(row.ticket_id)["actions"][0]
    assert action["from"] == "anna@acme.example"
    assert action["from_name"] == "Müller, Anna"
    assert action["to"] == ["support@example.com", "help@example.com"]  # each address once
    assert action["cc"] == ["bob@acme.example"]
    assert action["reply_to"] == ["tickets@acme.example"]


def test_an_action_without_cc_or_reply_to_has_empty_lists(env: Any) -> None:
    row = env.deliver("new-ticket.eml")
    action = env.ticket(row.ticket_id)["actions"][0]
    assert action["cc"] == [] and action["reply_to"] == []
    assert action["to"] != []


def test_commas_inside_quoted_addresses_keep_each_address_whole(env: Any) -> None:
    """`"smith, j"@example.com` is one address in to, cc and reply_to, not two halves."""
    raw = (b"From: anna@acme.example\r\n"
           b'To: "smith, j"@example.com, support@example.com\r\n'
           b'Cc: "Doe, Jane" <"doe, jane"@acme.example>, bob@acme.example\r\n'
           b'Reply-To: "a, b"@acme.example\r\n'
           b"Subject: commas\r\nMessage-ID: <commas@acme.example>\r\n\r\nHi\r\n")
    row = env.deliver("commas", raw=raw)
    action = env.ticket(row.ticket_id)["actions"][0]
    assert action["to"] == ['"smith, j"@example.com', "support@example.com"]
    assert action["cc"] == ['"doe, jane"@acme.example', "bob@acme.example"]
    assert action["reply_to"] == ['"a, b"@acme.example']


@pytest.mark.parametrize("addresses", [
    ['"smith, j"@example.com', "a@example.com"],
    ['"a \\" , b"@example.com', "c@example.com"],
    ["a@example.com (Smith, J)", '"Smith, J" <j@example.com>', "<k,l@example.com>"],
    ["plain@example.com"],
])
def test_a_stored_address_list_reads_back_as_written(addresses: list[str]) -> None:
    assert split_addresses(joined_addresses(addresses)) == addresses


def test_stored_lists_read_as_before_and_unpaired_quotes_are_dropped() -> None:
    """Lists written before keep reading; a lone quote cannot swallow the addresses after it."""
    assert split_addresses("a@example.com, b@example.com") == ["a@example.com", "b@example.com"]
    assert split_addresses(None) == split_addresses("") == []
    assert joined_addresses(['c"d@example.com', "e@example.com", "e@example.com"]) == (
        "cd@example.com, e@example.com")
    assert joined_addresses([]) is None
