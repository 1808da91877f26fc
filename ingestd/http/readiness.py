"""What ``/readyz`` checks: the database answers, and the SMTP listener is up."""

from __future__ import annotations

from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingestd.db.engine import read_only
from ingestd.db.errors import translated
from ingestd.http.context import ReadinessCheck


class Listener(Protocol):
    @property
    def ready(self) -> bool: ...
    @property
    def port(self) -> int: ...


def readiness_checks(engine: Engine, smtp: Listener) -> dict[str, ReadinessCheck]:
    def database() -> tuple[bool, str]:
        with translated("readiness check"), read_only(engine) as conn:
            conn.execute(sa.text("SELECT 1"))
        return True, f"{engine.dialect.name} answers"

    def smtp_listening() -> tuple[bool, str]:
        if smtp.ready:
            return True, f"listening on port {smtp.port}"
        return False, "not listening"

    return {"database": database, "smtp": smtp_listening}
