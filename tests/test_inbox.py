"""My Inbox over SMTP: listing and showing items per agent, and what each action makes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingestd.db.tables import ACTIONS, ATTACHMENTS, CLIENTS, CRM_NOTES, INBOUND, TICKETS, USERS
from ingestd.errors import InvalidRequest, NotFound
from ingestd.services import inbox
from ingestd.services.inbox import ITEM_KEYS
from tests.inbox_env import ADA, NINA, OMAR, PDF, InboxEnv, inbox_env, mail


@pytest.fixture
def box(tmp_path: Path, db_url: str, start_daemon: Any,
        capsys: pytest.CaptureFixture[str]) -> Iterator[InboxEnv]:
    yield from inbox_env(tmp_path, db_url, start_daemon, capsys)


def test_list_and_show_per_agent_and_status(box: InboxEnv) -> None:
    first = box.item(mail("Zed <zed@newco.example>", "Pricing?"))
    second = box.item(mail("alice@acme.example", "Renewal"), "projects")
    omars = box.item(mail("bob@else.example", "Demo"), "omar-sales")
    listed = box.json("inbox", "list", "--agent", NINA)
    assert [r["id"] for r in listed] == [second, first]  # newest first
    assert all(tuple(r) == ITEM_KEYS for r in listed)
    assert listed[1] == {
        "id": first, "agent_email": NINA, "status": "open", "from": "zed@newco.example",
        "subject": "Pricing?", "received_at": listed[1]["received_at"],
        "preview": "Hello, we need 40 seats.", "message_id": listed[1]["message_id"],
        "inbound_id": listed[1]["inbound_id"], "acted_by": None, "acted_at": None,
        "ticket_id": None, "crm_note_id": None,
    }
    assert listed[1]["received_at"] and listed[1]["message_id"].startswith("<inbox-")
    assert [r["id"] for r in box.json("inbox", "list", "--agent", OMAR)] == [omars]
    assert [r["id"] for r in box.json("inbox", "list")] == [omars, second, first]
    assert box.json("inbox", "list", "--status", "attached") == []
    assert [r["id"] for r in box.json("inbox", "list", "--status", "open", "--limit", "1")] == [
        omars]
    assert box.json("inbox", "show", str(first)) == listed[1]
    code, out, _ = box.cli("inbox", "show", str(first))
    assert code == 0 and "[open] Pricing?" in out and "zed@newco.example" in out
    code, out, _ = box.cli("inbox", "list", "--agent", OMAR)
    assert code == 0 and f"#{omars}" in out and "Demo" in out and "Pricing" not in out

    with box.engine.connect() as conn:
        nina, omar, ada = (inbox.actor_by_email(conn, a) for a in (NINA, OMAR, ADA))
        assert (nina.admin, ada.admin) == (False, True)
        assert [r["id"] for r in inbox.list_items(conn, visible_to=omar).records] == [omars]
        assert inbox.list_items(conn, visible_to=omar, agent_email=NINA).records == []
        assert inbox.list_items(conn, visible_to=ada).total == 3
        assert inbox.show_item(conn, first, visible_to=nina)["id"] == first
        with pytest.raises(NotFound, match=f"^no inbox item with id {first}$"):
            inbox.show_item(conn, first, visible_to=omar)
        with pytest.raises(NotFound, match=f"^no inbox item with id {first}$"):
            inbox.item_message(conn, first, visible_to=omar)
        with pytest.raises(InvalidRequest, match="status is one of open, attached"):
            inbox.list_items(conn, status="pending")
        with pytest.raises(NotFound, match="no active agent"):
            inbox.actor_by_email(conn, "zed@newco.example")


def test_unknown_ids_and_agents_are_clear_refusals(box: InboxEnv) -> None:
    for argv in (["inbox", "show", "99"], ["inbox", "raw", "99"],
                 ["inbox", "delete", "99", "--as", ADA]):
        code, _, err = box.cli(*argv)
        assert (code, err) == (65, "ingestd: no inbox item with id 99\n")
    code, _, err = box.cli("inbox", "list", "--agent", "nobody@example.com")
    assert (code, err) == (65, "ingestd: no agent with address nobody@example.com\n")
    code, _, err = box.cli("inbox", "new", "1", "--as", "nobody@example.com")
    assert (code, err) == (65, "ingestd: no active agent with address nobody@example.com\n")


def test_raw_writes_the_stored_message_byte_exact(box: InboxEnv) -> None:
    raw = mail("zed@newco.example", "Bytes", body="Caf\u00e9 \u2014 line\r\n.dot line")
    item = box.item(raw)
    # Its own process: the daemon running in this one logs to the same stdout.
    done = subprocess.run(
        [sys.executable, "-m", "ingestd", "inbox", "raw", str(item),
         "--config", str(box.processing.config_path)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == raw


def test_attach_adds_the_mail_as_an_email_action(box: InboxEnv) -> None:
    opportunity = box.processing.deliver("o", "sales", mail("alice@acme.example", "Quote"))
    before = box.rows(TICKETS, TICKETS.c.id == opportunity.ticket_id)[0]
    item = box.item(mail("Alice <alice@acme.example>", "Re: Quote, amended", body="Make it 50."))
    record = box.json("inbox", "attach", str(item), "--ticket", str(opportunity.ticket_id),
                      "--as", NINA)
    assert (record["status"], record["ticket_id"], record["acted_by"]) == (
        "attached", opportunity.ticket_id, NINA)
    assert record["acted_at"] is not None and record == box.show(item)
    ticket = box.processing.ticket(opportunity.ticket_id)
    assert len(ticket["actions"]) == 2
    action = ticket["actions"][1]
    assert (action["kind"], action["sender_kind"], action["from"], action["from_name"],
            action["subject"], action["body_text"].strip()) == (
        "email", "user", "alice@acme.example", "Alice", "Re: Quote, amended", "Make it 50.")
    assert [(a["filename"], a["content_type"], a["size"]) for a in action["attachments"]] == [
        ("quote.pdf", "application/pdf", len(PDF))]
    stored = box.rows(ATTACHMENTS, ATTACHMENTS.c.id == action["attachments"][0]["id"])[0]
    assert bytes(stored.content) == PDF
    assert box.rows(ACTIONS, ACTIONS.c.id == action["id"])[0].inbound_message_id == (
        record["inbound_id"])
    after = box.rows(TICKETS, TICKETS.c.id == opportunity.ticket_id)[0]
    assert after.updated_at > before.updated_at and after.status == "open"


def test_attach_to_a_closed_ticket_reopens_it_and_to_a_missing_one_changes_nothing(
    box: InboxEnv
) -> None:
    opportunity = box.processing.deliver("o", "sales", mail("alice@acme.example", "Quote"))
    assert box.cli("tickets", "set-status", str(opportunity.ticket_id), "closed")[0] == 0
    item = box.item(mail("alice@acme.example", "Quote again"))
    actions = box.count("actions")
    code, _, err = box.cli("inbox", "attach", str(item), "--ticket", "999", "--as", NINA)
    assert (code, err) == (65, "ingestd: no ticket with id 999\n")
    assert box.show(item)["status"] == "open" and box.count("actions") == actions
    code, out, _ = box.cli("inbox", "attach", str(item), "--ticket",
                           str(opportunity.ticket_id), "--as", NINA)
    assert code == 0
    assert out == (f"item {item} attached by {NINA}: an action on ticket "
                   f"#{opportunity.ticket_id}\n")
    assert box.processing.ticket(opportunity.ticket_id)["status"] == "open"


def test_new_makes_a_ticket_of_the_mailboxs_match_type(box: InboxEnv) -> None:
    item = box.item(mail("Zed Ray <zed@newco.example>", "RE: Pricing for 40 seats",
                         body="Line one.\r\nLine two."), "projects")
    # Processing classified the sender already (a user was made); gone since,
    # it is made again, as unknown_senders says, when the item is converted.
    with box.engine.begin() as conn:
        conn.execute(USERS.delete().where(USERS.c.email == "zed@newco.example"))
    tickets = box.count("tickets")
    record = box.json("inbox", "new", str(item), "--as", NINA)
    assert record["status"] == "converted" and box.count("tickets") == tickets + 1
    ticket = box.rows(TICKETS, TICKETS.c.id == record["ticket_id"])[0]
    assert (ticket.type, ticket.summary, ticket.mailbox, ticket.status) == (
        "project", "Pricing for 40 seats", "projects", "open")
    assert ticket.details.strip() == "Line one.\nLine two."
    user = box.rows(USERS, USERS.c.id == ticket.user_id)[0]
    assert (user.email, user.name, user.created_by_ingestd) == ("zed@newco.example", "Zed Ray",
                                                               True)
    newco = box.rows(CLIENTS, CLIENTS.c.name == "Newco")[0]
    assert ticket.client_id == newco.id  # unknown_senders: the client owning the domain
    assert ticket.agent_id == box.actor(NINA).agent_id
    shown = box.processing.ticket(record["ticket_id"])
    assert shown["agent_email"] == NINA
    [action] = shown["actions"]
    assert (action["kind"], action["sender_kind"], action["user_created"]) == (
        "email", "user", True)
    assert [a["filename"] for a in action["attachments"]] == ["quote.pdf"]


def test_new_with_a_summary_and_for_a_mailbox_no_longer_configured(box: InboxEnv) -> None:
    first = box.item(mail("alice@acme.example", "Fwd: hello"))
    code, _, err = box.cli("inbox", "new", str(first), "--as", NINA, "--summary", "  ")
    assert code == 65 and "summary must not be empty" in err
    record = box.json("inbox", "new", str(first), "--as", NINA, "--summary", "Fleet  deal")
    ticket = box.rows(TICKETS, TICKETS.c.id == record["ticket_id"])[0]
    assert (ticket.type, ticket.summary) == ("opportunity", "Fleet deal")
    gone = box.item(mail("alice@acme.example", "Old mailbox"), "projects")
    box.set_item(gone, mailbox="retired")
    record = box.json("inbox", "new", str(gone), "--as", NINA)
    ticket = box.rows(TICKETS, TICKETS.c.id == record["ticket_id"])[0]
    assert (ticket.type, ticket.summary, ticket.mailbox) == ("opportunity", "Old mailbox",
                                                            "retired")


def test_note_goes_to_the_senders_client_or_the_one_named(box: InboxEnv) -> None:
    suggested = box.item(mail("Zed <zed@newco.example>", "Hello", body="Call me  back."))
    record = box.json("inbox", "note", str(suggested), "--as", NINA)
    assert (record["status"], record["ticket_id"]) == ("noted", None)
    [note] = box.rows(CRM_NOTES)
    assert record["crm_note_id"] == note.id
    newco = box.rows(CLIENTS, CLIENTS.c.name == "Newco")[0]
    assert (note.client_id, note.agent_id, note.inbox_item_id) == (
        newco.id, box.actor(NINA).agent_id, suggested)
    assert note.body == "Email from Zed <zed@newco.example>, subject: Hello\n\nCall me  back.\n"
    named = box.item(mail("zed@newco.example", "Other"))
    record = box.json("inbox", "note", str(named), "--as", NINA, "--client", "Acme Ltd")
    acme = box.rows(CLIENTS, CLIENTS.c.name == "Acme Ltd")[0]
    assert box.rows(CRM_NOTES, CRM_NOTES.c.id == record["crm_note_id"])[0].client_id == acme.id
    assert box.count("tickets") == 0


def test_note_without_a_client_to_suggest_changes_nothing(box: InboxEnv) -> None:
    item = box.item(mail("someone@else.example", "Hi"))
    code, _, err = box.cli("inbox", "note", str(item), "--as", NINA)
    assert (code, err) == (65, "ingestd: no client owns the sender's domain else.example: "
                               "name the client to note this on\n")
    code, _, err = box.cli("inbox", "note", str(item), "--as", NINA, "--client", "Nope")
    assert (code, err) == (65, "ingestd: no client named 'Nope'\n")
    assert box.show(item)["status"] == "open" and box.count("crm_notes") == 0
    assert box.show(item)["acted_by"] is None


def test_the_stored_message_outlives_every_action(box: InboxEnv) -> None:
    item = box.item(mail("zed@newco.example", "Keep me"))
    box.json("inbox", "delete", str(item), "--as", ADA)
    inbound = box.rows(INBOUND, INBOUND.c.inbox_item_id == item)
    assert [row.status for row in inbound] == ["processed"]


def test_attach_and_new_read_the_envelope_sender_as_processing_did(box: InboxEnv) -> None:
    """No From at all: the item, the attached action and the new ticket all name MAIL FROM."""
    opportunity = box.processing.deliver("o", "sales", mail("alice@acme.example", "Quote"))
    no_from = ("To: triage@example.com\r\nSubject: {0}\r\nMessage-ID: <no-from-{0}@x>\r\n"
               "\r\nWho wrote this?\r\n")
    # processing_env's SMTP client sends MAIL FROM:<relay@example.net>.
    attached = box.item(no_from.format("attach").encode())
    converted = box.item(no_from.format("convert").encode())
    assert box.show(attached)["from"] == "relay@example.net"
    box.json("inbox", "attach", str(attached), "--ticket", str(opportunity.ticket_id),
             "--as", NINA)
    action = box.processing.ticket(opportunity.ticket_id)["actions"][1]
    assert (action["from"], action["sender_kind"]) == ("relay@example.net", "user")
    record = box.json("inbox", "new", str(converted), "--as", NINA)
    [action] = box.processing.ticket(record["ticket_id"])["actions"]
    assert action["from"] == "relay@example.net"
    ticket = box.rows(TICKETS, TICKETS.c.id == record["ticket_id"])[0]
    user = box.rows(USERS, USERS.c.id == ticket.user_id)[0]
    assert user.email == "relay@example.net"
