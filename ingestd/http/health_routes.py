"""``/healthz`` and ``/readyz``: for load balancers, systemd helpers and people. No token."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ingestd.errors import first_line
from ingestd.http.auth import Context
from ingestd.http.schemas import Health, Readiness

log = structlog.get_logger("ingestd.http")
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, Any]:
    """The process answers; async on purpose: it is served by the event loop itself."""
    return {"status": "ok"}


@router.get("/metrics", response_class=Response, responses={
    200: {"description": "Prometheus text format",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    404: {"description": "metrics are off in this process"}})
def metrics(context: Context) -> Response:
    """Prometheus metrics (no token): counters, processing figures, the database's state."""
    if context.metrics is None:
        return Response(status_code=404)
    from ingestd.metrics.exposition import CONTENT_TYPE

    return Response(context.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "a check failed"}})
def readyz(context: Context) -> Any:
    """Every check (database reachable, SMTP listening) with its result."""
    checks: dict[str, dict[str, Any]] = {}
    for name, check in context.checks.items():
        try:
            ok, detail = check()
        except Exception as exc:  # a check that fails to run is a failed check
            # The driver's text names hosts, ports and databases: the log gets it,
            # callers without a token get only the kind of failure.
            log.warning("http.readiness_failed", check=name, error=type(exc).__name__,
                        detail=first_line(exc)[:300])
            ok, detail = False, f"failed: {type(exc).__name__}"
        checks[name] = {"ok": ok, "detail": detail}
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
