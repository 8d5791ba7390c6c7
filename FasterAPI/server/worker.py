"""A gunicorn worker that serves with our protocol and drains sockets gently.

``FasterWorker`` is uvicorn-worker's ``UvicornWorker`` running :class:`~.drain.FasterServer`
(WebSockets close with 1001 over a jittered window on shutdown, kept well inside gunicorn's
``graceful_timeout``) with our frame-once WebSocket protocol, our HTTP protocol (a header
deadline and header size limits, :mod:`.http`) and ``FASTERAPI_MAX_MESSAGE_SIZE`` as the
incoming message limit:

    gunicorn app:app -k FasterAPI.server.worker.FasterWorker -w 4

Both extend private internals of uvicorn, uvicorn-worker and websockets. :mod:`.compat`
checks them once, when gunicorn's master loads this class: if they differ, it logs one
warning and this worker runs exactly as ``UvicornWorker`` does (uvicorn's own protocol).
"""

from __future__ import annotations

import sys
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker

from ..config import HubConfig, ServerConfig
from . import compat
from .compat import PROTOCOL
from .drain import FasterServer

__all__ = ["PROTOCOL", "FasterServer", "FasterWorker"]


class FasterWorker(UvicornWorker):  # type: ignore[misc]
    """A gunicorn worker running :class:`FasterServer` with our WebSocket protocol."""

    # Evaluated when gunicorn's master imports the class, before it forks: one check (and at
    # most one warning) for every worker.
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "auto",
        "http": compat.http_protocol(worker=True),
        "ws": compat.ws_protocol(worker=True),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = ServerConfig.load({})
        # Keep the drain and uvicorn's own wait well inside gunicorn's graceful timeout.
        graceful = float(self.cfg.graceful_timeout)
        self.drain_window = min(settings.drain_window, graceful / 3)
        self.config.timeout_graceful_shutdown = max(1.0, graceful - self.drain_window - 3.0)
        # One limit for incoming messages and broadcasts (uvicorn's own default is 16 MiB).
        self.config.ws_max_size = HubConfig.load({}).max_message_size

    async def _serve(self) -> None:
        if not compat.frame_once(worker=True):
            await super()._serve()  # UvicornWorker as it is
            return
        self.config.app = self.wsgi
        server = FasterServer(config=self.config, drain_window=self.drain_window)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
