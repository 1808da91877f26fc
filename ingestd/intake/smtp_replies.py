"""What an SMTP session says beyond aiosmtpd's own words, and logging that never fails it."""

from __future__ import annotations

import contextlib
from typing import Any

REPLY_TOO_BIG = "552 5.3.4 Message size exceeds the fixed maximum message size"
REPLY_SHUTTING_DOWN = b"421 4.3.2 Service shutting down, please try again later\r\n"
REPLY_PREGREET = b"421 4.7.0 Talked before the greeting, closing connection\r\n"
REPLY_TIMEOUT = b"421 4.4.2 %s timeout, closing connection\r\n"
REPLY_OVER_BUDGET = (
    "452 4.3.1 Insufficient system storage for the message now, please try again later")
REPLY_TOO_MANY_ERRORS = "421 4.7.0 Too many errors in this session, closing connection"
REPLY_NUL_SENDER = "501 5.1.7 NUL is not allowed in an address"
REPLY_NUL_RECIPIENT = "501 5.1.3 NUL is not allowed in an address"
REPLY_NO_AUTH = "502 5.5.1 AUTH not available: this port takes mail from MTAs"

# aiosmtpd's own replies that lack an enhanced status code, rewritten on the way out.
REWRITES = {
    "552 Error: message size exceeds fixed maximum message size": REPLY_TOO_BIG,
    "552 Error: Too much mail data": REPLY_TOO_BIG,
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
    "454 TLS not available": "454 4.7.0 TLS not available",
}


def emit(method: Any, event: str, **fields: Any) -> None:
    """Log without ever letting a logging failure change an SMTP reply.

    After a commit, an exception here would turn 250 into an error and make
    the sender deliver the message twice.
    """
    with contextlib.suppress(Exception):
        method(event, **fields)
REPLY_TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"
