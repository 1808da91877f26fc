"""Who is calling: the agent whose live bearer token came with the request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ingestd.db.engine import read_only
from ingestd.db.errors import translated
from ingestd.http.context import ApiContext
from ingestd.services.agents import actor_for_token
from ingestd.services.inbox_items import Actor

# auto_error=False: a missing header is our 401 (with WWW-Authenticate), not FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="a token from `ingestd agents token EMAIL`")


def api_context(request: Request) -> ApiContext:
    context = request.app.state.context
    assert isinstance(context, ApiContext)
    return context


def current_actor(
    context: Annotated[ApiContext, Depends(api_context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The token's agent; 401 alike for no token, an unknown, revoked or expired one."""
    actor = None
    if credentials is not None:
        with translated("check a bearer token"), read_only(context.engine) as conn:
            actor = actor_for_token(conn, credentials.credentials)
    if actor is None:
        raise HTTPException(status_code=401, detail="a valid bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    return actor


Caller = Annotated[Actor, Depends(current_actor)]
Context = Annotated[ApiContext, Depends(api_context)]
