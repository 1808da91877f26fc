"""Protection 1: auto-replies and our own mail coming back (header signals, `protect` stage)."""

from __future__ import annotations

from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from ingestd.db.tables import ACTIONS
from ingestd.pipeline.stages.protect import auto_reply_signal
from tests.conftest import write_config
from tests.processing_env import ProcessingEnv, import_directory, processing_config
from tests.test_rules import mail


@pytest.mark.parametrize("headers,list_headers,expected", [
    ("Auto-Submitted: auto-replied\n", False, "Auto-Submitted: auto-replied"),
    ("Auto-Submitted: auto-generated; owner-email=x@y\n", False, "Auto-Submitted"),
    ("Auto-Submitted: no\n", False, None),
    ("Precedence: bulk\n", False, "Precedence: bulk"),
    ("Precedence: junk\n", False, "Precedence: junk"),
    ("Precedence: auto_reply\n", False, "Precedence: auto_reply"),
    ("Precedence: list\n", False, None),
    ("Precedence: list\n", True, "Precedence: list"),
    ("List-Id: <news.example.com>\n", False, None),
    ("List-Unsubscribe: <mailto:u@example.com>\n", True, "List-Unsubscribe"),
    ("X-Autoreply: yes\n", False, "X-Autoreply"),
    ("X-Autorespond: yes\n", False, "X-Autorespond"),
    ("X-Auto-Response-Suppress: All\n", False, None),
    ("X-Apple-Action: VACATION\n", False, "X-Apple-Action: VACATION"),
    ("Return-Path: <>\n", False, "null return path"),
    ("Subject: Out of office\n", False, None),
])
def test_each_auto_reply_signal(headers: str, list_headers: bool, expected: str | None) -> None:
    """RFC 3834 and the older conventions mark an auto-reply; X-Auto-Response-Suppress and
    Auto-Submitted: no do not; list headers only when the mailbox says so."""
    parsed = HeaderParser().parsestr(headers + "\n")
    found = auto_reply_signal(parsed, "alice@acme.example", list_headers=list_headers)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.startswith(expected)


def test_a_robot_sender_is_an_auto_reply() -> None:
    """MAILER-DAEMON and postmaster never write by hand."""
    parsed = HeaderParser().parsestr("\n")
    assert auto_reply_signal(parsed, "MAILER-DAEMON@mx.example", list_headers=False)
    assert auto_reply_signal(parsed, "postmaster@mx.example", list_headers=False)


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> ProcessingEnv:
    config = processing_config(db_url, workers=0)
    config["own_addresses"] = ["helpdesk@example.com"]
    config["own_message_id_domains"] = ["helpdesk.example.com"]
    config["mailboxes"][1]["auto_replies"] = {"open_tickets": True}  # sales
    path = write_config(tmp_path, config)
    import_directory(path)
    return ProcessingEnv(path, make_engine(load_settings(path).database), "ingest")


OOO = "Auto-Submitted: auto-replied\r\n"


def test_an_auto_reply_opens_no_ticket_unless_configured(env: ProcessingEnv) -> None:
    """Without a ticket of its own an out-of-office is ignored (auto-reply); a mailbox with
    auto_replies.open_tickets makes one."""
    row = env.deliver("", raw=mail(subject="Out of office", extra=OOO))
    assert (row.status, row.reason) == ("ignored", "auto-reply")
    assert env.count("tickets") == 0
    sales = env.deliver("", mailbox="sales", raw=mail(subject="Away", extra=OOO,
                                                      to="sales@example.com"))
    assert sales.status == "processed" and sales.ticket_id is not None


def test_an_auto_reply_adds_to_its_ticket_but_never_reopens_it(env: ProcessingEnv) -> None:
    """Out-of-office to an open ticket: an auto_reply action; to a closed one: recorded, the
    ticket stays closed. A person's reply still reopens it."""
    row = env.deliver("", raw=mail(subject="Printer broken"))
    tagged = f"Re: [ID:{row.ticket_id}] Printer broken"
    first = env.deliver("", raw=mail(subject=tagged, extra=OOO, body="away 1"))
    assert first.status == "processed" and "auto-reply" in first.reason
    with env.engine.connect() as conn:
        kinds = list(conn.execute(sa.select(ACTIONS.c.kind).where(
            ACTIONS.c.ticket_id == row.ticket_id).order_by(ACTIONS.c.id)).scalars())
    assert kinds == ["email", "auto_reply"]
    assert env.cli("tickets", "set-status", str(row.ticket_id), "closed") == 0
    second = env.deliver("", raw=mail(subject=tagged, extra=OOO, body="away 2"))
    assert "not reopened" in second.reason
    assert env.ticket(row.ticket_id)["status"] == "closed"
    env.deliver("", raw=mail(subject=tagged, body="a person writes again"))
    assert env.ticket(row.ticket_id)["status"] == "open"


@pytest.mark.parametrize("sender,message_id", [
    ("helpdesk@example.com", "<x1@other.example>"),
    ("someone@acme.example", "<x2@helpdesk.example.com>"),
])
def test_our_own_mail_coming_back_is_ignored(env: ProcessingEnv, sender: str,
                                            message_id: str) -> None:
    """From one of own_addresses, or a Message-ID under own_message_id_domains: own-mail."""
    raw = mail(subject="Your ticket", sender=sender).replace(
        b"Message-ID: <", b"X-Old-Id: <", 1).replace(
        b"\r\n\r\n", f"\r\nMessage-ID: {message_id}\r\n\r\n".encode(), 1)
    row = env.deliver("", raw=raw)
    assert (row.status, row.reason) == ("ignored", "own-mail")
    assert env.count("tickets") == 0


def test_the_settings_refuse_bad_values(tmp_path: Path, sqlite_url: str) -> None:
    """An own address must be an address, a domain a domain; unknown keys are refused."""
    from ingestd.errors import ConfigError

    config: dict[str, Any] = processing_config(sqlite_url)
    config["own_addresses"] = ["not-an-address"]
    with pytest.raises(ConfigError):
        load_settings(write_config(tmp_path, config))
    config = processing_config(sqlite_url)
    config["mailboxes"][0]["auto_replies"] = {"open_ticket": True}
    with pytest.raises(ConfigError):
        load_settings(write_config(tmp_path, config))
