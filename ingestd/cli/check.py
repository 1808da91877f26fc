"""``ingestd check``: validate the configuration and report every problem."""

from __future__ import annotations

import argparse

from ingestd.cli import exits
from ingestd.cli.common import add_config_option, settings_from


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("check", help="validate the configuration file")
    add_config_option(parser)
    parser.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    print(
        f"configuration OK: {len(settings.mailboxes)} mailbox(es), "
        f"{len(settings.rules)} rule(s), database {settings.database.url.split('://', 1)[0]}, "
        f"SMTP {settings.smtp.host}:{settings.smtp.port}"
    )
    return exits.OK
