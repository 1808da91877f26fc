"""Configuration of pulled mailboxes: sources, secrets never in the file, TLS rules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ingestd.config import load_settings
from ingestd.errors import ConfigError


def _imap(extra: str = "", imap: str = "") -> str:
    return textwrap.dedent("""\
        mailboxes:
          - name: sales-nina
            addresses: [nina@example.com]
            source: imap
        """) + textwrap.indent(extra, "    ") + (
        "    imap:\n" + textwrap.indent(imap or textwrap.dedent("""\
            host: imap.example.com
            username: nina
            password_file: secrets/nina.pass
            """), "      "))


BAD = [
    ("graph without settings", "mailboxes:\n  - name: g\n    addresses: [g@example.com]\n"
     "    source: graph\n", "mailboxes[0]", "needs the graph: settings"),
    ("graph two credentials", "mailboxes:\n  - name: g\n    addresses: [g@example.com]\n"
     "    source: graph\n    graph: {tenant_id: t, client_id: c, user: g@example.com, "
     "client_secret_env: S, client_secret_file: s.txt}\n", "mailboxes[0].graph",
     "exactly one of"),
    ("graph plain http authority", "mailboxes:\n  - name: g\n    addresses: [g@example.com]\n"
     "    source: graph\n    graph: {tenant_id: t, client_id: c, user: g@example.com, "
     "client_secret_env: S, authority: 'http://login.example'}\n",
     "mailboxes[0].graph.authority", "https"),
    ("gmail both ways in", "mailboxes:\n  - name: g\n    addresses: [g@example.com]\n"
     "    source: gmail\n    gmail: {credentials_file: a.json, subject: g@example.com, "
     "token_file: t.json}\n", "mailboxes[0].gmail", "not both"),
    ("imap without settings", "mailboxes:\n  - name: g\n    addresses: [g@example.com]\n"
     "    source: imap\n", "mailboxes[0]", "needs the imap: settings"),
    ("password in the file", _imap(imap="host: h.example\nusername: n\npassword: hunter2\n"),
     "mailboxes[0].imap.password", "unknown setting"),
    ("no secret", _imap(imap="host: h.example\nusername: n\n"),
     "mailboxes[0].imap", "exactly one of password_file or password_env"),
    ("two secrets", _imap(imap="host: h.example\nusername: n\npassword_file: a\n"
                                "password_env: B\n"),
     "mailboxes[0].imap", "exactly one of password_file or password_env"),
    ("clear text to another host", _imap(imap="host: imap.example.com\ntls: none\n"
                                              "username: n\npassword_env: P\n"),
     "mailboxes[0].imap", "in clear"),
    ("xoauth2 without a token", _imap(imap="host: h.example\nusername: n\nauth: xoauth2\n"),
     "mailboxes[0].imap", "needs token_file"),
    ("interval too short", _imap(extra="poll_interval: 0.1\n"),
     "mailboxes[0].poll_interval", "greater than or equal to 1"),
    ("bad import date", _imap(extra="import_since: yesterday\n"),
     "mailboxes[0].import_since", "date"),
]


@pytest.mark.parametrize("name,text,key,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_pull_settings_are_refused(tmp_path: Path, name: str, text: str, key: str,
                                       fragment: str) -> None:
    """Each mistake is refused at load, naming the key and why."""
    path = tmp_path / "ingestd.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    problems = {p.path: p for p in info.value.problems}
    assert key in problems, [str(p) for p in info.value.problems]
    assert fragment in problems[key].reason, str(problems[key])
    assert problems[key].line is not None


def test_secret_files_are_relative_to_the_configuration(tmp_path: Path) -> None:
    """A relative password_file is read from the configuration file's directory, whatever
    the working directory; loopback may go without TLS; defaults are documented ones."""
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "ingestd.yaml"
    path.write_text(_imap())
    mailbox = load_settings(path).mailboxes[0]
    assert mailbox.imap is not None
    assert mailbox.imap.password_file == tmp_path / "conf" / "secrets" / "nina.pass"
    assert (mailbox.poll_interval, mailbox.resync_lookback_days, mailbox.enabled) == (60, 7, True)
    assert mailbox.imap.effective_port == 993 and mailbox.imap.folders == ("INBOX",)
    path.write_text(_imap(imap="host: 127.0.0.1\ntls: none\nusername: n\npassword_env: P\n"))
    assert load_settings(path).mailboxes[0].imap.effective_port == 143  # type: ignore[union-attr]
