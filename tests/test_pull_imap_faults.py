"""IMAP pulls against servers that misbehave in the ways a review found: mail arriving during
a backfill, a body left out of an OK answer, answers longer than imaplib's line limit, a slow
listing outliving the lease, a folder that does not exist."""

from __future__ import annotations

import imaplib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ingestd.intake.sources import imap_mailbox as imap_source
from ingestd.intake.sources.imap import ImapConnection
from tests.pull_contract import message, sqlite_engine, state_row, stored
from tests.test_pull_imap import DovecotMailbox, _poll, provider

__all__ = ["provider", "sqlite_engine"]  # fixtures shared with tests/test_pull_imap.py


def test_mail_arriving_during_a_backfill_is_imported(
        engine: Engine, provider: DovecotMailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message delivered while import_since lists the folder lies above the listing's
    bound: the next poll imports it (the cursor never passes it)."""
    provider.deliver(message("old"), datetime.now(UTC) - timedelta(days=1))
    mailbox = provider.mailbox(import_since=(datetime.now(UTC) - timedelta(days=3)).date())
    real_uid = ImapConnection._uid
    delivered: list[int] = []

    def uid(self: ImapConnection, command: str, *args: str) -> list[Any]:
        if "INTERNALDATE" in args[-1] and not delivered:
            provider.deliver(message("arrived during backfill"))
            delivered.append(1)
        return real_uid(self, command, *args)

    monkeypatch.setattr(ImapConnection, "_uid", uid)
    assert _poll(engine, provider, mailbox).status == "ok"
    monkeypatch.setattr(ImapConnection, "_uid", real_uid)
    assert _poll(engine, provider, mailbox).status == "ok"
    assert sorted(r.subject for r in stored(engine, mailbox.name)) == [
        "arrived during backfill", "old"]


def test_a_body_the_server_left_out_is_not_passed_by(
        engine: Engine, provider: DovecotMailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OK FETCH answer without one of the bodies asked for: the message is still there,
    so the batch fails (the cursor stays) and the next poll stores it."""
    mailbox = provider.mailbox()
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message("a"))
    provider.deliver(message("b"))
    real_uid = ImapConnection._uid

    def uid(self: ImapConnection, command: str, *args: str) -> list[Any]:
        data = real_uid(self, command, *args)
        if command == "FETCH" and "BODY.PEEK[]" in args[-1]:
            return data[2:]  # the first message's (prefix, literal) and ")" left out
        return data

    monkeypatch.setattr(ImapConnection, "_uid", uid)
    report = _poll(engine, provider, mailbox)
    assert report.status == "error" and "no content" in (report.error or ""), report
    monkeypatch.setattr(ImapConnection, "_uid", real_uid)
    assert _poll(engine, provider, mailbox).status == "ok"
    assert sorted(r.subject for r in stored(engine, mailbox.name)) == ["a", "b"]


def test_search_answers_stay_under_imaplibs_line_limit(
        engine: Engine, provider: DovecotMailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Searches go in UID windows, so a folder whose UID list would pass imaplib's line
    limit still backfills (scaled down: a 300-byte limit, windows of 20 UIDs)."""
    raws = [message(f"m{i}") for i in range(60)]
    for raw in raws:
        provider.deliver(raw, datetime.now(UTC) - timedelta(days=1))
    monkeypatch.setattr(imap_source, "_SEARCH_WINDOW", 20)
    real = ImapConnection.list_since

    def with_short_lines(self: ImapConnection, folder: str, since: datetime) -> Any:
        monkeypatch.setattr(imaplib, "_MAXLINE", 300)  # after the login
        return real(self, folder, since)

    monkeypatch.setattr(ImapConnection, "list_since", with_short_lines)
    mailbox = provider.mailbox(import_since=(datetime.now(UTC) - timedelta(days=3)).date())
    report = _poll(engine, provider, mailbox)
    assert (report.status, report.imported) == ("ok", 60), report


def test_a_listing_longer_than_the_lease_still_commits(
        engine: Engine, provider: DovecotMailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow server makes the listing outlast the lease (2 x poll_interval); nobody else
    took the mailbox, so the poll still commits."""
    mailbox = provider.mailbox(poll_interval=1)
    assert _poll(engine, provider, mailbox).status == "ok"
    provider.deliver(message("slow"))
    real = ImapConnection.list_new

    def slow(self: ImapConnection, folder: str, cursor: dict[str, Any]) -> Any:
        time.sleep(2.5)  # the server taking its time, not synchronisation
        return real(self, folder, cursor)

    monkeypatch.setattr(ImapConnection, "list_new", slow)
    assert _poll(engine, provider, mailbox).status == "ok"
    assert [r.subject for r in stored(engine, mailbox.name)] == ["slow"]


def test_a_missing_folder_does_not_stop_the_others(
        engine: Engine, provider: DovecotMailbox) -> None:
    """A configured folder the server lacks makes the mailbox `error`, naming it; the
    folders after it are still polled, their first connection recorded, their mail kept."""
    mailbox = provider.mailbox(imap={"folders": ["Gone", "INBOX"]})
    first = _poll(engine, provider, mailbox)
    assert first.status == "error" and "Gone" in (first.error or "")
    provider.deliver(message("x"))
    second = _poll(engine, provider, mailbox)
    assert second.status == "error"
    assert [r.subject for r in stored(engine, mailbox.name)] == ["x"]
    assert "Gone" in state_row(engine, mailbox.name).last_error
