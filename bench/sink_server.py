"""The do-nothing SMTP servers the benchmarks compare ingestd with.

Run as ``python bench/sink_server.py PORT [aiosmtpd|reader]`` in its own
process: ``aiosmtpd`` (the default) is stock aiosmtpd, importing nothing else,
so its peak RSS is that of aiosmtpd and Python; ``reader`` is ingestd's SMTP
class (its own DATA reader) with the same do-nothing handler, to show what the
reader alone costs.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"


class SinkHandler:
    """Accepts every message at once and keeps nothing: the cost of aiosmtpd alone."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


async def serve(port: int, kind: str = "aiosmtpd") -> None:
    """Serve on ``HOST:port`` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    # The SMTP options of ingestd's server that change the work per message
    # (raw bytes kept, SMTPUTF8, the same size limit), so only the handler differs.
    def factory() -> SMTP:
        return SMTP(SinkHandler(), hostname="sink.localhost", decode_data=False,
                    enable_SMTPUTF8=True, data_size_limit=26_214_400, loop=loop)

    if kind == "reader":
        from ingestd.intake.connection_limits import ConnectionLimits
        from ingestd.intake.smtp_session import IngestSMTP, Sessions

        limits, sessions = ConnectionLimits(10_000, 10_000), Sessions()

        def factory() -> SMTP:
            return IngestSMTP(SinkHandler(), max_message_size=26_214_400, limits=limits,
                              sessions=sessions, hostname="sink.localhost",
                              decode_data=False, enable_SMTPUTF8=True, loop=loop)

    server = await loop.create_server(factory, host=HOST, port=port)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "aiosmtpd"))
