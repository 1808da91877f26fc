"""Gmail's HTTP plumbing: an httplib2 client a stop can abort, and Google's errors made ours."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from ingestd.errors import CredentialsRejected, CursorLost, SourceRefused, SourceUnavailable
from ingestd.intake.sources.retry import retry_after_seconds

# Google documents either status for its rate limits.
_RATE_LIMITED = {"rateLimitExceeded", "userRateLimitExceeded", "backendError",
                 "dailyLimitExceeded", "quotaExceeded", "limitExceeded"}
# 403 reasons only an administrator can fix: the mailbox shows needs_reauth.
_NEEDS_A_PERSON = {"insufficientPermissions", "forbidden", "domainPolicy",
                   "accessNotConfigured", "delegationDenied", "failedPrecondition",
                   "PERMISSION_DENIED"}

def abortable_http(httplib2: Any, timeout: float, aborted: threading.Event) -> Any:
    """An httplib2 client that opens no connection once aborted. httplib2 takes a dropped
    connection for a stale one and silently sends the request again: after abort() that
    second connect must fail, or a stopping daemon would wait out another timeout."""

    class Abortable(httplib2.Http):  # type: ignore[misc]
        def _conn_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
            if aborted.is_set():
                raise ConnectionAbortedError("the poll was stopped")
            connect = conn.connect

            def guarded_connect() -> Any:
                if aborted.is_set():
                    raise ConnectionAbortedError("the poll was stopped")
                return connect()

            conn.connect = guarded_connect
            return super()._conn_request(conn, *args, **kwargs)

    return Abortable(timeout=timeout)


class MessageMissing(Exception):
    """A 404 for a message: deleted since it was listed."""


def translated_call(where: str, what: str, run: Callable[[], Any], *, cursor_call: bool,
                    missing_ok: bool) -> Any:
    """Run one API call; Google's and the network's errors become ours."""
    from google.auth import exceptions as auth_errors
    from googleapiclient.errors import HttpError

    try:
        return run()
    except HttpError as exc:
        status = int(exc.resp.status)
        reason = _reason(exc)
        text = f"{where}: {what}: HTTP {status} {reason or ''}".rstrip()
        retry_after = retry_after_seconds(exc.resp.get("retry-after"))
        if status == 404 and cursor_call:
            raise CursorLost(f"{what}: the stored historyId is no longer valid") from exc
        if status == 404 and missing_ok:
            raise MessageMissing() from exc
        if status == 429 or status >= 500 or (status == 403 and reason in _RATE_LIMITED):
            raise SourceUnavailable(text, retry_after=retry_after) from exc
        if status == 401 or (status == 403 and reason in _NEEDS_A_PERSON):
            raise CredentialsRejected(text) from exc
        raise SourceRefused(text) from exc
    except auth_errors.RefreshError as exc:
        if getattr(exc, "retryable", False):
            raise SourceUnavailable(f"{where}: token refresh failed for now: {exc}") from exc
        raise CredentialsRejected(f"{where}: the grant was refused: {_short(exc)}") from exc
    except auth_errors.TransportError as exc:
        raise SourceUnavailable(f"{where}: {what}: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise SourceUnavailable(f"{where}: {what}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        # httplib2's own errors (ServerNotFoundError, RedirectLimit ...) have no common base
        # but HttpLib2Error; anything else from the client is a failure of this call.
        if type(exc).__module__.startswith("httplib2"):
            raise SourceUnavailable(f"{where}: {what}: {exc}") from exc
        raise


def _reason(exc: Any) -> str | None:
    try:
        body = json.loads(exc.content)
        errors = body.get("error", {}).get("errors") or []
        if errors and errors[0].get("reason"):
            return str(errors[0]["reason"])
        status = body.get("error", {}).get("status")
        return str(status) if status else None
    except (ValueError, AttributeError, TypeError):
        return None


def _short(exc: BaseException) -> str:
    # RefreshError's text is ('invalid_grant: Token has been expired or revoked.', {...}).
    args = getattr(exc, "args", ())
    return str(args[0] if args else exc)[:300]
