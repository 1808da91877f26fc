"""The FastAPI application: routes, and ingestd's errors as HTTP statuses."""

from __future__ import annotations

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from ingestd import __version__
from ingestd.errors import (
    AlreadyActed,
    Forbidden,
    IngestdError,
    InvalidRequest,
    NotFound,
    RawPurged,
    first_line,
)
from ingestd.http import health_routes, inbox_routes
from ingestd.http.body_limit import BodyLimit
from ingestd.http.context import ApiContext
from ingestd.http.request_limit import RequestLimit
from ingestd.http.strict import reject_unknown_query

log = structlog.get_logger("ingestd.http")


def create_app(context: ApiContext, *, health: bool = True, api: bool = True) -> FastAPI:
    """The application: the health routes (/healthz, /readyz, /metrics), the API, or both."""
    app = FastAPI(title="ingestd", version=__version__,
                  description="My Inbox for agents; health and readiness for operators.",
                  dependencies=[Depends(reject_unknown_query)])
    app.state.context = context
    if health:
        app.include_router(health_routes.router)
    if api:
        app.include_router(inbox_routes.router)
    app.add_exception_handler(IngestdError, _ingestd_error)
    app.add_middleware(BodyLimit)
    # Added last, so outermost: a refused request costs nothing further.
    app.add_middleware(RequestLimit)
    return app


async def _ingestd_error(request: Request, exc: Exception) -> JSONResponse:
    """The one place our error tree becomes HTTP: most specific class first."""
    assert isinstance(exc, IngestdError)
    if isinstance(exc, AlreadyActed):
        return JSONResponse({"detail": str(exc), "current": exc.current}, status_code=409)
    if isinstance(exc, NotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)
    if isinstance(exc, RawPurged):
        return JSONResponse({"detail": str(exc)}, status_code=410)
    if isinstance(exc, Forbidden):
        return JSONResponse({"detail": str(exc)}, status_code=403)
    if isinstance(exc, InvalidRequest):
        return JSONResponse({"detail": str(exc)}, status_code=400)
    log.warning("api.request_failed", path=request.url.path, error=type(exc).__name__,
                temporary=exc.temporary, detail=first_line(exc)[:300])
    if exc.temporary:
        return JSONResponse({"detail": "the database is unavailable; try again shortly"},
                            status_code=503, headers={"Retry-After": "5"})
    # A stored value the database refuses, a message over a limit: our data, not the caller's.
    return JSONResponse({"detail": f"cannot be done: {first_line(exc)[:300]}"},
                        status_code=400)
