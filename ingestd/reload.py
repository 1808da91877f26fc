"""Reloading while the daemon runs: on SIGHUP, and when a rule file changes.

The new configuration is loaded and validated in full; only if it is valid is
anything applied, and an invalid one keeps everything as it was and logs every
problem. What a reload applies:

* the rules — in worker threads from their next message, worker processes
  replaced one by one once each has finished its message;
* a mailbox's pull settings (``source``, ``enabled``, ``poll_interval``,
  ``import_since``, ``resync_lookback_days``, the ``imap`` / ``gmail`` /
  ``graph`` blocks) — from the mailbox's next poll; a poll under way ends
  with the old ones;
* ``smtp.tls`` — the certificate and key files are read again on every reload,
  also when their names did not change (a renewal writes new contents in place),
  for the sessions that connect after it; files that cannot be loaded keep the old
  certificate and log ``smtp.tls_reload_failed``.

Everything else (listeners, the database, a mailbox's addresses or policies,
mailboxes added or removed) needs a restart; a reload that finds such a
change applies the rest and says which keys wait for the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import structlog

from ingestd.config.pulls import PullSettings
from ingestd.config.settings import IngestdSettings
from ingestd.errors import ConfigError, first_line
from ingestd.intake.sources.schedule import pulled_mailboxes

log = structlog.get_logger("ingestd.reload")

# How often rule files are looked at for changes.
_WATCH_EVERY = 2.0


class Reloadable(Protocol):
    def reload(self, settings: IngestdSettings) -> None: ...


_PULL_KEYS = frozenset(PullSettings.model_fields)


def merged_settings(old: IngestdSettings, new: IngestdSettings
                    ) -> tuple[IngestdSettings, list[str], list[str]]:
    """(``old`` with what a reload may change taken from ``new``, the mailboxes whose pull
    settings changed, the keys whose change waits for a restart)."""
    by_name = {m.name: m for m in new.mailboxes}
    mailboxes, pulls_changed, waiting = [], [], []
    for mailbox in old.mailboxes:
        fresh = by_name.get(mailbox.name)
        if fresh is None:
            mailboxes.append(mailbox)
            continue
        if (mailbox.model_dump(exclude=set(_PULL_KEYS))
                != fresh.model_dump(exclude=set(_PULL_KEYS))):
            waiting.append(f"mailboxes.{mailbox.name}")
        changed = [k for k in sorted(_PULL_KEYS) if getattr(mailbox, k) != getattr(fresh, k)]
        if changed:
            pulls_changed.append(f"{mailbox.name} ({', '.join(changed)})")
            mailbox = mailbox.model_copy(update={k: getattr(fresh, k) for k in changed})
        mailboxes.append(mailbox)
    if [m.name for m in new.mailboxes] != [m.name for m in old.mailboxes]:
        waiting.append("mailboxes (added, removed or reordered)")
    smtp = old.smtp.model_copy(update={"tls": new.smtp.tls})
    merged = old.model_copy(update={"rules": new.rules, "mailboxes": tuple(mailboxes),
                                    "smtp": smtp})
    for key in type(old).model_fields:
        if key not in ("rules", "mailboxes") and getattr(merged, key) != getattr(new, key):
            waiting.append(key)
    return merged, pulls_changed, waiting


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
                 watch_every: float = _WATCH_EVERY,
                 pollers: Reloadable | None = None, smtp: Reloadable | None = None) -> None:
        self.settings = settings
        self._load = load
        self._targets = targets  # take new rules
        self._pollers = pollers  # take new pull settings
        self._smtp = smtp  # re-reads its certificate on every reload
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
        settings, pulls_changed, waiting = merged_settings(self.settings, new)
        if pulls_changed and self._pollers is None and pulled_mailboxes(settings):
            # No pulled mailbox was polled at start: nothing here can start polling.
            waiting.append("mailboxes (the first pulled mailbox to poll)")
        if waiting:
            log.warning("config.restart_needed", why=why, keys=waiting,
                        detail="these changed and apply only after a restart")
        if settings.rules != self.settings.rules:
            for target in self._targets:
                target.reload(settings)
        if pulls_changed and self._pollers is not None:
            self._pollers.reload(settings)
        if self._smtp is not None:
            self._smtp.reload(settings)
        self.settings = settings
        log.info("config.reloaded", why=why, rules=len(new_names),
                 added=[n for n in new_names if n not in old_names],
                 removed=[n for n in old_names if n not in new_names],
                 mailboxes_changed=pulls_changed)
        return True
