"""A TCP relay for tests, between the workers and Redis, that can black-hole traffic.

``blackhole()`` makes the path silently dead, as a broken network does: every byte, in either
direction, is read and thrown away, and no connection is closed, so neither end learns that
anything happened. New connections are accepted but never reach the upstream server.
``resume()`` heals the path: new connections are relayed again, and the connections that lost
bytes (their streams are corrupt now) are reset, as a peer that rebooted meanwhile would do.

It runs its own event loop on a background thread; the methods are called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import Self

__all__ = ["TcpProxy"]


class _Link:
    """One relayed connection: the client side and (unless accepted while black-holed) upstream."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tainted = False  # bytes were thrown away: the stream can never be resumed

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    """Relays 127.0.0.1:``port`` to ``upstream_host``:``upstream_port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self.blackholed = False
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    # -- control, from any thread ----------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._call(self._start())
        return self

    def blackhole(self) -> None:
        """Stop relaying without closing anything."""
        self._call(self._set_blackholed(True))

    def resume(self) -> None:
        """Relay again; connections that lost bytes while black-holed are reset."""
        self._call(self._set_blackholed(False))

    @property
    def connections(self) -> int:
        return len(self._links)

    def stop(self) -> None:
        """Close the listener and every connection, and stop the thread. Safe to call twice."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    # -- on the proxy's loop ---------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set_blackholed(self, value: bool) -> None:
        self.blackholed = value
        if not value:
            for link in [link for link in self._links if link.tainted]:
                link.abort()
                self._links.discard(link)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self._links.add(link)
        try:
            if self.blackholed:
                link.tainted = True
                await self._pump(reader, None, link)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            except OSError:
                return
            link.upstream = up_writer
            await asyncio.gather(self._pump(reader, up_writer, link), self._pump(up_reader, writer, link))
        finally:
            self._links.discard(link)
            link.abort()

    async def _pump(self, source: asyncio.StreamReader, target: asyncio.StreamWriter | None, link: _Link) -> None:
        try:
            while data := await source.read(65536):
                if self.blackholed or target is None:
                    link.tainted = True
                    continue
                target.write(data)
                await target.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if target is not None and not link.tainted:
                with contextlib.suppress(Exception):
                    target.write_eof()
