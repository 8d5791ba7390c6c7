"""Publish to rooms and connections from any Python process, without running the app.

For a cron job, a Celery task or a Django view::

    from FasterAPI.pubsub import Publisher

    publisher = Publisher("redis://localhost:6379/0")
    publisher.broadcast_sync("lobby", {"type": "notice", "text": "deploy at 5pm"})

    async with Publisher("redis://localhost:6379/0") as publisher:
        await publisher.broadcast("lobby", "hello")

Messages use the same envelope and channels as the app's hub, so every member of the room
on every worker receives them. The backend's prefix must match the app's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from ..config import HubConfig
from .backends import backend_from_url
from .backends.base import Backend
from .envelope import Identified, prepare
from .history import History, Position, RetentionPolicy

T = TypeVar("T")

__all__ = ["Publisher"]

#: The ``origin`` of a Publisher's envelopes (a hub's is its worker id).
PUBLISHER_ORIGIN = "publisher"


class _Deaf:
    """A publisher listens to nothing."""

    def on_message(self, channel: str, data: bytes) -> None:
        pass

    def on_connection_lost(self, error: BaseException | None) -> None:
        pass

    def on_connection_restored(self) -> None:
        pass


class Publisher:
    """Sends broadcasts and direct messages through a backend; async and sync methods.

    The async methods run on the caller's event loop. The ``*_sync`` methods run on a
    private event loop thread of the publisher's own and may be called from any thread.
    Do not mix the two on one instance.
    """

    def __init__(
        self,
        backend: str | Backend,
        *,
        history: History | None = None,
        relay_secret: str | None = None,
        **backend_options: Any,
    ) -> None:
        self.backend = backend if isinstance(backend, Backend) else backend_from_url(backend, **backend_options)
        config = HubConfig.load({"relay_secret": relay_secret})
        self.max_message_size = config.max_message_size
        #: Signs every envelope when the app has a relay secret (``relay_secret=``, else the
        #: environment's ``FASTERAPI_RELAY_SECRET``; the first of a comma-separated rotation).
        self._secret = next(iter(config.relay_secrets), b"")
        #: The app's room history settings (``history=``, else FASTERAPI_HISTORY_SIZE / _TTL):
        #: a broadcast to a room with history is stored with its position, as the app's are.
        self._retention = RetentionPolicy.from_settings(history, config.history_size, config.history_ttl)
        self._started = False
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    # -- async ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._started:
                await self.backend.start(_Deaf())
                self._started = True

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self.backend.stop()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def broadcast(self, room: str, data: Any, *, exclude: Identified | str | None = None) -> Position | None:
        """Send ``data`` to every member of ``room`` but ``exclude`` (a connection or its id).

        Returns its position in the room's history (None without history). Raises
        BackendUnavailable when the backend is down, as ``app.broadcast`` does.
        """
        channel, message = prepare(
            data, room=room, exclude=exclude, origin=PUBLISHER_ORIGIN, max_size=self.max_message_size,
            secret=self._secret,
        )  # fmt: skip
        await self.start()
        return await self.backend.publish(channel, message, self._retention(room))

    async def send_to(self, connection_id: str, data: Any) -> None:
        """Send ``data`` to one connection (a ``ws.id``) wherever it lives."""
        channel, message = prepare(
            data, target=connection_id, origin=PUBLISHER_ORIGIN, max_size=self.max_message_size,
            secret=self._secret,
        )  # fmt: skip
        await self.start()
        await self.backend.publish(channel, message)

    # -- sync ----------------------------------------------------------------------------

    def broadcast_sync(
        self, room: str, data: Any, *, exclude: Identified | str | None = None, timeout: float = 10.0
    ) -> Position | None:
        """Blocking :meth:`broadcast`, for code without an event loop."""
        return self._run(self.broadcast(room, data, exclude=exclude), timeout)

    def send_to_sync(self, connection_id: str, data: Any, *, timeout: float = 10.0) -> None:
        """Blocking :meth:`send_to`."""
        self._run(self.send_to(connection_id, data), timeout)

    def close_sync(self, timeout: float = 10.0) -> None:
        """Close the backend and stop the private loop thread."""
        with self._thread_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_sync()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        with self._thread_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="fasterapi-publisher", daemon=True)
                self._thread.start()
            loop = self._loop
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result(timeout)
