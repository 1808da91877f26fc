"""A test environment for processing: config, directory, and two ways to deliver mail."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from ingestd.cli.main import main
from ingestd.db.tables import INBOUND
from ingestd.services import tickets
from tests.conftest import FIXTURES, base_config
from tests.support.waiting import wait_for

DIRECTORY = {
    "clients": [{
        "name": "Acme Ltd", "domains": ["acme.example"],
        "sites": [{"name": "Head Office", "users": [
            {"name": "Alice Smith", "email": "alice@acme.example", "vip": True}]}],
    }],
    "agents": [{"name": "Nina Peach", "email": "nina@example.com", "team": "Support"}],
    "suppliers": [
        {"name": "Dell", "emails": ["support@dell.example"]},
        {"name": "Lenovo", "domains": ["lenovo.example"]},
    ],
}



def processing_config(db_url: str, **processing: Any) -> dict[str, Any]:
    config = base_config(db_url)
    config["processing"] = {
        "workers": 1, "isolation": "thread", "poll_interval_seconds": 0.2,
        "limits": {"max_parts": 20, "max_depth": 10, "max_header_bytes": 4096},
        **processing,
    }
    config["mailboxes"] = [
        {"name": "support", "addresses": ["support@example.com", "help@example.com"],
         "ticket_id_tags": {"start": "[ID:", "end": "]", "extra": [{"start": "[ID ", "end": "]"}]}},
        {"name": "sales", "addresses": ["sales@example.com"], "ticket_type": "opportunity"},
        {"name": "billing", "addresses": ["billing@example.com"],
         "ticket_id_tags": {"search_body": True}},
    ]
    return config


@dataclass
class ProcessingEnv:
    config_path: Path
    engine: Engine
    via: str
    port: int | None = None
    delivered: list[int] = field(default_factory=list)

    def deliver(self, name: str, mailbox: str = "support", raw: bytes | None = None,
                envelope_from: str | None = None) -> Any:
        """Deliver a fixture (or ``raw``) and wait until it is processed; return its row.

        ``envelope_from`` is MAIL FROM (relay@example.net over SMTP when not
        given; `ingest` knows none then).
        """
        data = raw if raw is not None else (FIXTURES / name).read_bytes()
        before = self._max_id()
        if self.via == "ingest":
            path = self.config_path.parent / "in.eml"
            path.write_bytes(data)
            envelope = [] if envelope_from is None else ["--envelope-from", envelope_from]
            code = main(["ingest", "--config", str(self.config_path), "--mailbox", mailbox,
                         *envelope, str(path)])
            assert code == 0, f"ingest exited {code}"
        else:
            assert self.port is not None
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                client.sendmail(envelope_from or "relay@example.net",
                                [f"{mailbox}@example.com"], data)
        row = wait_for(lambda: self._done_after(before), timeout=20, what=f"{name} processed")
        return row

    def _max_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(INBOUND.c.id), 0)))
                       .scalar_one())

    def _done_after(self, before: int) -> Any:
        with self.engine.connect() as conn:
            query = sa.select(INBOUND).where(INBOUND.c.id > before).order_by(INBOUND.c.id)
            row = conn.execute(query).first()
        return row if row is not None and row.status != "pending" else None

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return tickets.show_ticket(conn, ticket_id)

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())

    def cli(self, *argv: str) -> int:
        return main([*argv, "--config", str(self.config_path)])


def import_directory(config_path: Path) -> None:
    path = config_path.parent / "directory.yaml"
    path.write_text(yaml.safe_dump(DIRECTORY))
    assert main(["directory", "import", str(path), "--config", str(config_path)]) == 0
