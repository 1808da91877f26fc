"""structlog set-up: one JSON object per line when stdout is not a terminal.

Events carry ids, sizes, outcomes and timings, never message bodies.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from ingestd.config.settings import LoggingSettings


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


def configure_logging(settings: LoggingSettings, to_stderr: bool = False) -> None:
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
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # mail-parser warns on every content type it does not render; noise, not news.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
