"""What an action records of its message: the names and address lists `tickets show` gives."""

from __future__ import annotations

from typing import Any

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
