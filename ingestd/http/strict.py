"""Unknown query parameters are an error, not silently ignored.

``GET /api/inbox?stauts=open`` would otherwise list every item, and the
caller would act on a list it did not ask for: the same reason the
configuration refuses unknown keys.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


async def reject_unknown_query(request: Request) -> None:
    # async: it does no I/O, and a sync dependency would put every route, /healthz
    # included, in the thread pool queue behind routes waiting on the database.
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    unknown = [name for name in request.query_params if name not in known]
    if unknown:
        raise RequestValidationError([
            {"type": "extra_forbidden", "loc": ("query", name),
             "msg": "Unknown query parameter", "input": request.query_params[name]}
            for name in dict.fromkeys(unknown)
        ])


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
