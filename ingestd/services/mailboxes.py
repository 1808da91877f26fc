"""The operator's view of the configured mailboxes: how each pulled one is doing.

``status`` is ``disabled`` when the configuration turns polling off,
``pending`` before the first poll, else what the last poll recorded: ``ok``,
``error`` (temporary trouble; polls go on) or ``needs_reauth`` (a person
must renew the credential; polls go on and recover by themselves).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ingestd.config.settings import IngestdSettings, Mailbox
from ingestd.db.tables import MAILBOX_CHECKPOINTS, MAILBOX_STATES
from ingestd.queue import database_now

S = MAILBOX_STATES.c
C = MAILBOX_CHECKPOINTS.c


def mailbox_records(conn: sa.Connection, settings: IngestdSettings, now: datetime
                    ) -> list[dict[str, Any]]:
    """One record per configured mailbox, in configuration order."""
    now = database_now(conn, now)
    states = {row.mailbox: row for row in conn.execute(sa.select(MAILBOX_STATES))}
    checks: dict[str, list[datetime]] = {}
    for mailbox, folder, checked_at in conn.execute(sa.select(C.mailbox, C.folder, C.checked_at)):
        configured = settings.mailbox(mailbox)
        # A folder no longer configured keeps its row; its age says nothing now.
        if configured is not None and folder in configured.pull_folders:
            checks.setdefault(mailbox, []).append(checked_at)
    return [_record(m, states.get(m.name), min(checks[m.name]) if m.name in checks else None,
                    now) for m in settings.mailboxes]


def _record(mailbox: Mailbox, state: Any, checked_at: datetime | None, now: datetime
            ) -> dict[str, Any]:
    status = "ok" if not mailbox.pulled else (state.status if state is not None else "pending")
    if mailbox.pulled and not mailbox.enabled:
        status = "disabled"
    held = (state is not None and state.held_by is not None and state.held_until is not None
            and _aware(state.held_until, now) >= now)
    return {
        "name": mailbox.name,
        "source": mailbox.source,
        "status": status,
        "last_success_at": _iso(state.last_success_at if state is not None else None),
        "last_error": state.last_error if state is not None else None,
        "imported": int(state.imported) if state is not None else 0,
        "cursor_age_s": (round((now - _aware(checked_at, now)).total_seconds(), 1)
                         if checked_at is not None else None),
        "held_by": state.held_by if held else None,
        # Graph mailboxes with secret_expires: the operator's warning ahead of the outage.
        "secret_expires_in_days": (mailbox.graph.secret_days_left(now.date())
                                   if mailbox.graph is not None else None),
    }


def _aware(moment: datetime, like: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were stored in UTC.
    if moment.tzinfo is None and like.tzinfo is not None:
        return moment.replace(tzinfo=like.tzinfo)
    return moment


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
