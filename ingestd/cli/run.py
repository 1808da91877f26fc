"""``ingestd run``: the daemon, in the foreground (systemd supervises it)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ingestd.cli import exits
from ingestd.cli.common import CommandFailed, add_config_option, settings_from
from ingestd.errors import SchemaOutdated, StorageUnavailable

if TYPE_CHECKING:
    from ingestd.config.settings import IngestdSettings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run the daemon in the foreground")
    add_config_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from ingestd.logs import configure_logging

    settings = settings_from(args)
    configure_logging(settings.logging)
    try:
        asyncio.run(_serve(settings))
    except SchemaOutdated as exc:
        raise CommandFailed(exits.CONFIG, str(exc)) from exc
    except StorageUnavailable as exc:
        raise CommandFailed(exits.TEMPFAIL, str(exc)) from exc
    except OSError as exc:
        # Typically the SMTP port is taken or not ours to bind.
        raise CommandFailed(
            exits.UNAVAILABLE,
            f"cannot listen on {settings.smtp.host}:{settings.smtp.port}: {exc.strerror or exc}",
        ) from exc
    return exits.OK


async def _serve(settings: IngestdSettings) -> None:
    import asyncio
    import signal

    from ingestd.daemon import run_until_stopped

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_until_stopped(settings, stop)
