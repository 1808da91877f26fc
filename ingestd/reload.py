"""Reloading the rules while the daemon runs: on SIGHUP, and when a rule file changes.

The new configuration is loaded and validated in full; only if it is valid do
the new rules replace the old — in worker threads from their next message,
worker processes replaced one by one once each has finished its message.
An invalid file keeps the old rules and logs every problem. Settings other
than the rules (listeners, mailboxes, the database) need a restart; a reload
that finds them changed says so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from ingestd.config.settings import IngestdSettings
from ingestd.errors import ConfigError, first_line

log = structlog.get_logger("ingestd.reload")

# How often rule files are looked at for changes.
_WATCH_EVERY = 2.0


class Reloadable(Protocol):
    def reload(self, settings: IngestdSettings) -> None: ...


def rules_fingerprint(directory: Path | None) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of every rule file: what a change moves."""
    if directory is None or not directory.is_dir():
        return ()
    found = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(found)


class RulesReloader:
    """A service: waits for SIGHUP (``requested``) or a rule file change, then reloads."""

    name = "reload"

    def __init__(self, settings: IngestdSettings, load: Callable[[], IngestdSettings],
                 targets: list[Reloadable], requested: asyncio.Event,
                 watch_every: float = _WATCH_EVERY) -> None:
        self.settings = settings
        self._load = load
        self._targets = targets
        self._requested = requested
        self._watch_every = watch_every
        self._task: asyncio.Task[None] | None = None
        self._fingerprint = rules_fingerprint(settings.rules_dir)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._requested.wait(), self._watch_every)
                self._requested.clear()
                await self.reload("SIGHUP")
            except TimeoutError:
                now = rules_fingerprint(self.settings.rules_dir)
                if now != self._fingerprint:
                    await self.reload("rule files changed")

    async def reload(self, why: str) -> bool:
        """Load and validate; apply the new rules only if everything is valid."""
        self._fingerprint = rules_fingerprint(self.settings.rules_dir)
        try:
            new = await asyncio.to_thread(self._load)
        except ConfigError as exc:
            log.error("config.reload_refused", why=why, kept_rules=len(self.settings.rules),
                      problems=[str(p) for p in exc.problems])
            return False
        except Exception as exc:
            log.error("config.reload_refused", why=why, kept_rules=len(self.settings.rules),
                      problems=[f"{type(exc).__name__}: {first_line(exc)}"])
            return False
        old_names = [r.name for r in self.settings.rules]
        new_names = [r.name for r in new.rules]
        others = new.model_copy(update={"rules": self.settings.rules})
        if others != self.settings:
            log.warning("config.restart_needed", why=why,
                        detail="settings other than the rules changed; they apply after a "
                               "restart")
        settings = self.settings.model_copy(update={"rules": new.rules})
        for target in self._targets:
            target.reload(settings)
        self.settings = settings
        log.info("config.reloaded", why=why, rules=len(new_names),
                 added=[n for n in new_names if n not in old_names],
                 removed=[n for n in old_names if n not in new_names])
        return True
