"""Retention: `messages purge` drops raw bytes of finished mail (rows, dedupe keys and
tickets stay); `quarantine show / export / purge` handle held mail."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from ingestd.db.tables import ATTACHMENTS, DEDUPE_KEYS, INBOUND
from tests.conftest import write_config
from tests.processing_env import ProcessingEnv, import_directory, processing_config
from tests.test_rules import mail

FIXTURES = Path(__file__).parent.parent / "fixtures" / "emails"


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> ProcessingEnv:
    config = processing_config(db_url, workers=0)
    config["mailboxes"][0]["unrelated_sender"] = "hold"
    path = write_config(tmp_path, config)
    import_directory(path)
    return ProcessingEnv(path, make_engine(load_settings(path).database), "ingest")


def _age(env: ProcessingEnv, *ids: int, days: int = 40) -> None:
    with env.engine.begin() as conn:
        rows = conn.execute(sa.select(INBOUND.c.id, INBOUND.c.received_at)
                            .where(INBOUND.c.id.in_(ids))).all()
        for row in rows:
            conn.execute(sa.update(INBOUND).where(INBOUND.c.id == row.id)
                         .values(received_at=row.received_at - timedelta(days=days)))


def _run(env: ProcessingEnv, capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = env.cli(*argv)
    out, err = capsys.readouterr()
    return code, out, err


def _held(env: ProcessingEnv) -> Any:
    """A stranger quoting someone's ticket: held (quarantined, unrelated-sender)."""
    first = env.deliver("", raw=mail(subject="Printer broken"))
    return env.deliver("", raw=mail(subject=f"Re: [ID:{first.ticket_id}] Printer broken",
                                    sender="mallory@evil.example", body="mine now"))


def test_messages_purge_drops_bytes_and_keeps_rows_keys_and_tickets(
        env: ProcessingEnv, capsys: Any) -> None:
    with_file = (FIXTURES / "inline-image.eml").read_bytes()
    processed = env.deliver("", raw=with_file)
    duplicate = env.deliver("", raw=with_file)
    ignored = env.deliver("", raw=mail(subject="Away", extra="Auto-Submitted: auto-replied\r\n"))
    held = _held(env)
    recent = env.deliver("", raw=mail(subject="Yesterday", body="still recent"))
    assert (duplicate.status, ignored.status, held.status) == (
        "duplicate", "ignored", "quarantined")
    _age(env, processed.id, duplicate.id, ignored.id, held.id)
    before = env.ticket(processed.ticket_id)
    with env.engine.connect() as conn:
        keys = conn.execute(sa.select(sa.func.count()).select_from(DEDUPE_KEYS)).scalar()
        files = conn.execute(sa.select(sa.func.count()).select_from(ATTACHMENTS)).scalar()

    assert _run(env, capsys, "messages", "purge", "--older-than", "30")[1].startswith(
        "raw bytes of 3 message(s)")
    with env.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(INBOUND))}
        assert conn.execute(sa.select(sa.func.count()).select_from(DEDUPE_KEYS)).scalar() == keys
        assert conn.execute(sa.select(sa.func.count()).select_from(ATTACHMENTS)).scalar() == files
    for gone in (processed.id, duplicate.id, ignored.id):
        assert rows[gone].raw == b"" and rows[gone].raw_purged_at is not None
        assert rows[gone].status in ("processed", "duplicate", "ignored")
    assert rows[held.id].raw_purged_at is None and rows[held.id].raw
    assert rows[recent.id].raw_purged_at is None and rows[recent.id].raw
    assert env.ticket(processed.ticket_id) == before

    code, _, err = _run(env, capsys, "messages", "show", str(processed.id), "--raw")
    assert code != 0 and "raw bytes purged on 20" in err
    code, _, err = _run(env, capsys, "messages", "reprocess", str(ignored.id))
    assert code != 0 and "raw bytes purged on" in err
    shown = json.loads(_run(env, capsys, "messages", "show", str(processed.id), "--json")[1])
    assert shown["raw_purged_at"] is not None
    # The dedupe keys outlive the bytes: the same mail again is still a duplicate.
    assert env.deliver("", raw=with_file).status == "duplicate"
    # Nothing is purged twice, and nothing younger than the cut-off.
    assert _run(env, capsys, "messages", "purge", "--older-than", "30")[1].startswith(
        "raw bytes of 0 message(s)")


def test_quarantine_show_export_and_purge(env: ProcessingEnv, capsysbinary: Any) -> None:
    def run(*argv: str) -> tuple[int, bytes, str]:
        capsysbinary.readouterr()
        code = env.cli(*argv)
        out, err = capsysbinary.readouterr()
        return code, out, err.decode()

    held = _held(env)
    record = json.loads(run("quarantine", "show", str(held.id), "--json")[1])
    assert (record["status"], record["reason"]) == ("quarantined", "unrelated-sender")
    with env.engine.connect() as conn:
        stored = conn.execute(sa.select(INBOUND.c.raw).where(INBOUND.c.id == held.id)).scalar()
    assert run("quarantine", "export", str(held.id))[:2] == (0, bytes(stored))
    code, _, err = run("quarantine", "show", "1")
    assert code != 0 and "not quarantined" in err

    assert run("quarantine", "purge", "--older-than", "30")[1].startswith(b"0 ")
    _age(env, held.id)
    assert run("quarantine", "purge", "--older-than", "30")[1].startswith(b"1 ")
    with env.engine.connect() as conn:
        assert conn.execute(sa.select(INBOUND.c.id).where(INBOUND.c.id == held.id)).first() \
            is None
    # Its dedupe keys went with it: the same mail again is processed, not a duplicate.
    again = env.deliver("", raw=bytes(stored))
    assert again.status == "quarantined" and again.reason == "unrelated-sender"


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_purge_wants_a_number_of_days(env: ProcessingEnv, capsys: Any, value: str) -> None:
    code, _, err = _run(env, capsys, "messages", "purge", "--older-than", value)
    assert code != 0 and "not a number of days" in err
