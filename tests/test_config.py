"""Configuration loading: defaults, lookup order, and every error named with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ingestd.cli.main import main
from ingestd.config import config_path, load_settings
from ingestd.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

GOOD_MAILBOX = """
mailboxes:
  - name: support
    addresses: [support@example.com]
"""

# (name, yaml text, [(line, key path, fragment of the reason)])
BAD_CONFIGS = [
    ("unknown key", "databse:\n  url: sqlite:///x.db\n" + GOOD_MAILBOX,
     [(1, "databse", "unknown setting")]),
    ("bad url", "database:\n  url: mysql://x/y\n" + GOOD_MAILBOX,
     [(2, "database.url", "must start with sqlite:///")]),
    ("port out of range", "smtp:\n  port: 70000\n" + GOOD_MAILBOX,
     [(2, "smtp.port", "less than or equal")]),
    ("port not a number", "smtp:\n  port: twenty\n" + GOOD_MAILBOX,
     [(2, "smtp.port", "valid integer")]),
    ("unknown sender action", "unknown_senders:\n  action: shrug\n" + GOOD_MAILBOX,
     [(2, "unknown_senders.action", "'create_user' or 'no_user'")]),
    ("mailbox without addresses", "mailboxes:\n  - name: support\n",
     [(2, "mailboxes[0].addresses", "required setting is missing")]),
    ("not an address", "mailboxes:\n  - name: s\n    addresses: [nobody]\n",
     [(3, "mailboxes[0].addresses", "is not an email address")]),
    ("accidental tags", textwrap.dedent("""\
        mailboxes:
          - name: support
            addresses: [support@example.com]
            ticket_id_tags:
              start: "!"
              end: "?"
        """),
     [(5, "mailboxes[0].ticket_id_tags.start", "shorter than 2 characters"),
      (5, "mailboxes[0].ticket_id_tags.start", "no letter or digit")]),
    ("same start and end", textwrap.dedent("""\
        mailboxes:
          - name: support
            addresses: [support@example.com]
            ticket_id_tags: {start: "#T", end: "#T"}
        """),
     [(4, "mailboxes[0].ticket_id_tags", "must differ")]),
    ("bad extra tag", textwrap.dedent("""\
        mailboxes:
          - name: support
            addresses: [support@example.com]
            ticket_id_tags:
              extra: [{start: "[ID ", end: "]"}, {start: "##", end: "]"}]
        """),
     [(5, "mailboxes[0].ticket_id_tags.extra[1].start", "no letter or digit")]),
    ("address claimed twice", textwrap.dedent("""\
        mailboxes:
          - name: support
            addresses: [support@example.com]
          - name: other
            addresses: [Support@Example.com]
        """),
     [(5, "mailboxes[1].addresses[0]", "already claimed by mailbox 'support'")]),
    ("duplicate mailbox name", textwrap.dedent("""\
        mailboxes:
          - name: support
            addresses: [a@example.com]
          - name: support
            addresses: [b@example.com]
        """),
     [(4, "mailboxes[1].name", "already used")]),
    ("timeout not within lease", "processing:\n  timeout_seconds: 400\n" + GOOD_MAILBOX,
     [(1, "processing", "must be shorter than lease_seconds")]),
    ("invalid yaml", "smtp:\n  port: [1, 2\n", [(None, "", "invalid YAML")]),
    ("duplicate key", "smtp:\n  port: 1\n  port: 2\n", [(3, "smtp.port", "twice")]),
    ("top level list", "- a\n- b\n", [(1, "", "must be a mapping")]),
    ("several errors at once",
     "smtp:\n  port: -1\n  max_recipients: 0\nextra: 1\n" + GOOD_MAILBOX,
     [(2, "smtp.port", "greater than or equal"),
      (3, "smtp.max_recipients", "greater than or equal"),
      (4, "extra", "unknown setting")]),
]


@pytest.mark.parametrize("name,text,expected", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused_with_every_problem(
    tmp_path: Path, name: str, text: str, expected: list[tuple[int | None, str, str]]
) -> None:
    """Each bad file yields exactly the expected problems, each with file, line and key."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    problems = info.value.problems
    assert len(problems) == len({(line, key) for line, key, _ in expected}), [
        str(p) for p in problems
    ]
    by_key = {p.path: p for p in problems}
    for line, key, fragment in expected:
        problem = by_key[key]
        assert problem.file == str(path)
        if line is not None:
            assert problem.line == line, str(problem)
        assert problem.path == key, str(problem)
        assert fragment in problem.reason, str(problem)


def test_check_prints_all_errors_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ingestd check` exits 78 and prints file:line: key: reason for every problem."""
    path = tmp_path / "bad.yaml"
    path.write_text("smtp:\n  port: -1\n  max_recipients: 0\n")
    assert main(["check", "--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert f"{path}:2: smtp.port:" in err
    assert f"{path}:3: smtp.max_recipients:" in err


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config path that does not exist is reported, not a traceback."""
    assert main(["check", "--config", str(tmp_path / "nope.yaml")]) == 78
    assert "nope.yaml: file not found" in capsys.readouterr().err


def test_shipped_example_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    """config/ingestd.yaml works as shipped."""
    assert main(["check", "--config", str(REPO / "config" / "ingestd.yaml")]) == 0
    assert "configuration OK: 3 mailbox(es), 4 rule(s)" in capsys.readouterr().out


def test_defaults_fill_unspecified_settings(tmp_path: Path) -> None:
    """Only mailboxes given: everything else takes the documented defaults."""
    path = tmp_path / "c.yaml"
    path.write_text(GOOD_MAILBOX)
    settings = load_settings(path)
    assert settings.database.url == "sqlite:///var/ingestd.db"
    assert settings.smtp.port == 2525
    assert settings.smtp.max_message_size == 26_214_400
    assert (settings.http.enabled, settings.http.host, settings.http.port) == (
        True, "127.0.0.1", 8025)
    assert settings.unknown_senders.action == "create_user"
    tags = settings.mailboxes[0].ticket_id_tags
    assert (tags.start, tags.end, tags.search_body) == ("[ID:", "]", False)


def test_settings_are_immutable(tmp_path: Path) -> None:
    """Validated settings cannot be changed after load."""
    path = tmp_path / "c.yaml"
    path.write_text(GOOD_MAILBOX)
    settings = load_settings(path)
    with pytest.raises(Exception, match="frozen"):
        settings.smtp.port = 1  # type: ignore[misc]


def test_config_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--config wins over $INGESTD_CONFIG, which wins over config/ingestd.yaml."""
    monkeypatch.delenv("INGESTD_CONFIG", raising=False)
    assert config_path(None) == Path("config/ingestd.yaml")
    monkeypatch.setenv("INGESTD_CONFIG", str(tmp_path / "env.yaml"))
    assert config_path(None) == tmp_path / "env.yaml"
    assert config_path(str(tmp_path / "arg.yaml")) == tmp_path / "arg.yaml"


def test_env_config_is_used_by_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sub-command without --config reads $INGESTD_CONFIG."""
    path = tmp_path / "env.yaml"
    path.write_text(GOOD_MAILBOX)
    monkeypatch.setenv("INGESTD_CONFIG", str(path))
    assert main(["check"]) == 0
    assert "1 mailbox(es)" in capsys.readouterr().out


def test_relative_sqlite_path_resolves_against_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:///var/x.db is created under the current directory, var/ made on demand."""
    path = tmp_path / "c.yaml"
    path.write_text("database:\n  url: sqlite:///var/x.db\n" + GOOD_MAILBOX)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["--config", str(path), "db", "upgrade"]) == 0
    assert (work / "var" / "x.db").exists()
