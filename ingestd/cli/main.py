"""Entry point: ``ingestd <command> ...``; ``main(argv)`` returns the exit code.

Start-up is kept light: a Postfix pipe transport runs ``ingestd ingest -`` once
per message. This module imports no command module at the top; it knows the
command groups by name, and imports only the module of the command that runs
(``--version`` and ``--help`` import none). Each command module imports only
argparse-level things at the top and loads its libraries when its handler runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ingestd import __version__
from ingestd.cli import exits
from ingestd.cli.common import CommandFailed, add_config_option
from ingestd.errors import IngestdError, InvalidRequest

# name -> (module whose register() adds its parser, the help `ingestd --help` lists).
# The help must equal what the module registers (tests/test_cli_startup.py checks).
COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "run": ("ingestd.cli.run", "run the daemon in the foreground"),
    "check": ("ingestd.cli.check", "validate the configuration file"),
    "ingest": ("ingestd.cli.ingest",
               "store .eml files, directories, mbox files or stdin (-) as inbound mail"),
    "explain": ("ingestd.cli.explain",
                "show what processing would do with a message, writing nothing"),
    "messages": ("ingestd.cli.messages", "the inbound message log"),
    "tickets": ("ingestd.cli.tickets", "tickets and their actions"),
    "attachments": ("ingestd.cli.attachments", "attachment contents"),
    "inbox": ("ingestd.cli.inbox", "My Inbox: sales mail waiting for its agent"),
    "agents": ("ingestd.cli.agents", "agents' HTTP API tokens"),
    "mailboxes": ("ingestd.cli.mailboxes", "pulled mailboxes: status, poll now"),
    "quarantine": ("ingestd.cli.quarantine", "messages held for a person"),
    "directory": ("ingestd.cli.directory",
                  "import / export clients, sites, users, agents and suppliers"),
    "db": ("ingestd.cli.db", "database schema"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with ``command``'s group registered in full and the others as names.

    A group not registered in full is a bare sub-parser that accepts anything
    (``parse_known_args`` keeps the rest), so a first pass can find which
    command to load; the root's help and errors are the same either way.
    """
    parser = argparse.ArgumentParser(
        prog="ingestd", description="Email-ingestion daemon for helpdesk / PSA software."
    )
    parser.add_argument("--version", action="version", version=f"ingestd {__version__}")
    add_config_option(parser, root=True)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMAND_GROUPS.items():
        if name == command:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Find the command with the light parser, then parse in full with its group loaded."""
    chosen, _rest = build_parser().parse_known_args(argv)
    return build_parser(chosen.command).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_arguments(arguments)
    except SystemExit as exc:
        if exc.code in (0, None):
            return exits.OK
        # An MTA bounces mail on 64; a pipe transport's wrong arguments are its
        # own configuration's fault, and the mail must wait for the fix.
        return exits.TEMPFAIL if _command_of(arguments) == "ingest" else exits.USAGE
    try:
        return int(args.func(args))
    except CommandFailed as exc:
        print(f"ingestd: {exc}", file=sys.stderr)
        return exc.code
    except InvalidRequest as exc:
        print(f"ingestd: {exc}", file=sys.stderr)
        return exits.DATAERR
    except IngestdError as exc:
        print(f"ingestd: {exc}", file=sys.stderr)
        return exits.TEMPFAIL if exc.temporary else exits.SOFTWARE
    except KeyboardInterrupt:
        return 130


def _command_of(arguments: Sequence[str]) -> str | None:
    """The sub-command named in ``arguments`` (skipping the root's own options)."""
    skip = False
    for token in arguments:
        if skip:
            skip = False
        elif token == "--config":
            skip = True
        elif not token.startswith("-"):
            return token
    return None


def entry_point() -> None:
    sys.exit(main())
