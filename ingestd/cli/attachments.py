"""``ingestd attachments``: attachment contents, byte-exact."""

from __future__ import annotations

import argparse

from ingestd.cli import exits
from ingestd.cli.common import add_config_option, database, settings_from, write_bytes


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("attachments", help="attachment contents")
    commands = parser.add_subparsers(dest="attachments_command", required=True)
    get = commands.add_parser("get", help="write an attachment's bytes to stdout")
    add_config_option(get)
    get.add_argument("id", type=int)
    get.set_defaults(func=get_attachment)


def get_attachment(args: argparse.Namespace) -> int:
    from ingestd.db.engine import read_only
    from ingestd.services.attachments import attachment_content

    with database(settings_from(args)) as engine, read_only(engine) as conn:
        content = attachment_content(conn, args.id)
    write_bytes(content)
    return exits.OK
