"""A uvicorn server and a gunicorn worker that load our protocol and drain sockets gently.

uvicorn's own shutdown closes every WebSocket at once with 1012 before the app's lifespan
shutdown runs, so every client of a worker reconnects in the same instant. ``FasterServer``
first closes its WebSockets with 1001 (going away) at random moments spread over
``drain_window`` seconds (``FASTERAPI_DRAIN_WINDOW``, default 2 s), waits for them to go, and
then shuts down as uvicorn does: the app's lifespan shutdown removes the worker's presence
entries. The window is kept well inside gunicorn's ``graceful_timeout``.

    gunicorn app:app -k FasterAPI.server.worker.FasterWorker -w 4
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket
import sys
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from ..config import ServerConfig
from .protocol import FasterWebSocketProtocol

logger = logging.getLogger("fasterapi.server")

PROTOCOL = "FasterAPI.server.protocol:FasterWebSocketProtocol"


class FasterServer(Server):
    """uvicorn's Server, with a jittered 1001 drain of WebSockets before its shutdown."""

    def __init__(self, *args: Any, drain_window: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drain_window = ServerConfig.load({"drain_window": drain_window}).drain_window

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        # Everything alive now (modules, the app, the hub) lives as long as the worker: move
        # it out of the collector's reach, so full collections under load scan only what
        # connections and messages allocate, which shortens the pauses that make tail latency.
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        await self.drain()
        await super().shutdown(sockets=sockets)

    async def drain(self) -> None:
        """Close open WebSockets with 1001 over the drain window; wait for them to end."""
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


class FasterWorker(UvicornWorker):  # type: ignore[misc]
    """A gunicorn worker running :class:`FasterServer` with our WebSocket protocol."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": "auto", "ws": PROTOCOL}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = ServerConfig.load({})
        # Keep the drain and uvicorn's own wait well inside gunicorn's graceful timeout.
        graceful = float(self.cfg.graceful_timeout)
        self.drain_window = min(settings.drain_window, graceful / 3)
        self.config.timeout_graceful_shutdown = max(1.0, graceful - self.drain_window - 3.0)

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = FasterServer(config=self.config, drain_window=self.drain_window)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
