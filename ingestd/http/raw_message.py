"""Stored messages as download: a few at a time, sent in slices.

A stored message may be tens of megabytes. Sent as one body, uvicorn and
h11 would each make a full copy on top of the one read from the database;
sent in slices, only the slice being written is copied, and the transport's
flow control holds each slice back until the client has read the last. And
however many callers ask at once, at most ``MAX_RAW_DOWNLOADS`` messages
are held in memory: the rest get 503 and try again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

MAX_RAW_DOWNLOADS = 4
_SLICE_BYTES = 256 * 1024

# One per process: the bound is on this process's memory, whichever app serves it.
RAW_DOWNLOADS = threading.BoundedSemaphore(MAX_RAW_DOWNLOADS)


class RawMessage(Response):
    """``message/rfc822`` with a Content-Length, sent in slices; ``on_sent`` runs at the end."""

    media_type = "message/rfc822"

    def __init__(self, content: bytes, on_sent: Callable[[], None]) -> None:
        super().__init__(content, media_type=self.media_type)
        self._on_sent = on_sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            body = self.body
            for start in range(0, len(body), _SLICE_BYTES):
                # Once the client is gone uvicorn's send returns at once: the loop just ends.
                await send({"type": "http.response.body",
                            "body": body[start:start + _SLICE_BYTES], "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self._on_sent()
