"""``ingestd db``: schema status and upgrades."""

from __future__ import annotations

import argparse

from ingestd.cli import exits
from ingestd.cli.common import CommandFailed, add_config_option, settings_from


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("db", help="database schema")
    commands = parser.add_subparsers(dest="db_command", required=True)
    up = commands.add_parser("upgrade", help="create or upgrade the schema to this version")
    add_config_option(up)
    up.set_defaults(func=db_upgrade)
    status = commands.add_parser("status", help="show the schema revision")
    add_config_option(status)
    status.set_defaults(func=db_status)


def db_upgrade(args: argparse.Namespace) -> int:
    from ingestd.db.engine import make_engine
    from ingestd.db.schema import upgrade

    engine = make_engine(settings_from(args).database)
    try:
        before, after = upgrade(engine)
    except Exception as exc:
        raise CommandFailed(exits.TEMPFAIL, f"upgrade failed, nothing changed: {exc}") from exc
    finally:
        engine.dispose()
    if before == after:
        print(f"schema already at {after}")
    else:
        print(f"schema upgraded from {before or 'empty'} to {after}")
    return exits.OK


def db_status(args: argparse.Namespace) -> int:
    from ingestd.db.engine import make_engine
    from ingestd.db.schema import current_revision, head_revision

    engine = make_engine(settings_from(args).database)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    state = "current" if current == head else "needs `ingestd db upgrade`"
    print(f"schema revision {current or 'none'}, this ingestd needs {head}: {state}")
    return exits.OK
