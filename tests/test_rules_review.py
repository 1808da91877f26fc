"""Rules against what a review found: a runaway regex, reassignment on replies, markers in
text whose case folding changes length, non-ASCII team names, 8-bit headers, empty rule
files, captures of failed `any` branches, `route` on a reply, rules not run, alias bombs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.config import load_settings
from ingestd.config.yamlfile import parse_located
from ingestd.db.tables import AGENTS
from ingestd.errors import ConfigError, YamlSyntaxError
from ingestd.rules.actions import between
from tests.conftest import write_config
from tests.processing_env import processing_config
from tests.test_rules import _write_rules, check, mail, rules_env

__all__ = ["rules_env"]


def test_a_runaway_regex_gives_up_quickly(rules_env: Any) -> None:
    """A pattern that backtracks exponentially on a short hostile body does not match it,
    within a fraction of a second, and the message is processed."""
    env = rules_env(r"""
        - name: words
          match: {body: {matches: '^(\w+\s?)*$'}}
          actions: [{set_priority: high}]
    """)
    started = time.monotonic()
    row = env.deliver("", raw=mail(subject="Hostile", body="a" * 40 + "!"))
    assert time.monotonic() - started < 5
    assert row.status == "processed"
    assert env.ticket(row.ticket_id)["priority"] is None


def test_a_reply_does_not_move_the_ticket_between_agents(rules_env: Any) -> None:
    """With `when: any`, a fewest-open assignment applies to the new ticket only."""
    env = rules_env("""
        - name: to-support
          actions: [{assign: {team: Support, strategy: fewest_open}}]
    """)
    with env.engine.begin() as conn:
        conn.execute(sa.insert(AGENTS), [{"name": "Omar", "email": "omar@example.com",
                                          "team": "Support", "admin": False, "active": True}])
    row = env.deliver("", raw=mail(subject="Case"))
    first = env.ticket(row.ticket_id)["agent_email"]
    for i in range(3):
        reply = env.deliver("", raw=mail(subject=f"Re: [ID:{row.ticket_id}] Case",
                                         body=f"reply {i}"))
        assert "assignment skipped" in reply.reason
    assert env.ticket(row.ticket_id)["agent_email"] == first


def test_markers_in_text_whose_case_folding_changes_length() -> None:
    """German and Turkish letters before the marker do not shift the mapped text."""
    body = "Grüße aus der Großen Straße\nAsset: PC-1234\nThanks"
    assert between(body, "asset:", "\n") == "PC-1234"
    assert between("İİİİ Asset: PC-1234\nThanks", "Asset:", "\n") == "PC-1234"


def test_non_ascii_team_names_match(rules_env: Any) -> None:
    """A team named with non-ASCII letters is found on SQLite too, in any case."""
    env = rules_env("""
        - name: to-equipe
          actions: [{assign: {team: équipe, strategy: fewest_open}}]
    """)
    with env.engine.begin() as conn:
        conn.execute(sa.insert(AGENTS), [{"name": "Élise", "email": "elise@example.com",
                                          "team": "Équipe", "admin": False, "active": True}])
    row = env.deliver("", raw=mail(subject="Bonjour"))
    assert env.ticket(row.ticket_id)["agent_email"] == "elise@example.com"


def test_an_eight_bit_header_is_read_as_text() -> None:
    """A raw UTF-8 header value (RFC 6532) is compared as the text it is."""
    raw = mail(extra="X-Dept: Geschäftsleitung\r\n")  # mail() encodes as UTF-8
    assert "Geschäftsleitung".encode() in raw
    ok, _ = check({"headers": {"X-Dept": {"contains": "geschäft"}}}, raw)
    assert ok


def test_an_empty_or_commented_rule_file_has_no_rules(tmp_path: Path, sqlite_url: str) -> None:
    """Emptying a file, or commenting out all its rules, is not an error."""
    _write_rules(tmp_path / "rules", "# all rules switched off for now\n")
    _write_rules(tmp_path / "rules", "", "20-empty.yaml")
    config = processing_config(sqlite_url)
    config["rules_dir"] = "rules"
    assert load_settings(write_config(tmp_path, config)).rules == ()


def test_captures_of_a_failed_any_branch_are_dropped() -> None:
    """Only the branch that holds contributes captures."""
    ok, captures = check({"any": [
        {"all": [{"subject": {"matches": "(?P<asset>PC-[0-9]+)"}},
                 {"body": {"contains": "never"}}]},
        {"subject": {"contains": "broken"}}]}, mail(subject="PC-7 broken"))
    assert ok and captures == {}


def test_route_on_a_reply_is_not_applied_and_says_so(rules_env: Any) -> None:
    """A route applies to new tickets; on a reply the reason says it was not applied."""
    env = rules_env("""
        - name: quotes-to-sales
          match: {subject: {contains: quote}}
          actions: [{route: sales}]
    """)
    row = env.deliver("", raw=mail(subject="Printer"))
    reply = env.deliver("", raw=mail(subject=f"Re: [ID:{row.ticket_id}] Printer quote",
                                     body="a quote"))
    assert "not applied" in reply.reason
    assert env.ticket(row.ticket_id)["mailbox"] == "support"


def test_rules_after_stop_are_listed_as_not_run(rules_env: Any, tmp_path: Path,
                                               capsys: Any) -> None:
    """explain lists every rule: those after a `stop` as not run, and by which rule."""
    import json

    from ingestd.cli.main import main

    env = rules_env("""
        - name: first
          actions: [{set_priority: low}]
          stop: true
        - name: second
          actions: [{set_priority: high}]
    """)
    path = tmp_path / "m.eml"
    path.write_bytes(mail())
    capsys.readouterr()
    assert main(["explain", "--mailbox", "support", str(path), "--json", "--config",
                 str(env.config_path)]) == 0
    rules = json.loads(capsys.readouterr().out)["rules"]
    assert rules == [{"rule": "first", "matched": True, "why": "matched"},
                     {"rule": "second", "matched": False, "why": "not run: stopped by first"}]


@pytest.mark.parametrize("text,fragment", [
    ("- name: a\n  match: {sender_kind: users}\n  actions: [{ignore: true}]\n", "sender kind"),
    ("- name: a\n  match: {any: []}\n  actions: [{ignore: true}]\n", "at least 1"),
    ("- name: a\n  source: x\n  actions: [{ignore: true}]\n", "unknown key"),
])
def test_values_that_could_never_match_are_refused(
        tmp_path: Path, sqlite_url: str, text: str, fragment: str) -> None:
    """A typo in a sender kind, an empty `any`, a reserved key: refused at load."""
    _write_rules(tmp_path / "rules", text)
    config = processing_config(sqlite_url)
    config["rules_dir"] = "rules"
    with pytest.raises(ConfigError) as info:
        load_settings(write_config(tmp_path, config))
    assert fragment in str(info.value)


def test_a_yaml_alias_bomb_is_refused_quickly() -> None:
    """Aliases expanding to millions of values are refused, not expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    started = time.monotonic()
    with pytest.raises(YamlSyntaxError) as info:
        parse_located("\n".join(lines) + "\n", "bomb.yaml")
    assert time.monotonic() - started < 5
    assert "values" in str(info.value)
