"""``/healthz`` and ``/readyz``: for load balancers, systemd helpers and people. No token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ingestd.http.auth import Context
from ingestd.http.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, Any]:
    """The process answers; async on purpose: it is served by the event loop itself."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "a check failed"}})
def readyz(context: Context) -> Any:
    """Every check (database reachable, SMTP listening) with its result."""
    checks: dict[str, dict[str, Any]] = {}
    for name, check in context.checks.items():
        try:
            ok, detail = check()
        except Exception as exc:  # a check that fails to run is a failed check
            ok, detail = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        checks[name] = {"ok": ok, "detail": detail}
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
