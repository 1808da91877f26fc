"""structlog set-up: one JSON object per line when stdout is not a terminal.

Events carry ids, sizes, outcomes and timings, never message bodies.

Short-lived commands (``ingest``, run by an MTA once per message) configure
logging *deferred* and log through ``get_logger``: structlog, and what it
imports, is loaded only when an event at the configured level is emitted.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ingestd.config.settings import LoggingSettings

if TYPE_CHECKING:
    import structlog

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "exception": 40}
# Set by configure_logging(deferred=True) until the first event needs structlog.
_deferred: tuple[LoggingSettings, bool] | None = None


class _StandardStreamLogger:
    """Writes each event line to sys.stdout or sys.stderr as they are *now*.

    Looking the stream up per write keeps redirections working, and a closed
    or broken stream loses the log line instead of failing the SMTP
    transaction or the commit that logged it.
    """

    def __init__(self, stream_name: str) -> None:
        self._stream_name = stream_name

    def msg(self, message: str) -> None:
        try:
            stream: TextIO = getattr(sys, self._stream_name)
            stream.write(message + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def configure_logging(settings: LoggingSettings, to_stderr: bool = False,
                      deferred: bool = False) -> None:
    """Set up structlog now, or (``deferred``) when the first event is emitted."""
    global _deferred
    if deferred:
        _deferred = (settings, to_stderr)
        return
    _deferred = None
    import structlog

    stream_name = "stderr" if to_stderr else "stdout"
    stream = getattr(sys, stream_name)
    use_json = settings.format == "json" or (
        settings.format == "auto" and not stream.isatty()
    )
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, settings.level.upper())
        ),
        logger_factory=lambda *_: _StandardStreamLogger(stream_name),
        cache_logger_on_first_use=False,
    )
    # Library loggers (aiosmtpd, alembic) go to stderr at warning and above only.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # aiosmtpd warns once per unknown command: a flood of them would flood the
    # log; our smtp.session_errors event sums a session's errors up instead.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # mail-parser warns on every content type it does not render; noise, not news.
    logging.getLogger("mailparser").setLevel(logging.ERROR)


class LazyLogger:
    """A logger that loads structlog only for an event that will be written."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._real: Any = None

    def _emit(self, level: str, event: str, **fields: Any) -> None:
        if _deferred is not None and _LEVELS[level] < _LEVELS[_deferred[0].level]:
            return
        if self._real is None:
            import structlog

            if _deferred is not None:
                configure_logging(*_deferred)
            self._real = structlog.get_logger(self._name)
        getattr(self._real, level)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, **fields)


def get_logger(name: str) -> LazyLogger:
    return LazyLogger(name)
