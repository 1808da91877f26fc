"""Sales mailboxes over SMTP: opportunity matching by address and subject or by domain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.config import load_settings
from ingestd.config.settings import TicketIdTags
from ingestd.db.engine import make_engine
from ingestd.db.tables import INBOX_ITEMS, TICKETS
from ingestd.pipeline.summary import matching_subject
from tests.conftest import write_config
from tests.processing_env import ProcessingEnv, import_directory, processing_config

SALES_MAILBOXES = [
    {"name": "nina", "addresses": ["nina@example.com"], "owner": "nina@example.com",
     "ticket_type": "opportunity", "matching": {"type": "address_and_subject"}},
    {"name": "dom", "addresses": ["dom@example.com"], "ticket_type": "opportunity",
     "matching": {"type": "domain", "match_to": "opportunity"}},
    {"name": "proj", "addresses": ["proj@example.com"],
     "matching": {"type": "domain", "match_to": "project"}},
    {"name": "triage", "addresses": ["triage@example.com"], "owner": "nina@example.com",
     "matching": {"enabled": False}},
]


@pytest.fixture
def sales(tmp_path: Path, db_url: str, start_daemon: Any) -> Any:
    config = processing_config(db_url)
    config["mailboxes"] = [*config["mailboxes"], *SALES_MAILBOXES]
    config["agent_domains"] = ["example.com"]
    path = write_config(tmp_path, config)
    import_directory(path)
    engine = make_engine(load_settings(path).database)
    env = ProcessingEnv(path, engine, "smtp")
    env.port = start_daemon(path).port
    yield env
    engine.dispose()


def _mail(sender: str, subject: str, n: int, extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: sales\r\nSubject: {subject}\r\n"
            f"Message-ID: <sales-{n}@client.example>\r\n{extra}\r\n"
            f"Hello, about {subject}.\r\n").encode()


def _ticket(env: Any, ticket_id: int) -> Any:
    with env.engine.connect() as conn:
        return conn.execute(sa.select(TICKETS).where(TICKETS.c.id == ticket_id)).one()


def test_address_and_subject_finds_the_contacts_opportunity(sales: Any) -> None:
    first = sales.deliver("q", "nina", _mail("alice@acme.example", "Quote for 20 laptops", 1))
    assert first.reason == ("no open opportunity from alice@acme.example with this subject: "
                            "new opportunity")
    assert _ticket(sales, first.ticket_id).type == "opportunity"
    reply = sales.deliver("r", "nina", _mail(
        "Alice <ALICE@acme.example>", "[EXTERNAL] AW: RE:  quote for 20  laptops", 2))
    assert (reply.ticket_id, reply.reason) == (
        first.ticket_id, f"matched by address_and_subject to #{first.ticket_id}")
    other = sales.deliver("o", "nina", _mail("bob@acme.example", "Quote for 20 laptops", 3))
    assert other.ticket_id != first.ticket_id  # same subject, another contact
    changed = sales.deliver("c", "nina", _mail("alice@acme.example", "Quote for 30 laptops", 4))
    assert changed.ticket_id not in (first.ticket_id, other.ticket_id)


def test_a_closed_opportunity_is_never_matched(sales: Any) -> None:
    first = sales.deliver("q", "nina", _mail("alice@acme.example", "Renewal", 1))
    assert sales.cli("tickets", "set-status", str(first.ticket_id), "closed") == 0
    again = sales.deliver("r", "nina", _mail("alice@acme.example", "Re: Renewal", 2))
    assert again.ticket_id != first.ticket_id
    assert _ticket(sales, first.ticket_id).status == "closed"


def test_a_tag_wins_over_matching(sales: Any) -> None:
    first = sales.deliver("q", "nina", _mail("alice@acme.example", "Licences", 1))
    tagged = sales.deliver("t", "nina", _mail(
        "carol@other.example", f"Something else [ID:{first.ticket_id}]", 2))
    assert tagged.ticket_id == first.ticket_id
    assert tagged.reason.startswith(f"tag [ID:{first.ticket_id}]")


def test_domain_matching_and_the_domains_that_never_match(sales: Any) -> None:
    first = sales.deliver("a", "dom", _mail("alice@acme.example", "Hello", 1))
    colleague = sales.deliver("b", "dom", _mail("carol@acme.example", "Other topic", 2))
    assert (colleague.ticket_id, colleague.reason) == (
        first.ticket_id, f"matched by domain to #{first.ticket_id}")
    free = [sales.deliver(f"f{n}", "dom", _mail(f"p{n}@gmail.com", "Hi", 10 + n))
            for n in range(2)]
    assert free[0].ticket_id != free[1].ticket_id
    assert "gmail.com is a free-mail domain: never matched by domain" in free[1].reason
    own = [sales.deliver(f"o{n}", "dom", _mail(f"staff{n}@example.com", "Hi", 20 + n))
           for n in range(2)]
    assert own[0].ticket_id != own[1].ticket_id
    assert "example.com is our own domain" in own[1].reason


@pytest.mark.parametrize("mailbox", ["nina", "dom"])
def test_a_doubtful_sender_is_never_matched(sales: Any, mailbox: str) -> None:
    """Two From headers: the first names a contact with an open opportunity; no match."""
    first = sales.deliver("q", mailbox, _mail("alice@acme.example", "Quote for 20 laptops", 1))
    doubtful = sales.deliver("d", mailbox, _mail(
        "alice@acme.example", "Re: Quote for 20 laptops", 2,
        extra="From: Mallory <m@evil.example>\r\n"))
    assert doubtful.status == "processed" and doubtful.ticket_id != first.ticket_id
    assert doubtful.reason == ("sender unknown: several From headers; sender doubtful "
                               "(several From headers): never matched by sender; "
                               "new opportunity")
    assert _ticket(sales, doubtful.ticket_id).type == "opportunity"
    # The same mail with one From header still matches.
    trusted = sales.deliver("t", mailbox, _mail("alice@acme.example", "Quote for 20 laptops", 3))
    assert trusted.ticket_id == first.ticket_id


def test_several_candidates_take_the_most_recently_updated(sales: Any) -> None:
    one = sales.deliver("a", "nina", _mail("alice@acme.example", "Quote", 1))
    two = sales.deliver("b", "nina", _mail("bob@acme.example", "Quote", 2))
    # Touch the first again, so it is the most recently updated.
    sales.deliver("c", "nina", _mail("alice@acme.example", "Re: Quote", 3))
    pick = sales.deliver("d", "dom", _mail("dave@acme.example", "New thing", 4))
    assert pick.ticket_id == one.ticket_id
    assert pick.reason == (f"matched by domain to #{one.ticket_id} "
                           f"(most recently updated of 2; also #{two.ticket_id})")


def test_match_to_decides_the_type_of_new_and_matched_tickets(sales: Any) -> None:
    sales.deliver("a", "nina", _mail("alice@acme.example", "Quote", 1))  # an opportunity
    project = sales.deliver("p", "proj", _mail("alice@acme.example", "Kick-off", 2))
    assert project.reason == "no open project for domain acme.example: new project"
    assert _ticket(sales, project.ticket_id).type == "project"
    again = sales.deliver("q", "proj", _mail("bob@acme.example", "Plan", 3))
    assert again.ticket_id == project.ticket_id


def test_matching_off_puts_mail_in_the_owners_inbox(sales: Any) -> None:
    row = sales.deliver("i", "triage", _mail("Zed <zed@newco.example>", "Pricing?", 1))
    assert row.status == "processed" and row.ticket_id is None
    assert row.reason == "matching off: My Inbox of nina@example.com"
    with sales.engine.connect() as conn:
        item = conn.execute(sa.select(INBOX_ITEMS)
                            .where(INBOX_ITEMS.c.id == row.inbox_item_id)).one()
    assert (item.status, item.from_address, item.from_name, item.subject) == (
        "open", "zed@newco.example", "Zed", "Pricing?")
    assert item.preview == "Hello, about Pricing?."
    assert item.inbound_message_id == row.id and item.agent_id is not None
    assert item.received_at is not None
    assert sales.count("tickets") == 0


def test_a_reply_to_an_opportunity_skips_the_inbox(sales: Any) -> None:
    first = sales.deliver("q", "nina", _mail("alice@acme.example", "Quote", 1))
    reply = sales.deliver("r", "triage", _mail(
        "alice@acme.example", "Re: Quote", 2, extra="In-Reply-To: <sales-1@client.example>\r\n"))
    assert (reply.ticket_id, reply.inbox_item_id) == (first.ticket_id, None)


@pytest.mark.parametrize("subject", [
    "Re: Quote", "RE: RE: Quote", "Fwd: Quote", "FW: quote", "AW: WG: Quote", "SV: VS: Quote",
    "Antw: Quote", "RV: TR: Quote", "[EXTERNAL] Re: Quote", "Re: [EXTERNAL] quote",
    "re[2]: QUOTE", "[ID:12] Re: Quote", "  Quote  ",
])
def test_reply_prefixes_and_banners_do_not_change_the_subject(subject: str) -> None:
    assert matching_subject(subject, TicketIdTags()) == "quote"
