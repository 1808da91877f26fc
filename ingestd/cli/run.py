"""``ingestd run``: the daemon, in the foreground (systemd supervises it)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from ingestd.cli import exits
from ingestd.cli.common import CommandFailed, add_config_option, settings_from
from ingestd.errors import CertificateUnusable, ListenFailed, SchemaOutdated, StorageUnavailable

if TYPE_CHECKING:
    from ingestd.config.settings import IngestdSettings
    from ingestd.pipeline.runner import Pipeline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run the daemon in the foreground")
    add_config_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ingestd.config import config_path, load_settings

    path = config_path(getattr(args, "config", None))
    return run_daemon(settings_from(args), load=lambda: load_settings(path))


def run_daemon(settings: IngestdSettings, pipeline: Pipeline | None = None,
               load: Callable[[], IngestdSettings] | None = None) -> int:
    """Serve until SIGTERM / SIGINT; start-up failures become exit codes with their cause."""
    import asyncio

    from ingestd.logs import configure_logging
    from ingestd.memory import return_large_buffers

    configure_logging(settings.logging)
    return_large_buffers()
    try:
        asyncio.run(_serve(settings, pipeline, load))
    except SchemaOutdated as exc:
        raise CommandFailed(exits.CONFIG, str(exc)) from exc
    except CertificateUnusable as exc:
        raise CommandFailed(exits.CONFIG, f"smtp.tls: {exc}") from exc
    except ListenFailed as exc:
        raise CommandFailed(exits.UNAVAILABLE, str(exc)) from exc
    except StorageUnavailable as exc:
        raise CommandFailed(exits.TEMPFAIL, f"database unavailable: {exc}") from exc
    except OSError as exc:
        # Not the listening socket (that is ListenFailed): name what failed.
        where = f" ({exc.filename})" if exc.filename else ""
        raise CommandFailed(exits.OSERR, f"start-up failed: {exc.strerror or exc}{where}"
                            ) from exc
    return exits.OK


async def _serve(settings: IngestdSettings, pipeline: Pipeline | None,
                 load: Callable[[], IngestdSettings] | None) -> None:
    import asyncio
    import signal

    from ingestd.daemon import run_until_stopped

    stop = asyncio.Event()
    reload_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP: reload the rules (an invalid new configuration keeps the old rules).
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    await run_until_stopped(settings, stop, pipeline=pipeline, load=load,
                            reload_requested=reload_requested)
