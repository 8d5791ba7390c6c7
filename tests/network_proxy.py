"""A TCP proxy the test controls, between a client (a browser) and a server: ``NetworkProxy``.

It runs on the test's event loop and forwards bytes both ways until told otherwise:

* ``await proxy.cut(seconds)``: every connection is reset at once, and new ones are reset
  as soon as they arrive, for ``seconds`` (a network that drops, then refuses);
* ``await proxy.blackhole(seconds)``: the sockets stay open but no byte moves, either way,
  on old or new connections, for ``seconds`` (a silent network: only timeouts notice it).
  Bytes held meanwhile are delivered afterwards, as TCP's retransmissions would.

``cut`` and ``blackhole`` return when the outage ends.

With ``line_delay``, the way to the server is a slow link: each line the client sends (up to
and including ``\n``) reaches the server ``line_delay`` seconds after the one before, in order,
so two writes the client made a moment apart arrive far apart, as on a congested network.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

__all__ = ["NetworkProxy"]

CHUNK = 64 * 1024


class NetworkProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_host``:``upstream_port``; see the module doc."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", *, line_delay: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.line_delay = line_delay
        self.port = 0
        self.connections_accepted = 0
        self.connections_reset = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusing = False
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        self._reset_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- outages ---------------------------------------------------------------------------

    async def cut(self, seconds: float) -> None:
        """Reset every connection, and each new one, for ``seconds``."""
        self._refusing = True
        self._reset_all()
        try:
            await asyncio.sleep(seconds)  # the outage's length is the point, not a wait for an event
        finally:
            self._refusing = False

    async def blackhole(self, seconds: float) -> None:
        """Keep every socket open but move no byte, for ``seconds``."""
        self._flowing.clear()
        try:
            await asyncio.sleep(seconds)
        finally:
            self._flowing.set()

    # -- forwarding ------------------------------------------------------------------------

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, not a polite close: the network went away
            self.connections_reset += 1
        self._writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        if self._refusing:
            client_writer.transport.abort()
            self.connections_reset += 1
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        pair = {client_writer, upstream_writer}
        self._writers |= pair
        tasks = [
            asyncio.ensure_future(self._pump(client_reader, upstream_writer, self.line_delay)),
            asyncio.ensure_future(self._pump(upstream_reader, client_writer)),
        ]
        self._tasks.update(tasks)
        try:
            # When one direction ends (EOF or a reset), the connection ends both ways.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
            for writer in pair:
                writer.transport.abort()
            self._writers -= pair

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line_delay: float = 0.0) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    return
                for piece in data.splitlines(keepends=True) if line_delay else (data,):
                    if line_delay:
                        await asyncio.sleep(line_delay)  # the link's time to carry one line
                    # Read while flowing, then blackholed: the chunk waits with the rest.
                    await self._flowing.wait()
                    writer.write(piece)
                    await writer.drain()
