"""``ingestd directory``: import and export clients, sites, users, agents and suppliers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ingestd.cli import exits
from ingestd.cli.common import CommandFailed, add_config_option, database, print_json, settings_from
from ingestd.errors import DirectoryFileError, StorageError

IMPORT_HELP = """\
Add and update clients (with their domains), sites, users, agents and suppliers
from a YAML file, matched by client name, domain, site name within its client,
user email, agent email, supplier name and supplier address. The whole file is
checked first and applied in one transaction: a file with any problem changes
nothing. Import never deletes: clients, users, agents and so on that the file
does not list stay as they are, including the users ingestd created for unknown
senders. Importing the same file again changes nothing.
"""

EXPORT_HELP = """\
Write the whole directory to stdout in the shape `directory import` reads, every
user included, sorted by name (clients, sites, suppliers) or email (users, agents).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "directory", help="import / export clients, sites, users, agents and suppliers"
    )
    commands = parser.add_subparsers(dest="directory_command", required=True)
    importing = commands.add_parser(
        "import", help="add and update the directory from a YAML file (never deletes)",
        description=IMPORT_HELP,
    )
    add_config_option(importing)
    importing.add_argument("file", metavar="FILE.yaml", type=Path)
    importing.add_argument("--json", action="store_true", help="print the summary as JSON")
    importing.set_defaults(func=directory_import)
    exporting = commands.add_parser(
        "export", help="write the whole directory as YAML to stdout", description=EXPORT_HELP
    )
    add_config_option(exporting)
    exporting.add_argument("--json", action="store_true", help="write JSON instead of YAML")
    exporting.set_defaults(func=directory_export)


def directory_import(args: argparse.Namespace) -> int:
    from ingestd.directory import import_directory, load_directory

    # The file first: it needs no database, and a bad one must not reach it.
    try:
        directory = load_directory(args.file)
    except DirectoryFileError as exc:
        raise CommandFailed(exits.DATAERR, f"invalid directory file:\n{exc}") from exc
    settings = settings_from(args)
    with database(settings) as engine:
        try:
            summary = import_directory(engine, directory)
        except StorageError as exc:
            # A value the database refused is the file's to fix (65); anything
            # else (locked, down, a racing writer) may pass if tried again (75).
            code = exits.TEMPFAIL if exc.temporary else exits.DATAERR
            raise CommandFailed(code, str(exc)) from exc
    if args.json:
        print_json(summary.as_dict())
    else:
        print("\n".join(summary.lines()))
    return exits.OK


def directory_export(args: argparse.Namespace) -> int:
    from ingestd.directory import export_directory, to_yaml

    settings = settings_from(args)
    with database(settings) as engine:
        directory = export_directory(engine)
    if args.json:
        print_json(directory)
    else:
        sys.stdout.write(to_yaml(directory))
    return exits.OK
