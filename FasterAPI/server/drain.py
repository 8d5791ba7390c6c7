"""``FasterServer``: uvicorn's server, draining WebSockets gently before it shuts down.

It also stops accepting short of its open-files limit (:mod:`.admission`).

uvicorn's own shutdown closes every WebSocket at once with 1012 before the app's lifespan
shutdown runs, so every client of a worker reconnects in the same instant. ``FasterServer``
first closes its WebSockets with 1001 (going away) at random moments spread over
``drain_window`` seconds (``FASTERAPI_DRAIN_WINDOW``, default 2 s), waits for them to go, and
then shuts down as uvicorn does: the app's lifespan shutdown removes the worker's presence
entries. ``fasterapi run`` serves one process with it; :mod:`.worker` runs it under gunicorn.

Only uvicorn is needed here (not gunicorn), so a plain ``pip install fasterapi-hub`` can
``fasterapi run`` an app.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket
from typing import Any

from uvicorn.server import Server

from ..config import ServerConfig
from . import compat
from .admission import Admission, AdmittedConnections, connection_limit
from .files import open_file_limit, open_files

#: uvicorn's logger for the server's life: uvicorn and our gunicorn worker show its INFO lines.
logger = logging.getLogger("uvicorn.error")


class FasterServer(Server):
    """uvicorn's Server, with a jittered 1001 drain of WebSockets before its shutdown, that
    stops accepting short of its open-files limit."""

    def __init__(self, *args: Any, drain_window: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drain_window = ServerConfig.load({"drain_window": drain_window}).drain_window
        self.connections = self.server_state.connections = AdmittedConnections()
        self.admission: Admission | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        file_limit = open_file_limit()
        if file_limit is not None:
            limit = connection_limit(file_limit, open_files())
            self.admission = self.connections.admission = Admission(limit, self.servers, self._listen)
            self.admission.counted(len(self.connections))
            logger.info("Accepting at most %d connections (open-files limit %d)", limit, file_limit)
        # Everything alive now (modules, the app, the hub) lives as long as the worker: move
        # it out of the collector's reach, so full collections under load scan only what
        # connections and messages allocate, which shortens the pauses that make tail latency.
        gc.collect()
        gc.freeze()

    async def _listen(self, sock: socket.socket) -> asyncio.AbstractServer:
        """Serve ``sock`` as uvicorn's startup does: its HTTP protocol, then an upgrade."""
        config = self.config

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=_loop
            )
            return protocol

        loop = asyncio.get_running_loop()
        return await loop.create_server(create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.admission is not None:
            self.admission.close()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        await self.drain()
        await super().shutdown(sockets=sockets)

    async def drain(self) -> None:
        """Close open WebSockets with 1001 over the drain window; wait for them to end."""
        if not compat.frame_once():
            return  # uvicorn's own protocol: it closes its sockets itself (1012)
        from .protocol import FasterWebSocketProtocol

        connections = [
            c for c in self.server_state.connections if isinstance(c, FasterWebSocketProtocol) and not c.close_sent
        ]
        if not connections or self.force_exit:
            return
        window = self.drain_window
        logger.info("Draining %d WebSocket(s) over %.1fs", len(connections), window)
        loop = asyncio.get_running_loop()
        handles = [loop.call_later(random.uniform(0, window), c.go_away) for c in connections]
        # Clients answer a close at once; allow a little beyond the window, then move on.
        deadline = loop.time() + window + 2.0
        try:
            while loop.time() < deadline and not self.force_exit:
                if not any(c in self.server_state.connections for c in connections):
                    break
                await asyncio.sleep(0.05)
        finally:
            for handle in handles:
                handle.cancel()
