"""What every sub-command needs: settings, a ready database, output helpers.

Imported by every command module when ``ingestd`` starts, so it imports nothing
heavy at the top: configuration and database modules load inside the helpers,
when a command runs (see ``cli/main.py``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ingestd.cli import exits
from ingestd.errors import CommandFailed

__all__ = ["CommandFailed"]  # commands import it from here with the other helpers

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ingestd.config.settings import IngestdSettings
    from ingestd.services.page import Page


def settings_from(args: argparse.Namespace) -> IngestdSettings:
    from ingestd.config import config_path, load_settings
    from ingestd.errors import ConfigError

    path = config_path(getattr(args, "config", None))
    try:
        return load_settings(path)
    except ConfigError as exc:
        raise CommandFailed(exits.CONFIG, f"invalid configuration:\n{exc}") from exc


@contextmanager
def database(settings: IngestdSettings) -> Iterator[Engine]:
    """An engine on a database whose schema is current (created if empty)."""
    from ingestd.db.engine import make_engine
    from ingestd.db.schema import ensure_schema
    from ingestd.errors import SchemaOutdated, StorageUnavailable

    engine = make_engine(settings.database)
    try:
        try:
            ensure_schema(engine)
        except SchemaOutdated as exc:
            raise CommandFailed(exits.CONFIG, str(exc)) from exc
        except StorageUnavailable as exc:
            raise CommandFailed(exits.TEMPFAIL, str(exc)) from exc
        yield engine
    finally:
        engine.dispose()


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")


def write_bytes(content: bytes) -> None:
    """``content`` on stdout, byte-exact (after any text already written)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(content)
    sys.stdout.buffer.flush()


def print_record(record: dict[str, Any]) -> None:
    """A record as aligned ``key: value`` lines, values made terminal-safe."""
    for key, value in record.items():
        print(f"{key + ':':<16} {'' if value is None else terminal_safe(str(value))}")


def note_truncation(page: Page, option: str = "--limit") -> None:
    """On stderr, when a listing stopped at its limit: ``showing 50 of 1,284; use --limit``."""
    if page.truncated:
        print(f"showing {len(page.records):,} of {page.total:,}; use {option}", file=sys.stderr)


# C0 but tab and newline, DEL, C1.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with control characters (but newline and tab) written as escapes.

    Subjects and bodies come from senders; a raw ESC could rewrite the terminal.
    """
    return _CONTROLS.sub(lambda m: ascii(m.group())[1:-1], text)


def add_config_option(parser: argparse.ArgumentParser, *, root: bool = False) -> None:
    # On the root and on every sub-command, so `ingestd --config X run` and
    # `ingestd run --config X` both work; SUPPRESS keeps the root's value.
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None if root else argparse.SUPPRESS,
        help="configuration file (default: $INGESTD_CONFIG, else config/ingestd.yaml)",
    )
