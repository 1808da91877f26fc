"""`ingestd directory import / export`: validation, one-transaction upsert, round trip."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.db.engine import is_postgres, make_engine
from ingestd.db.models import (
    Agent,
    Client,
    ClientDomain,
    Site,
    Supplier,
    SupplierAddress,
    User,
    utcnow,
)

REPO = Path(__file__).resolve().parent.parent

TABLES = {
    model.__tablename__: model.__table__  # type: ignore[attr-defined]
    for model in (Client, ClientDomain, Site, User, Agent, Supplier, SupplierAddress)
}
KINDS = ("clients", "sites", "users", "agents", "suppliers")

BASE = """\
clients:
  - name: Acme Ltd
    domains: [acme.example]
    sites:
      - name: Head Office
        users:
          - {name: Alice Smith, email: Alice@ACME.example, vip: true}
          - {name: Bob Jones, email: bob@acme.example}
      - name: Warehouse
agents:
  - {name: Nina Peach, email: nina@example.com, team: Sales, admin: true}
  - {name: Omar Reed, email: omar@example.com, active: false}
suppliers:
  - {name: Dell, emails: [Support@Dell.example], domains: [dell.example]}
"""


# --- helpers -------------------------------------------------------------------


@pytest.fixture
def engine(config_file: Path) -> Iterator[Engine]:
    """An engine on the same database the CLI under test uses."""
    engine = make_engine(load_settings(config_file).database)
    yield engine
    engine.dispose()


def write(directory: Path, text: str, name: str = "directory.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def run_import(
    path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, dict[str, int]]:
    """Import ``path`` with --json; assert success and return the summary."""
    code = main(["directory", "import", str(path), "--json", "--config", str(config_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    summary: dict[str, dict[str, int]] = json.loads(out)
    return summary


def run_export(config_file: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    assert main(["directory", "export", *flags, "--config", str(config_file)]) == 0
    return capsys.readouterr().out


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every directory table, in id order."""
    with engine.connect() as conn:
        return {
            name: [tuple(row) for row in conn.execute(sa.select(t).order_by(t.c.id))]
            for name, t in TABLES.items()
        }


def one(engine: Engine, table: str, **where: Any) -> Any:
    t = TABLES[table]
    query = sa.select(t).where(*(t.c[k] == v for k, v in where.items()))
    with engine.connect() as conn:
        return conn.execute(query).one()


def no_changes(summary: dict[str, dict[str, int]]) -> bool:
    return all(summary[k]["added"] == 0 and summary[k]["updated"] == 0 for k in KINDS)


def add_ingestd_created_user(engine: Engine) -> None:
    """What intake does for an unknown sender: a user in the default client and site."""
    with engine.begin() as conn:
        client_id = conn.execute(
            sa.insert(TABLES["clients"]).values(name="Unassigned", vip=False)
        ).inserted_primary_key[0]
        site_id = conn.execute(
            sa.insert(TABLES["sites"]).values(client_id=client_id, name="Main")
        ).inserted_primary_key[0]
        conn.execute(sa.insert(TABLES["users"]).values(
            site_id=site_id, name="Stranger", email="stranger@elsewhere.example", vip=False,
            created_by_ingestd=True, created_at=utcnow(),
        ))


# --- importing -----------------------------------------------------------------


def test_import_creates_rows(
    tmp_path: Path, config_file: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A first import adds every entry with its defaults, emails and domains lower-cased."""
    path = write(tmp_path, BASE)
    assert main(["directory", "import", str(path), "--config", str(config_file)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "clients: 1 added, 0 updated, 0 unchanged",
        "sites: 2 added, 0 updated, 0 unchanged",
        "users: 2 added, 0 updated, 0 unchanged",
        "agents: 2 added, 0 updated, 0 unchanged",
        "suppliers: 1 added, 0 updated, 0 unchanged",
    ]
    acme = one(engine, "clients", name="Acme Ltd")
    assert acme.vip is False
    assert one(engine, "client_domains", domain="acme.example").client_id == acme.id
    head = one(engine, "sites", client_id=acme.id, name="Head Office")
    one(engine, "sites", client_id=acme.id, name="Warehouse")
    alice = one(engine, "users", email="alice@acme.example")
    assert (alice.site_id, alice.name, alice.vip, alice.created_by_ingestd) == (
        head.id, "Alice Smith", True, False)
    assert one(engine, "users", email="bob@acme.example").vip is False
    nina = one(engine, "agents", email="nina@example.com")
    assert (nina.name, nina.team, nina.admin, nina.active) == ("Nina Peach", "Sales", True, True)
    omar = one(engine, "agents", email="omar@example.com")
    assert (omar.team, omar.admin, omar.active) == (None, False, False)
    dell = one(engine, "suppliers", name="Dell")
    assert one(engine, "supplier_addresses", kind="email",
               value="support@dell.example").supplier_id == dell.id
    assert one(engine, "supplier_addresses", kind="domain",
               value="dell.example").supplier_id == dell.id


def test_second_import_is_idempotent(
    tmp_path: Path, config_file: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Importing the same file again writes nothing and reports 0 added, 0 updated."""
    path = write(tmp_path, BASE)
    first = run_import(path, config_file, capsys)
    assert not no_changes(first)
    before = snapshot(engine)
    second = run_import(path, config_file, capsys)
    assert snapshot(engine) == before
    assert no_changes(second), second
    assert second["users"]["unchanged"] == 2
    assert second["sites"]["unchanged"] == 2


def test_changed_user_is_updated_in_place(
    tmp_path: Path, config_file: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user's new vip flag and new site update the existing row, which keeps its id."""
    run_import(write(tmp_path, BASE), config_file, capsys)
    alice_before = one(engine, "users", email="alice@acme.example")
    bob_before = one(engine, "users", email="bob@acme.example")
    changed = BASE.replace(
        "          - {name: Bob Jones, email: bob@acme.example}\n"
        "      - name: Warehouse\n",
        "      - name: Warehouse\n"
        "        users:\n"
        "          - {name: Bob Jones, email: bob@acme.example}\n",
    ).replace("Alice@ACME.example, vip: true", "alice@acme.example, vip: false")
    assert changed.count("Warehouse\n        users") == 1 and "vip: false}" in changed

    summary = run_import(write(tmp_path, changed, "changed.yaml"), config_file, capsys)

    assert summary["users"] == {"added": 0, "updated": 2, "unchanged": 0}
    alice = one(engine, "users", email="alice@acme.example")
    assert (alice.id, alice.site_id, alice.vip) == (alice_before.id, alice_before.site_id, False)
    bob = one(engine, "users", email="bob@acme.example")
    warehouse = one(engine, "sites", name="Warehouse")
    assert (bob.id, bob.site_id) == (bob_before.id, warehouse.id)
    assert len(snapshot(engine)["users"]) == 2


def test_domain_and_supplier_address_are_repointed(
    tmp_path: Path, config_file: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A domain or supplier address listed under another owner moves to it, keeping its row."""
    run_import(write(tmp_path, BASE), config_file, capsys)
    domain_before = one(engine, "client_domains", domain="acme.example")
    address_before = one(engine, "supplier_addresses", kind="email", value="support@dell.example")
    moved = write(tmp_path, textwrap.dedent("""\
        clients:
          - name: Acme Group
            domains: [ACME.example]
        suppliers:
          - {name: Dell Technologies, emails: [support@dell.example]}
        """), "moved.yaml")

    summary = run_import(moved, config_file, capsys)

    assert summary["clients"] == {"added": 1, "updated": 0, "unchanged": 0}
    group = one(engine, "clients", name="Acme Group")
    domain = one(engine, "client_domains", domain="acme.example")
    assert (domain.id, domain.client_id) == (domain_before.id, group.id)
    dell_tech = one(engine, "suppliers", name="Dell Technologies")
    address = one(engine, "supplier_addresses", kind="email", value="support@dell.example")
    assert (address.id, address.supplier_id) == (address_before.id, dell_tech.id)
    # The old owners stay: import never deletes.
    one(engine, "clients", name="Acme Ltd")
    one(engine, "suppliers", name="Dell")

    # Moving back counts the existing owner as updated, not added.
    back = run_import(write(tmp_path, BASE), config_file, capsys)
    assert back["clients"] == {"added": 0, "updated": 1, "unchanged": 0}
    assert back["suppliers"] == {"added": 0, "updated": 1, "unchanged": 0}
    acme = one(engine, "clients", name="Acme Ltd")
    assert one(engine, "client_domains", domain="acme.example").client_id == acme.id


def test_import_keeps_what_the_file_does_not_list(
    tmp_path: Path, config_file: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows absent from the file, such as users ingestd created for unknown senders, survive."""
    run_import(write(tmp_path, BASE), config_file, capsys)
    add_ingestd_created_user(engine)
    before = snapshot(engine)
    only_agents = write(tmp_path, "agents:\n  - {name: Pat Lee, email: pat@example.com}\n",
                        "agents.yaml")

    summary = run_import(only_agents, config_file, capsys)

    assert summary["agents"] == {"added": 1, "updated": 0, "unchanged": 0}
    after = snapshot(engine)
    for table in TABLES:
        expected = len(before[table]) + (1 if table == "agents" else 0)
        assert len(after[table]) == expected, table
        assert after[table][: len(before[table])] == before[table], table
    assert one(engine, "users", email="stranger@elsewhere.example").created_by_ingestd is True


def test_import_help_says_it_never_deletes(capsys: pytest.CaptureFixture[str]) -> None:
    """The import help text tells the admin that absent entries are not deleted."""
    assert main(["directory", "import", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Import never deletes" in text
    assert "users ingestd created for unknown senders" in text


def test_database_failure_midway_changes_nothing(
    tmp_path: Path, config_file: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A write refused half-way rolls back the whole import and exits 75."""
    run_import(write(tmp_path, BASE), config_file, capsys)
    _refuse_user(engine, "boom@newco.example")
    before = snapshot(engine)
    path = write(tmp_path, textwrap.dedent("""\
        clients:
          - name: Newco
            domains: [newco.example]
            sites:
              - name: Main
                users:
                  - {name: Fine, email: fine@newco.example}
                  - {name: Boom, email: boom@newco.example}
        """), "boom.yaml")

    code = main(["directory", "import", str(path), "--config", str(config_file)])

    captured = capsys.readouterr()
    assert code == 75, captured
    assert "nothing was changed" in captured.err
    assert captured.out == ""
    assert snapshot(engine) == before


def _refuse_user(engine: Engine, email: str) -> None:
    """A trigger that makes the database refuse one user's insert, as a full disk would."""
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.execute(sa.text(
                "CREATE FUNCTION refuse_user() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.email = '{email}' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            ))
            conn.execute(sa.text(
                "CREATE TRIGGER refuse_user BEFORE INSERT ON users "
                "FOR EACH ROW EXECUTE FUNCTION refuse_user()"
            ))
        else:
            conn.execute(sa.text(
                f"CREATE TRIGGER refuse_user BEFORE INSERT ON users WHEN NEW.email = '{email}' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            ))


# --- bad files -------------------------------------------------------------------

LONG_NAME = "x" * 256

# (name, yaml text or None for a missing file, [(line, key path, fragment of the reason)]).
# Most files also hold valid new entries, so a partial import would show in the database.
BAD_FILES: list[tuple[str, str | None, list[tuple[int | None, str, str]]]] = [
    ("unknown key", """\
agents:
  - {name: New Agent, email: new@example.com}
  - {name: Omar, emial: omar@example.com}
""", [(3, "agents[1].emial", "unknown key (allowed here: name, email, team, admin, active)"),
      (3, "agents[1].email", "required key is missing")]),
    ("missing client name", """\
clients:
  - name: Newco
  - domains: [nameless.example]
""", [(3, "clients[1].name", "required key is missing")]),
    ("missing user email", """\
clients:
  - name: Newco
    sites:
      - name: Main
        users:
          - {name: No Address}
""", [(6, "clients[0].sites[0].users[0].email", "required key is missing")]),
    ("not an address", """\
agents:
  - {name: A, email: a.example.com}
  - {name: B, email: b@@example.com}
  - {name: C, email: "c d@example.com"}
  - {name: D, email: d@example.com}
""", [(2, "agents[0].email", "exactly one @"), (3, "agents[1].email", "exactly one @"),
      (4, "agents[2].email", "white space")]),
    ("user email twice", """\
clients:
  - name: Newco
    sites:
      - name: Main
        users:
          - {name: Alice, email: alice@newco.example}
  - name: Otherco
    sites:
      - name: Main
        users:
          - {name: Alice Too, email: ALICE@newco.example}
""", [(11, "clients[1].sites[0].users[0].email",
       "'alice@newco.example' is listed twice (first at clients[0].sites[0].users[0].email, "
       "line 6)")]),
    ("agent email twice", """\
agents:
  - {name: Nina Peach, email: nina@example.com}
  - {name: Nina Again, email: Nina@Example.com}
""", [(3, "agents[1].email", "listed twice")]),
    ("domain claimed by two clients", """\
clients:
  - name: Newco
    domains: [shared.example]
  - name: Otherco
    domains: [other.example, Shared.Example]
""", [(5, "clients[1].domains[1]", "already claimed by client 'Newco'")]),
    ("supplier address and domain twice", """\
suppliers:
  - {name: Dell, emails: [support@dell.example], domains: [dell.example]}
  - {name: HP, emails: [support@dell.example], domains: [hp.example, DELL.example]}
""", [(3, "suppliers[1].emails[0]", "already claimed by supplier 'Dell'"),
      (3, "suppliers[1].domains[1]", "already claimed by supplier 'Dell'")]),
    ("client name twice", """\
clients:
  - name: Newco
  - name: Otherco
  - name: Newco
""", [(4, "clients[2].name", "client 'Newco' is listed twice")]),
    ("site name twice in one client", """\
clients:
  - name: Newco
    sites:
      - name: Main
      - name: Branch
      - name: Main
  - name: Otherco
    sites:
      - name: Main
""", [(6, "clients[0].sites[2].name", "site 'Main' is listed twice")]),
    ("wrong types", """\
clients:
  - name: Newco
    vip: maybe
    sites: Main
""", [(3, "clients[0].vip", "valid boolean"), (4, "clients[0].sites", "must be a list")]),
    ("names too long or empty", f"""\
agents:
  - {{name: {LONG_NAME}, email: long@example.com}}
  - {{name: "  ", email: empty@example.com}}
""", [(2, "agents[0].name", "at most 255 characters"),
      (3, "agents[1].name", "at least 1 character")]),
    ("several problems at once", """\
clients:
  - name: Newco
    domains: [newco.example]
    colour: blue
  - name: Otherco
    domains: [newco.example]
agents:
  - {name: Nina, email: nina@example.com}
  - {email: nina@example.com}
""", [(4, "clients[0].colour", "unknown key"),
      (6, "clients[1].domains[0]", "already claimed by client 'Newco'"),
      (9, "agents[1].name", "required key is missing"),
      (9, "agents[1].email", "listed twice")]),
    ("top level not a mapping", "- name: Newco\n", [(1, "", "must be a mapping")]),
    ("invalid yaml", "clients:\n  - name: Newco\n    sites: [\n", [(4, "", "invalid YAML")]),
    ("duplicate key", "agents:\n  - name: A\n    name: B\n    email: a@example.com\n",
     [(3, "agents[0].name", "key appears twice")]),
    ("file not found", None, [(None, "", "file not found")]),
]


def _prefix(path: Path, line: int | None, key: str) -> str:
    """How a problem line starts: ``file:line: key:``, leaving out what is unknown."""
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: {key}:" if key else f"{where}:"


@pytest.mark.parametrize("name,text,expected", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_refused_and_changes_nothing(
    tmp_path: Path, config_file: Path, engine: Engine, capsys: pytest.CaptureFixture[str],
    name: str, text: str | None, expected: list[tuple[int | None, str, str]],
) -> None:
    """A bad file exits 65, prints every problem as file:line: key: reason, and writes nothing."""
    run_import(write(tmp_path, BASE), config_file, capsys)
    before = snapshot(engine)
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)

    code = main(["directory", "import", str(path), "--config", str(config_file)])

    captured = capsys.readouterr()
    assert code == 65, captured
    assert captured.out == ""
    header, *problems = captured.err.splitlines()
    assert header == "ingestd: invalid directory file:"
    assert len(problems) == len(expected), problems
    for line, key, fragment in expected:
        prefix = _prefix(path, line, key)
        assert any(p.startswith(prefix) and fragment in p for p in problems), (prefix, problems)
    assert snapshot(engine) == before


# --- exporting -------------------------------------------------------------------


def test_export_then_import_reports_no_changes(
    tmp_path: Path, config_file: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Importing an export, ingestd-created users included, adds and updates nothing."""
    run_import(write(tmp_path, BASE), config_file, capsys)
    add_ingestd_created_user(engine)
    before = snapshot(engine)

    exported = run_export(config_file, capsys)
    data = yaml.safe_load(exported)
    unassigned = next(c for c in data["clients"] if c["name"] == "Unassigned")
    assert unassigned["sites"][0]["users"] == [
        {"name": "Stranger", "email": "stranger@elsewhere.example", "vip": False}]
    summary = run_import(write(tmp_path, exported, "export.yaml"), config_file, capsys)

    assert no_changes(summary), summary
    assert summary["users"]["unchanged"] == 3
    assert snapshot(engine) == before
    assert json.loads(run_export(config_file, capsys, "--json")) == data


def test_export_is_sorted_and_complete(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Export lists every key, clients/sites/suppliers by name and users/agents by email."""
    run_import(write(tmp_path, textwrap.dedent("""\
        clients:
          - name: Zeta Corp
            domains: [zeta.example, alpha-zeta.example]
            vip: true
            sites:
              - name: West
                users:
                  - {name: Zed, email: zed@zeta.example}
                  - {name: Amy, email: amy@zeta.example, vip: true}
              - name: East
          - name: Alpha Inc
        agents:
          - {name: Adam, email: zz@example.com}
          - {name: Zoe, email: aa@example.com, team: Support}
        suppliers:
          - {name: Lenovo, domains: [lenovo.example]}
          - {name: HP, emails: [help@hp.example]}
        """)), config_file, capsys)

    data = json.loads(run_export(config_file, capsys, "--json"))

    assert data == {
        "clients": [
            {"name": "Alpha Inc", "domains": [], "vip": False, "sites": []},
            {"name": "Zeta Corp", "domains": ["alpha-zeta.example", "zeta.example"], "vip": True,
             "sites": [
                 {"name": "East", "users": []},
                 {"name": "West", "users": [
                     {"name": "Amy", "email": "amy@zeta.example", "vip": True},
                     {"name": "Zed", "email": "zed@zeta.example", "vip": False},
                 ]},
             ]},
        ],
        "agents": [
            {"name": "Zoe", "email": "aa@example.com", "team": "Support", "admin": False,
             "active": True},
            {"name": "Adam", "email": "zz@example.com", "team": None, "admin": False,
             "active": True},
        ],
        "suppliers": [
            {"name": "HP", "emails": ["help@hp.example"], "domains": []},
            {"name": "Lenovo", "emails": [], "domains": ["lenovo.example"]},
        ],
    }


def test_shipped_example_directory_imports(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """config/directory.example.yaml is a valid directory file."""
    summary = run_import(REPO / "config" / "directory.example.yaml", config_file, capsys)
    assert summary["clients"]["added"] == 1
    assert summary["users"]["added"] == 3
