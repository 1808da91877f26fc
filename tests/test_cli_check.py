"""`ingestd check`: no mailbox is an error, and every problem is reported in one pass, by line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ingestd.cli.main import main
from ingestd.config import load_settings
from ingestd.errors import ConfigError

NO_MAILBOX = "mailboxes: no mailbox configured; every recipient would be refused"


@pytest.mark.parametrize("text,line", [
    ("smtp:\n  port: 2525\n", 1),
    ("smtp:\n  port: 2525\nmailboxes: []\n", 3),
    ("smtp:\n  port: 2525\nmailboxes:\n", 3),
], ids=["absent", "empty list", "no value"])
def test_check_refuses_a_configuration_without_mailboxes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int
) -> None:
    """No mailbox is one located error, exit 78: every recipient would be refused."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert main(["check", "--config", str(path)]) == 78
    err = capsys.readouterr().err
    assert err.splitlines()[1:] == [f"{path}:{line}: {NO_MAILBOX}"]


def test_an_empty_file_is_refused_for_want_of_a_mailbox(tmp_path: Path) -> None:
    """An empty file has no line to name; the problem still names the key."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert [str(p) for p in info.value.problems] == [f"{path}: {NO_MAILBOX}"]


def test_the_daemon_refuses_to_start_without_a_mailbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ingestd run` stops at start-up with the same error and exit 78, before listening."""
    path = tmp_path / "c.yaml"
    path.write_text(f"database:\n  url: sqlite:///{tmp_path}/x.db\nsmtp:\n  port: 0\n")
    assert main(["run", "--config", str(path)]) == 78
    assert f"{path}:1: {NO_MAILBOX}" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()


def test_cross_checks_and_setting_errors_are_reported_together_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A duplicate address at line 10 and a bad port at line 20: both, line 10 first."""
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent("""\
        # line 1
        mailboxes:
          - name: support
            addresses:
              - support@example.com
              - help@example.com
          - name: other
            addresses:
              - other@example.com
              - Help@Example.com
          - name: third
            addresses: [third@example.com]
        logging:
          level: info
        database:
          url: sqlite:///var/x.db
        unknown_senders:
          action: create_user
        smtp:
          port: 99999
        """))
    assert main(["check", "--config", str(path)]) == 78
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "ingestd: invalid configuration:"
    assert len(lines) == 3, lines
    assert lines[1].startswith(f"{path}:10: mailboxes[1].addresses[1]: help@example.com is "
                               "already claimed by mailbox 'support'")
    assert lines[2].startswith(f"{path}:20: smtp.port: Input should be less than or equal")


def test_cross_checks_run_beside_invalid_mailboxes(tmp_path: Path) -> None:
    """Duplicate names and +detail addresses are found even when other mailboxes are invalid."""
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent("""\
        mailboxes:
          - name: support
            addresses: [support+x@example.com]
          - name: support
            addresses: [nobody]
          - addresses: [a@example.com]
          - name: 42
            addresses: [a@example.com]
        """))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    found = [(p.line, p.path, p.reason.split(";")[0][:40]) for p in info.value.problems]
    assert found == [
        (3, "mailboxes[0].addresses[0]", "'support+x@example.com': list the base a"),
        (4, "mailboxes[1].name", "mailbox name 'support' is already used b"),
        (5, "mailboxes[1].addresses", "'nobody' is not an email address"),
        (6, "mailboxes[2].name", "required setting is missing"),
        (7, "mailboxes[3].name", "Input should be a valid string"),
        (8, "mailboxes[3].addresses[0]", "a@example.com is already claimed by mail"),
    ]
