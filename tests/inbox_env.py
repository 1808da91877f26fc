"""A daemon with My Inbox mailboxes, three agents and a mail builder, for the inbox tests."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.config.settings import IngestdSettings
from ingestd.db.engine import make_engine
from ingestd.db.tables import INBOX_ITEMS
from ingestd.services import inbox
from tests.conftest import write_config
from tests.processing_env import DIRECTORY, ProcessingEnv, processing_config

NINA, OMAR, ADA = "nina@example.com", "omar@example.com", "ada@example.com"

INBOX_MAILBOXES = [
    {"name": "triage", "addresses": ["triage@example.com"], "owner": NINA,
     "ticket_type": "opportunity", "matching": {"enabled": False}},
    {"name": "projects", "addresses": ["projects@example.com"], "owner": NINA,
     "matching": {"enabled": False, "match_to": "project"}},
    {"name": "omar-sales", "addresses": ["omar-sales@example.com"], "owner": OMAR,
     "ticket_type": "opportunity", "matching": {"enabled": False}},
]

_BASE: dict[str, Any] = DIRECTORY
INBOX_DIRECTORY = {
    **_BASE,
    "clients": [*_BASE["clients"], {
        "name": "Newco", "domains": ["newco.example"], "sites": [{"name": "HQ", "users": []}]}],
    "agents": [*_BASE["agents"], {"name": "Omar Field", "email": OMAR},
               {"name": "Ada Admin", "email": ADA, "admin": True}],
}

PDF = b"%PDF-1.4 quote \x00\xff\x10 end"
_numbers = itertools.count(1)


def mail(sender: str, subject: str, body: str = "Hello, we need 40 seats.",
         attachment: bytes | None = PDF) -> bytes:
    """A message with a unique Message-ID (dedupe must not drop it), optionally a PDF."""
    head = (f"From: {sender}\r\nTo: sales@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <inbox-{next(_numbers)}@client.example>\r\nMIME-Version: 1.0\r\n")
    text = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    if attachment is None:
        return (head + text).encode()
    encoded = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n' + text
            + '--b1\r\nContent-Type: application/pdf\r\n'
            'Content-Disposition: attachment; filename="quote.pdf"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}--b1--\r\n").encode()


@dataclass
class InboxEnv:
    processing: ProcessingEnv
    settings: IngestdSettings
    capsys: pytest.CaptureFixture[str]
    http_port: int | None = None

    @property
    def engine(self) -> sa.Engine:
        return self.processing.engine

    def item(self, raw: bytes, mailbox: str = "triage") -> int:
        """Deliver ``raw`` over SMTP and return the inbox item it became."""
        row = self.processing.deliver("inbox mail", mailbox, raw)
        assert row.inbox_item_id is not None, row.reason
        return int(row.inbox_item_id)

    def cli(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = self.processing.cli(*argv)
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *argv: str) -> Any:
        code, out, err = self.cli(*argv, "--json")
        assert code == 0, err
        return json.loads(out)

    def show(self, item_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return inbox.show_item(conn, item_id)

    def actor(self, email: str) -> inbox.Actor:
        with self.engine.connect() as conn:
            return inbox.actor_by_email(conn, email)

    def rows(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(table).where(*where).order_by(table.c.id)))

    def count(self, table: str) -> int:
        return self.processing.count(table)

    def set_item(self, item_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(INBOX_ITEMS).where(INBOX_ITEMS.c.id == item_id)
                         .values(**values))


def inbox_env(tmp_path: Path, db_url: str, start_daemon: Any,
              capsys: pytest.CaptureFixture[str]) -> Iterator[InboxEnv]:
    """The body of each inbox test module's ``box`` fixture: a running daemon, directory loaded."""
    config = processing_config(db_url)
    config["mailboxes"] = [*config["mailboxes"], *INBOX_MAILBOXES]
    config["agent_domains"] = ["example.com"]
    path = write_config(tmp_path, config)
    directory = tmp_path / "directory.yaml"
    directory.write_text(yaml.safe_dump(INBOX_DIRECTORY))
    assert main(["directory", "import", str(directory), "--config", str(path)]) == 0
    settings = load_settings(path)
    engine = make_engine(settings.database)
    processing = ProcessingEnv(path, engine, "smtp")
    daemon = start_daemon(path)
    processing.port = daemon.port
    yield InboxEnv(processing, settings, capsys, daemon.services.http_port)
    engine.dispose()
