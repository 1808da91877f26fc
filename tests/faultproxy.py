"""A TCP proxy on 127.0.0.1 that breaks the network between a client and a server on demand.

It forwards bytes unchanged and knows nothing about the protocol: tests cut a connection after
so many bytes from the server, stall all traffic, or reset every connection, to see a client
cope with a server that goes away mid-response. It runs its own event loop in a thread, so sync
and async tests drive it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
_CHUNK = 65536


@dataclass
class _Cut:
    """Reset the connection that carries the ``budget``-th server byte after ``marker``."""

    budget: int
    marker: bytes | None
    tail: bytes = b""  # the last bytes seen, for a marker split across two reads


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port``, with faults on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.accepted = 0  # connections taken from clients, in total
        self.cuts = 0  # connections ended by cut_after()
        self._links: set[_Link] = set()
        self._cut: _Cut | None = None
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy",
                                        daemon=True)
        self._thread.start()
        self._server = self._call(self._listen())
        self.port: int = self._server.sockets[0].getsockname()[1]

    # -- faults --------------------------------------------------------------------------------

    def cut_after(self, n_bytes: int, *, after: bytes | None = None) -> None:
        """Forward ``n_bytes`` more server→client bytes, then reset that connection both ways.

        With ``after``, counting starts behind the next occurrence of those bytes in what the
        server sends (e.g. ``b"FETCH ("`` to break a message literal half-way). One-shot:
        traffic after the cut flows normally, new connections included.
        """
        if n_bytes < 0:
            raise ValueError("n_bytes must be >= 0")
        self._call(self._arm(_Cut(n_bytes, after)))

    def stall(self) -> None:
        """Stop forwarding in both directions; bytes wait in the proxy until ``resume()``."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    def drop_all(self) -> None:
        """Reset every open connection, both sides; the proxy keeps accepting new ones."""
        self._call(self._drop_all())

    @property
    def open_connections(self) -> int:
        return self._call(self._count())

    def close(self) -> None:
        if not self._loop.is_running():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop side -------------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _arm(self, cut: _Cut) -> None:
        self._cut = cut

    async def _set_flowing(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _count(self) -> int:
        return len(self._links)

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            _reset(client_writer)
            return
        link = _Link(client_writer, server_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, client_reader, server_writer, to_client=False)),
            asyncio.create_task(self._pump(link, server_reader, client_writer, to_client=True)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        to_client: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                # A read already under way when stall() came in holds its bytes back here.
                await self._flowing.wait()
                if to_client and self._cut is not None:
                    keep = self._take_cut(data)
                    if keep is not None:
                        writer.write(data[:keep])
                        await writer.drain()
                        await _flushed(writer)
                        self.cuts += 1
                        self._reset_link(link)
                        return
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        # One side finished or failed: the other must not hang on a half-open connection.
        self._close_link(link)

    def _take_cut(self, data: bytes) -> int | None:
        """How many bytes of ``data`` to forward before the armed cut fires, or None."""
        cut = self._cut
        assert cut is not None
        start = 0
        if cut.marker is not None:
            seen = cut.tail + data
            found = seen.find(cut.marker)
            if found < 0:
                cut.tail = seen[-(len(cut.marker) - 1):] if len(cut.marker) > 1 else b""
                return None
            start = found + len(cut.marker) - len(cut.tail)
            cut.marker = None
        if len(data) - start < cut.budget:
            cut.budget -= len(data) - start
            return None
        self._cut = None
        return start + cut.budget

    def _reset_link(self, link: _Link) -> None:
        _reset(link.client)
        _reset(link.server)
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    def _close_link(self, link: _Link) -> None:
        for writer in (link.client, link.server):
            writer.close()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _drop_all(self) -> None:
        for link in list(self._links):
            self._reset_link(link)

    async def _shutdown(self) -> None:
        self._server.close()
        await self._drop_all()
        await self._server.wait_closed()
        tasks = [task for link in self._links for task in link.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN, as a crashed host or a dropped route would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _flushed(writer: asyncio.StreamWriter) -> None:
    """Wait until the kernel has handed the bytes on: an RST throws away whatever it still holds.

    Bounded, because a client that has stopped reading would otherwise keep the cut waiting.
    """
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    for _ in range(500):
        try:
            pending = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))
        except OSError:
            return
        if pending[0] == 0:
            return
        await asyncio.sleep(0.002)
