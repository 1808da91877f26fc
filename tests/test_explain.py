"""`ingestd explain`: every decision for a message, in order, and nothing written."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.db.engine import make_engine
from tests.conftest import write_config
from tests.processing_env import ProcessingEnv, import_directory, processing_config
from tests.test_rules import mail

RULES = """
- name: drop-newsletters
  match: {subject: {contains: newsletter}}
  actions: [{ignore: true}]
  stop: true
- name: asset
  match: {subject: {matches: "(?P<asset>PC-[0-9]+)"}}
  actions:
    - set_field: {name: asset, value: "{asset}"}
    - set_priority: high
"""


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> ProcessingEnv:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "10.yaml").write_text(textwrap.dedent(RULES))
    config = processing_config(db_url, workers=0)
    config["rules_dir"] = "rules"
    path = write_config(tmp_path, config)
    import_directory(path)
    return ProcessingEnv(path, make_engine(load_settings(path).database), "ingest")


def _counts(env: ProcessingEnv) -> dict[str, int]:
    names = ("inbound_messages", "tickets", "actions", "users", "dedupe_keys", "attachments",
             "inbox_items")
    with env.engine.connect() as conn:
        return {n: int(conn.execute(sa.text(f"SELECT count(*) FROM {n}")).scalar_one())
                for n in names}


def _explain(env: ProcessingEnv, tmp_path: Path, raw: bytes, capsys: Any,
             mailbox: str = "support") -> dict[str, Any]:
    path = tmp_path / "explain.eml"
    path.write_bytes(raw)
    capsys.readouterr()
    assert main(["explain", "--mailbox", mailbox, str(path), "--json", "--config",
                 str(env.config_path)]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_explain_shows_each_decision_and_writes_nothing(
        env: ProcessingEnv, tmp_path: Path, capsys: Any) -> None:
    """A new sender's mail: parse, no tag, a user that would be made, each rule's verdict,
    the plan and the outcome; every table is as before."""
    before = _counts(env)
    record = _explain(env, tmp_path, mail(subject="PC-0042 dead", sender="new@newco.example"),
                      capsys)
    assert _counts(env) == before
    assert record["parse"]["subject"] == "PC-0042 dead"
    assert record["tag"] is None
    # The user it would make is seen by the later stages, and then gone (counts above).
    assert record["sender"]["address"] == "new@newco.example"
    assert record["sender"]["user_created"] is True
    assert [(r["rule"], r["matched"]) for r in record["rules"]] == [
        ("drop-newsletters", False), ("asset", True)]
    assert "newsletter" in record["rules"][0]["why"]
    assert record["plan"] == {"priority": "high", "fields": {"asset": "PC-0042"}}
    assert record["outcome"]["result"] == "ticket_created"
    assert record["outcome"]["ticket_id"] is None


def test_explain_of_a_reply_and_of_an_ignored_message(
        env: ProcessingEnv, tmp_path: Path, capsys: Any) -> None:
    """A reply names the tagged ticket it would update; a newsletter shows the rule that
    ignores it; the text output reads in order."""
    row = env.deliver("", raw=mail(subject="Printer broken"))
    before = _counts(env)
    reply = _explain(env, tmp_path, mail(subject=f"RE: [ID:{row.ticket_id}] Printer broken",
                                         body="thanks"), capsys)
    assert reply["tag"]["ticket_id"] == row.ticket_id
    assert reply["outcome"] == {"result": "action_added", "status": "processed",
                                "reason": reply["outcome"]["reason"],
                                "ticket_id": row.ticket_id, "duplicate_of": None}
    ignored = _explain(env, tmp_path, mail(subject="Monthly newsletter"), capsys)
    assert (ignored["outcome"]["result"], ignored["outcome"]["reason"]) == (
        "ignored", "rule:drop-newsletters")
    assert _counts(env) == before
    path = tmp_path / "plain.eml"
    path.write_bytes(mail(subject="Monthly newsletter"))
    assert main(["explain", "--mailbox", "support", str(path), "--config",
                 str(env.config_path)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == "mailbox   support"
    assert text[-1] == "outcome   ignored: rule:drop-newsletters"
    assert any(line.startswith("rule      drop-newsletters: matched") for line in text)


def test_explain_refuses_an_unknown_mailbox(env: ProcessingEnv, tmp_path: Path) -> None:
    """An unknown mailbox is a refusal (exit 65), not a crash."""
    path = tmp_path / "m.eml"
    path.write_bytes(mail())
    assert main(["explain", "--mailbox", "nowhere", str(path), "--config",
                 str(env.config_path)]) == 65


def test_explain_shows_a_bounce_and_its_failed_recipients(
        env: ProcessingEnv, tmp_path: Path, capsys: Any) -> None:
    raw = (Path(__file__).parent.parent / "fixtures" / "emails"
           / "bounce-dsn-two-recipients.eml").read_bytes()
    record = _explain(env, tmp_path, raw, capsys)
    assert record["bounce"]["failed"] == [
        {"address": "bob@acme.example", "status": "5.1.1", "hard": True},
        {"address": "carol@acme.example", "status": "4.2.2", "hard": False}]
    assert record["outcome"]["reason"] == "bounce"
    path = tmp_path / "bounce.eml"
    path.write_bytes(raw)
    assert main(["explain", "--mailbox", "support", str(path), "--config",
                 str(env.config_path)]) == 0
    assert ("protect   a bounce (dsn): bob@acme.example 5.1.1 hard, carol@acme.example 4.2.2 "
            "soft") in capsys.readouterr().out.splitlines()
