"""YAML rules: loading with located errors, every operator and action, order and stop,
named captures and marker mapping, VIP, ignore and updates_only outcomes."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ingestd.config import load_settings
from ingestd.config.settings import ProcessingLimits
from ingestd.db.engine import make_engine
from ingestd.db.tables import AGENTS, TICKETS
from ingestd.errors import ConfigError
from ingestd.pipeline.stages.parse import parse_message
from ingestd.rules.conditions import holds
from ingestd.rules.model import Condition
from ingestd.rules.view import MessageView
from tests.conftest import write_config
from tests.processing_env import ProcessingEnv, import_directory, processing_config


def mail(subject: str = "Printer broken", sender: str = "alice@acme.example",
         body: str = "It jams.", to: str = "support@example.com", extra: str = "") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash((subject, sender, body, extra)))}@acme.example>\r\n"
            f"{extra}\r\n{body}\r\n").encode()


def view(raw: bytes, *, mailbox: str = "support", kind: str = "user",
         vip: bool = False) -> MessageView:
    return MessageView(mailbox, parse_message(raw, ProcessingLimits()), raw, kind, vip)


def check(condition: dict[str, Any], raw: bytes, **kw: Any) -> tuple[bool, dict[str, str]]:
    captures: dict[str, str] = {}
    ok, _ = holds(Condition.model_validate(condition), view(raw, **kw), captures)
    return ok, captures


@pytest.mark.parametrize("condition,expected", [
    ({"subject": {"equals": "printer BROKEN"}}, True),
    ({"subject": "Printer broken"}, True),
    ({"subject": {"contains": "BROK"}}, True),
    ({"subject": {"starts_with": "print"}}, True),
    ({"subject": {"ends_with": "broken"}}, True),
    ({"subject": {"any_of": ["x", "printer broken"]}}, True),
    ({"subject": {"matches": "^Printer"}}, True),
    ({"subject": {"matches": "^printer"}}, False),
    ({"subject": {"not_contains": "printer"}}, False),
    ({"subject": {"not_equals": "other"}}, True),
    ({"from": {"equals": "alice@acme.example"}}, True),
    ({"from_domain": {"any_of": ["acme.example"]}}, True),
    ({"to": {"contains": "support@"}}, True),
    ({"cc": {"contains": "support@"}}, False),
    ({"to_or_cc": {"ends_with": "@example.com"}}, True),
    ({"body": {"contains": "jams"}}, True),
    ({"headers": {"X-Priority": {"equals": "1"}}}, True),
    ({"headers": {"X-Missing": {"equals": "1"}}}, False),
    ({"sender_kind": "user"}, True),
    ({"vip": True}, False),
    ({"has_attachment": False}, True),
    ({"mailbox": "support"}, True),
    ({"any": [{"subject": "no"}, {"from_domain": "acme.example"}]}, True),
    ({"all": [{"subject": {"contains": "printer"}}, {"from_domain": "other.example"}]}, False),
    ({"not": {"from_domain": "acme.example"}}, False),
])
def test_each_operator_and_field(condition: dict[str, Any], expected: bool) -> None:
    """Every operator on the fields it applies to; text ignores case, regexes do not."""
    ok, _ = check(condition, mail(extra="X-Priority: 1\r\n"))
    assert ok is expected


def test_named_captures_are_returned() -> None:
    """A regex's named groups fill the captures actions use."""
    ok, captures = check({"subject": {"matches": r"(?P<asset>PC-[0-9]+)"}},
                         mail(subject="PC-1234 will not boot"))
    assert ok and captures == {"asset": "PC-1234"}


def _write_rules(directory: Path, text: str, name: str = "10-rules.yaml") -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("text,line,fragment", [
    ("- name: a\n  actions: [{ignore: true}]\n  colour: red\n", 3, "unknown key"),
    ("- name: a\n  match: {subject: {matches: '('}}\n  actions: [{ignore: true}]\n", 2,
     "regular expression"),
    ("- name: a\n  mailboxes: [nowhere]\n  actions: [{ignore: true}]\n", 2, "no mailbox"),
    ("- name: a\n  actions: [{route: nowhere}]\n", 2, "no mailbox named 'nowhere'"),
    ("- name: a\n  match: {subject: {contains: x, equals: y}}\n  actions: [{ignore: true}]\n",
     2, "exactly one operator"),
    ("- name: a\n  actions: [{ignore: true, set_priority: high}]\n", 2, "each action is one"),
    ("- name: a\n  actions: [{assign: {team: Support}}]\n", 2, "strategy"),
    ("name: a\n", 1, "list of rules"),
])
def test_rule_files_are_refused_with_file_and_line(
        tmp_path: Path, sqlite_url: str, text: str, line: int, fragment: str) -> None:
    """A broken rule file is refused at load (and by `ingestd check`) naming file and line."""
    rules = _write_rules(tmp_path / "rules", text)
    config = processing_config(sqlite_url)
    config["rules_dir"] = "rules"
    path = write_config(tmp_path, config)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    problem = info.value.problems[0]
    assert problem.file == str(rules)
    assert problem.line == line, str(problem)
    assert fragment in problem.reason, str(problem)


def test_a_rule_name_used_twice_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    """Names are unique across files (reasons and explain name rules)."""
    _write_rules(tmp_path / "rules", "- name: a\n  actions: [{ignore: true}]\n", "10.yaml")
    second = _write_rules(tmp_path / "rules", "- name: a\n  actions: [{ignore: true}]\n",
                          "20.yaml")
    config = processing_config(sqlite_url)
    config["rules_dir"] = "rules"
    with pytest.raises(ConfigError) as info:
        load_settings(write_config(tmp_path, config))
    assert info.value.problems[0].file == str(second)
    assert "already used" in info.value.problems[0].reason


@pytest.fixture
def rules_env(tmp_path: Path, sqlite_url: str) -> Any:
    def make(text: str) -> ProcessingEnv:
        _write_rules(tmp_path / "rules", text)
        config = processing_config(sqlite_url, workers=0)
        config["rules_dir"] = "rules"
        path = write_config(tmp_path, config)
        import_directory(path)
        return ProcessingEnv(path, make_engine(load_settings(path).database), "ingest")

    return make


def test_actions_set_the_new_ticket(rules_env: Any) -> None:
    """Captures fill fields, markers map body text, priority / category / team / tags /
    type are set, the agent is assigned, and the reason names the rules."""
    env = rules_env("""
        - name: asset-from-subject
          match: {subject: {matches: "(?P<asset>PC-[0-9]+)"}}
          actions:
            - set_field: {name: asset, value: "{asset}"}
            - set_field: {name: room, start: "Room:", end: "\\n"}
            - set_priority: high
            - set_category: Hardware
            - set_team: Support
            - add_tags: [hardware, pc]
            - set_type: problem
            - assign: {agent: nina@example.com}
    """)
    row = env.deliver("", raw=mail(subject="PC-0042 dead", body="Hello\r\nRoom: 3.14\r\nBye"))
    assert row.status == "processed" and "rules: asset-from-subject" in row.reason
    ticket = env.ticket(row.ticket_id)
    assert ticket["fields"] == {"asset": "PC-0042", "room": "3.14"}
    assert (ticket["priority"], ticket["category"], ticket["team"], ticket["type"]) == (
        "high", "Hardware", "Support", "problem")
    assert ticket["tags"] == ["hardware", "pc"] and ticket["agent_email"] == "nina@example.com"
    assert ticket["vip"] is True  # alice@acme.example is a VIP user in the test directory


def test_order_stop_and_when(rules_env: Any) -> None:
    """Rules apply in order (a later one overrides), `stop` ends the list, `when: update`
    skips new tickets and applies to the update."""
    env = rules_env("""
        - name: first
          actions: [{set_priority: low}]
        - name: second
          actions: [{set_priority: high}]
          stop: true
        - name: never
          actions: [{set_priority: urgent}]
        - name: on-update
          when: update
          actions: [{add_tags: [replied]}]
    """)
    row = env.deliver("", raw=mail(subject="Order"))
    ticket = env.ticket(row.ticket_id)
    assert ticket["priority"] == "high" and ticket["tags"] == []
    reply = env.deliver("", raw=mail(subject=f"Re: [ID:{row.ticket_id}] Order", body="more"))
    assert reply.ticket_id == row.ticket_id
    assert env.ticket(row.ticket_id)["priority"] == "high"


def test_ignore_and_updates_only(rules_env: Any) -> None:
    """`ignore` makes nothing (ignored, rule:<name>); `updates_only` quarantines mail that
    would open a ticket (updates-only) and lets replies through."""
    env = rules_env("""
        - name: drop-newsletters
          match: {subject: {contains: newsletter}}
          actions: [{ignore: true}]
          stop: true
        - name: supplier-updates-only
          match: {from_domain: dell.example}
          actions: [{updates_only: true}]
    """)
    dropped = env.deliver("", raw=mail(subject="Our newsletter"))
    assert (dropped.status, dropped.reason) == ("ignored", "rule:drop-newsletters")
    held = env.deliver("", raw=mail(subject="New case", sender="support@dell.example"))
    assert (held.status, held.reason) == ("quarantined", "updates-only")
    assert env.count("tickets") == 0


def test_route_changes_the_mailbox(rules_env: Any) -> None:
    """`route` moves the message to another mailbox: its ticket type and mailbox."""
    env = rules_env("""
        - name: quotes-to-sales
          match: {subject: {starts_with: "quote"}}
          actions: [{route: sales}]
    """)
    row = env.deliver("", raw=mail(subject="Quote for 10 laptops"))
    ticket = env.ticket(row.ticket_id)
    assert (ticket["mailbox"], ticket["type"]) == ("sales", "opportunity")


def test_fewest_open_assignment(rules_env: Any) -> None:
    """The team's active agent with the fewest open tickets gets the next one; ties go to
    the lowest id; an inactive agent never."""
    env = rules_env("""
        - name: to-support
          actions: [{assign: {team: support, strategy: fewest_open}}]
    """)
    with env.engine.begin() as conn:
        conn.execute(sa.insert(AGENTS), [
            {"name": "Omar", "email": "omar@example.com", "team": "Support", "admin": False,
             "active": True},
            {"name": "Gone", "email": "gone@example.com", "team": "Support", "admin": False,
             "active": False}])
    for i in range(6):
        env.deliver("", raw=mail(subject=f"Case {i}", body=f"case {i}"))
    with env.engine.connect() as conn:
        counts = dict(conn.execute(sa.select(AGENTS.c.email, sa.func.count(TICKETS.c.id))
                                   .join(TICKETS, TICKETS.c.agent_id == AGENTS.c.id)
                                   .group_by(AGENTS.c.email)).all())
    assert counts == {"nina@example.com": 3, "omar@example.com": 3}


@pytest.mark.postgres
def test_fewest_open_stays_fair_under_concurrent_workers(
        tmp_path: Path, pg_server: Any, start_daemon: Any) -> None:
    """Two workers on PostgreSQL creating tickets at once for one team: the open-ticket
    counts of the team's active agents never differ by more than one."""
    import smtplib

    from tests.conftest import new_pg_database
    from tests.support.waiting import wait_for

    _write_rules(tmp_path / "rules", """
        - name: to-support
          actions: [{assign: {team: Support, strategy: fewest_open}}]
    """)
    config = processing_config(new_pg_database(pg_server), workers=2)
    config["rules_dir"] = "rules"
    path = write_config(tmp_path, config)
    import_directory(path)
    daemon = start_daemon(path)
    with daemon.engine.begin() as conn:
        conn.execute(sa.insert(AGENTS), [
            {"name": f"Agent {i}", "email": f"agent{i}@example.com", "team": "Support",
             "admin": False, "active": True} for i in range(3)])
    total = 40
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        for i in range(total):
            client.sendmail("relay@example.net", ["support@example.com"],
                            mail(subject=f"Case {i}", sender=f"user{i}@acme.example",
                                 body=f"case {i}"))

    def processed() -> bool:
        with daemon.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(TICKETS)
                                ).scalar_one() == total

    wait_for(processed, 60, "every case made a ticket")
    with daemon.engine.connect() as conn:
        counts = dict(conn.execute(
            sa.select(AGENTS.c.email, sa.func.count(TICKETS.c.id))
            .join(TICKETS, TICKETS.c.agent_id == AGENTS.c.id, isouter=True)
            .where(AGENTS.c.team == "Support", AGENTS.c.active.is_(True))
            .group_by(AGENTS.c.email)).all())
    assert sum(counts.values()) == total
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_check_strict_names_unknown_teams_and_agents(
        tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`ingestd check` accepts rules naming teams and agents the database lacks (it may be
    empty still); `check --strict` refuses them, naming file and line, until they exist."""
    from ingestd.cli.main import main

    rules = _write_rules(tmp_path / "rules", """
        - name: to-night-shift
          actions: [{assign: {team: Night, strategy: fewest_open}}]
        - name: to-omar
          actions: [{assign: {agent: omar@example.com}}]
    """)
    config = processing_config(sqlite_url)
    config["rules_dir"] = "rules"
    path = write_config(tmp_path, config)
    assert main(["check", "--config", str(path)]) == 0
    capsys.readouterr()
    assert main(["check", "--strict", "--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert f"{rules}:2: rule 'to-night-shift' assigns to team 'Night'" in err
    assert f"{rules}:4: rule 'to-omar' assigns to omar@example.com" in err
    engine = make_engine(load_settings(path).database)
    with engine.begin() as conn:
        conn.execute(sa.insert(AGENTS), [
            {"name": "Omar", "email": "omar@example.com", "team": "night", "admin": False,
             "active": True}])
    engine.dispose()
    assert main(["check", "--strict", "--config", str(path)]) == 0


def test_vip_from_the_client_and_set_status(rules_env: Any) -> None:
    """A user of a VIP client makes a VIP ticket (rules can test `vip`); set_status closes
    the new ticket; a non-VIP sender's ticket is not VIP."""
    env = rules_env("""
        - name: vip-closed
          match: {vip: true, from_domain: globex.example}
          actions: [{set_status: closed}, {add_tags: [vip]}]
    """)
    from ingestd.db.tables import CLIENT_DOMAINS, CLIENTS

    with env.engine.begin() as conn:
        client = conn.execute(sa.insert(CLIENTS).values(name="Globex", vip=True)
                              .returning(CLIENTS.c.id)).scalar_one()
        conn.execute(sa.insert(CLIENT_DOMAINS).values(client_id=client,
                                                      domain="globex.example"))
    row = env.deliver("", raw=mail(subject="Help", sender="bob@globex.example"))
    ticket = env.ticket(row.ticket_id)
    assert (ticket["vip"], ticket["status"], ticket["tags"]) == (True, "closed", ["vip"])
    plain = env.deliver("", raw=mail(subject="Help", sender="carl@nowhere.example"))
    assert env.ticket(plain.ticket_id)["vip"] is False
