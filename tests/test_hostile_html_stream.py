"""Hostile HTML among ordinary mail: bounded work, no timeouts, ordinary latency kept."""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ingestd.db.tables import INBOUND
from tests.conftest import write_config
from tests.processing_env import processing_config
from tests.support.waiting import wait_for

ORDINARY = 30
# Generous for a loaded 2-core machine; without the bound one hostile message
# alone kept a worker busy for about two minutes.
LATENCY_BOUND = 15.0


def _hostile(i: int) -> bytes:
    # About 500 KB: under the old 1,000,000-character cap, past any sane nesting.
    html = "<div>" * 45_000 + f"deep {i}" + "</div>" * 45_000
    return (f"From: mallory@evil.example\r\nTo: support@example.com\r\n"
            f"Subject: nested {i}\r\nMessage-ID: <nested{i}@evil.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            + html + "\r\n").encode()


def _ordinary(i: int) -> bytes:
    return (f"From: alice@acme.example\r\nTo: support@example.com\r\nSubject: printer {i}\r\n"
            f"Message-ID: <ordinary{i}@acme.example>\r\n\r\nIt jams, again ({i}).\r\n").encode()


def test_nested_html_does_not_hold_up_ordinary_mail(
    start_daemon: Any, tmp_path: Path, sqlite_url: str
) -> None:
    """Two 500 KB nested-div messages in a stream of 30 ordinary ones: all processed promptly."""
    config = processing_config(sqlite_url, workers=1, timeout_seconds=60)
    config["smtp"]["max_message_size"] = 4 * 1024 * 1024
    # 30 messages from one sender in a minute: not a loop here (the rate limit has its test).
    config["mailboxes"][0]["rate_limit"] = {"new_tickets": 1000}
    daemon = start_daemon(write_config(tmp_path, config))
    messages = [_ordinary(i) for i in range(ORDINARY)]
    messages.insert(5, _hostile(1))
    messages.insert(15, _hostile(2))
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=60) as client:
        for raw in messages:
            client.sendmail("relay@example.net", ["support@example.com"], raw)

    def settled() -> list[Any] | None:
        with daemon.engine.connect() as conn:
            rows = list(conn.execute(sa.select(
                INBOUND.c.subject, INBOUND.c.status, INBOUND.c.reason, INBOUND.c.defects,
                INBOUND.c.received_at, INBOUND.c.processed_at).order_by(INBOUND.c.id)))
        return rows if all(r.status != "pending" for r in rows) else None

    rows = wait_for(settled, timeout=120, what="every message processed")
    assert len(rows) == ORDINARY + 2
    assert {r.status for r in rows} == {"processed"}, [(r.subject, r.reason) for r in rows]
    hostile = [r for r in rows if r.subject.startswith("nested")]
    assert all(any("HTML" in d for d in (r.defects or ())) for r in hostile)
    latencies = [(r.processed_at - r.received_at).total_seconds() for r in rows
                 if r.subject.startswith("printer")]
    assert max(latencies) < LATENCY_BOUND, f"slowest ordinary message: {max(latencies):.1f} s"
