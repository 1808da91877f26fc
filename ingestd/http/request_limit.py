"""At most so many requests in progress at once; beyond that, 503 at once.

Counted per request, not per connection (uvicorn's ``limit_concurrency``
counts both): idle keep-alive or slow connections must not turn every other
caller away. Open connections have their own, larger cap (``connections``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_CONCURRENT_REQUESTS = 64


class RequestLimit:
    def __init__(self, app: ASGIApp, max_requests: int = MAX_CONCURRENT_REQUESTS) -> None:
        self._app = app
        self._max = max_requests
        self._running = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self._running >= self._max:
            await _busy(send)
            return
        # One event loop: no lock needed around the count.
        self._running += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._running -= 1


async def _busy(send: Send) -> None:
    body = b'{"detail":"too many requests at once; try again shortly"}'
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": body})
