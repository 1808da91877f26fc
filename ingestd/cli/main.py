"""Entry point: ``ingestd <command> ...``; ``main(argv)`` returns the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ingestd import __version__
from ingestd.cli import (
    attachments,
    check,
    db,
    directory,
    exits,
    ingest,
    messages,
    quarantine,
    run,
    tickets,
)
from ingestd.cli.common import CommandFailed, add_config_option
from ingestd.errors import IngestdError, InvalidRequest

COMMAND_GROUPS = (run, check, ingest, messages, tickets, attachments, quarantine, directory, db)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingestd", description="Email-ingestion daemon for helpdesk / PSA software."
    )
    parser.add_argument("--version", action="version", version=f"ingestd {__version__}")
    add_config_option(parser, root=True)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exits.USAGE if exc.code not in (0, None) else exits.OK
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


def entry_point() -> None:
    sys.exit(main())
