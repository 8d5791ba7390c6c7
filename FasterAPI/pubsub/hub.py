"""The hub: rooms, local fan-out, presence bookkeeping and the relay's health.

It knows nothing of Redis: it speaks to a :class:`~FasterAPI.pubsub.backends.base.Backend`.
One hub per worker process. A broadcast is packed once by its publisher, published on the
room's channel, and every worker with local members of the room decodes it once and puts
one shared message into each member's bounded :class:`~FasterAPI.pubsub.outbox.Outbox`.

Presence entries carry a time to live (``presence_ttl``); a living worker refreshes its own
every third of it, so the entries of a worker that died without cleanup vanish within
``presence_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import HubConfig
from . import backend_from_url
from .backends.base import Backend, BackendUnavailable, describe_error, wall_clock
from .envelope import (
    KIND_PING,
    KIND_TEXT,
    VERSION,
    Envelope,
    InvalidEnvelope,
    decode,
    encode,
    pack,
    room_channel,
    validate_room,
    worker_channel,
    worker_of,
)
from .outbox import Delivery, Outbox, SinkSettings

if TYPE_CHECKING:
    from ..websockets import WebSocket

logger = logging.getLogger("fasterapi.hub")

ReconnectHook = Callable[[], Any]


@dataclass
class HubStats:
    """Counters of one worker's hub (exported by ``/metrics``)."""

    published: int = 0
    delivered: int = 0
    dropped: int = 0
    slow_consumer_closes: int = 0
    invalid_envelopes: int = 0
    listener_errors: int = 0
    backend_reconnects: int = 0
    backend_outages: int = 0


class Hub:
    """Rooms and broadcast for one worker, over any backend."""

    def __init__(self, backend: str | Backend | None = None, **options: Any) -> None:
        self.config: HubConfig = HubConfig.load({"backend": backend if isinstance(backend, str) else None, **options})
        self.backend: Backend = backend if isinstance(backend, Backend) else backend_from_url(self.config.backend)
        self._worker_id = secrets.token_hex(6)
        self._worker_pid = os.getpid()
        self.stats = HubStats()
        self._sink_settings = SinkSettings(self.config.send_queue_size, self.config.overflow, self.stats)
        #: room -> {connection id: socket}, local members only.
        self.rooms: dict[str, dict[str, WebSocket]] = {}
        #: connection id -> socket, for every local socket that has an id.
        self.connections: dict[str, WebSocket] = {}
        self.reconnect_hooks: list[ReconnectHook] = []
        self.relay_ok = False
        self.last_relay_ok: float | None = None
        self._ids = itertools.count(1)
        self._started = False
        self._start_lock = asyncio.Lock()
        self._subscription_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        self._lost_at: float | None = None

    @property
    def worker_id(self) -> str:
        """This worker's id in the cluster (and the prefix of its connection ids).

        Made anew in a forked child, so a hub created before gunicorn forks (preload_app)
        still gives every worker an id of its own.
        """
        if self._worker_pid != os.getpid():
            self._worker_id = secrets.token_hex(6)
            self._worker_pid = os.getpid()
        return self._worker_id

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the backend and start the background upkeep. Idempotent."""
        async with self._start_lock:
            if self._started:
                return
            await self.backend.start(self)
            await self.backend.subscribe(worker_channel(self.worker_id))
            self._started = True
            self._spawn(self._keep_presence(), "presence refresher")
            self._spawn(self._watch_relay(), "relay health check")
            logger.info("Hub %s (pid %d) started on %s", self.worker_id, os.getpid(), type(self.backend).__name__)

    async def stop(self) -> None:
        """Remove this worker's presence entries, stop upkeep, disconnect. Idempotent."""
        async with self._start_lock:
            if not self._started:
                return
            self._started = False
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._remove_all_presence(), timeout=2.0)
            await self.backend.stop()

    async def ensure_started(self) -> None:
        """Start on first use when the server ran no lifespan."""
        if not self._started:
            await self.start()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str, *, forever: bool = True) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"fasterapi {name}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(t, name, forever))

    def _task_done(self, task: asyncio.Task[Any], name: str, forever: bool) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None and (not forever or not self._started):
            return
        # Upkeep loops never return on their own: any end here is a bug worth shouting about.
        logger.error("Hub background task %r ended unexpectedly: %r", name, error, exc_info=error)

    # -- connections and rooms -----------------------------------------------------------

    def register(self, ws: WebSocket) -> str:
        """Give ``ws`` a cluster-unique id and a sink for broadcasts; returns the id.

        Under our server protocol the sink is the connection itself (frame-once writes to
        its transport); under any other server it is an ASGI :class:`Outbox`.
        """
        connection_id = f"{self.worker_id}.{next(self._ids)}"
        ws._id = connection_id
        direct = ws.scope.get("extensions", {}).get("fasterapi.direct")
        sink = None if direct is None else direct.direct_sink(self._sink_settings)
        if sink is None:
            sink = Outbox(ws, self._sink_settings, evict=self.discard)
        ws.outbox = sink
        self.connections[connection_id] = ws
        return connection_id

    async def join(self, ws: WebSocket, room: str) -> None:
        validate_room(room)
        await self.ensure_started()
        connection_id = ws.id
        if room in ws.rooms:
            return
        ws.rooms = (*ws.rooms, room)
        members = self.rooms.get(room)
        if members is None:
            members = self.rooms[room] = {}
            members[connection_id] = ws
            try:
                async with self._subscription_lock:
                    # Still wanted? A leave may have emptied the room while we waited.
                    if self.rooms.get(room) is members:
                        await self.backend.subscribe(room_channel(room))
            except BaseException:
                # Leave no phantom room behind a failed join.
                ws.rooms = tuple(r for r in ws.rooms if r != room)
                members.pop(connection_id, None)
                if not members and self.rooms.get(room) is members:
                    del self.rooms[room]
                raise
        else:
            members[connection_id] = ws
            # Wait for a subscription another join started, so that a broadcast sent after
            # this join returns is received.
            async with self._subscription_lock:
                pass
        await self._presence_call(self.backend.presence_add(room, [connection_id], self.config.presence_ttl))

    async def leave(self, ws: WebSocket, room: str) -> None:
        validate_room(room)
        if room not in ws.rooms:
            return
        ws.rooms = tuple(r for r in ws.rooms if r != room)
        await self._forget(ws.id, room)

    async def discard(self, ws: WebSocket) -> None:
        """The socket ended: leave every room, drop its queue. Never raises."""
        if ws.outbox is not None:
            ws.outbox.close()
        connection_id = ws._id
        if connection_id is None:
            return
        self.connections.pop(connection_id, None)
        rooms, ws.rooms = ws.rooms, ()
        for room in rooms:
            try:
                await self._forget(connection_id, room)
            except Exception:
                logger.exception("Cleanup of %s in room %r failed", connection_id, room)

    async def _forget(self, connection_id: str, room: str) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.pop(connection_id, None)
            if not members:
                del self.rooms[room]
                async with self._subscription_lock:
                    if room not in self.rooms:
                        await self.backend.unsubscribe(room_channel(room))
        await self._presence_call(self.backend.presence_remove(room, [connection_id]))

    async def _presence_call(self, call: Coroutine[Any, Any, None]) -> None:
        try:
            await call
        except BackendUnavailable:
            # The refresher re-adds entries once the backend is back.
            logger.debug("Presence update skipped: backend unavailable")

    # -- publishing ----------------------------------------------------------------------

    async def broadcast(self, room: str, data: Any, *, exclude: WebSocket | str | None = None) -> None:
        """Publish ``data`` to ``room`` on every worker. Raises BackendUnavailable when down."""
        validate_room(room)
        if exclude is None:
            exclude_id = ""
        elif isinstance(exclude, str):
            exclude_id = exclude
        else:
            exclude_id = exclude.id
        message = pack(
            data, room=room, exclude=exclude_id, origin=self.worker_id, max_size=self.config.max_message_size
        )
        await self.ensure_started()
        await self.backend.publish(room_channel(room), message)
        self.stats.published += 1

    async def send_to(self, connection_id: str, data: Any) -> None:
        """Publish ``data`` to one connection, on whichever worker holds it."""
        worker = worker_of(connection_id)
        message = pack(data, target=connection_id, origin=self.worker_id, max_size=self.config.max_message_size)
        await self.ensure_started()
        await self.backend.publish(worker_channel(worker), message)
        self.stats.published += 1

    # -- presence ------------------------------------------------------------------------

    async def room_size(self, room: str) -> int:
        validate_room(room)
        await self.ensure_started()
        return await self.backend.presence_count(room)

    async def room_members(self, room: str) -> list[str]:
        validate_room(room)
        await self.ensure_started()
        return await self.backend.presence_members(room)

    async def _keep_presence(self) -> None:
        interval = self.config.presence_ttl / 3
        while self._started:
            await asyncio.sleep(interval)
            try:
                await self._refresh_presence()
            except BackendUnavailable:
                pass
            except Exception:
                logger.exception("Presence refresh failed")

    async def _refresh_presence(self) -> None:
        ttl = self.config.presence_ttl
        for room, members in list(self.rooms.items()):
            if not members:
                continue
            try:
                await self.backend.presence_add(room, list(members), ttl)
            except BackendUnavailable:
                raise
            except Exception:
                # One bad room must not stop the refresh of the others.
                logger.exception("Presence refresh of room %r failed", room)

    async def _remove_all_presence(self) -> None:
        for room, members in list(self.rooms.items()):
            if members:
                await self.backend.presence_remove(room, list(members))

    # -- the relay's health --------------------------------------------------------------

    async def check_relay(self, timeout: float = 2.0) -> bool:
        """Publish a ping to this worker through the backend and wait for it to come back."""
        if not self._started or not self.backend.available:
            self.relay_ok = False
            return False
        nonce = secrets.token_bytes(8)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[nonce] = future
        try:
            ping = encode(Envelope(VERSION, KIND_PING, nonce, origin=self.worker_id))
            await self.backend.publish(worker_channel(self.worker_id), ping)
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that lands
            # together with the result, and stop() must always be able to end this loop.
            await asyncio.wait((future,), timeout=timeout)
            ok = future.done()
        except BackendUnavailable:
            ok = False
        finally:
            self._pings.pop(nonce, None)
        if ok:
            self.last_relay_ok = time.monotonic()
        elif self.relay_ok:
            logger.warning("Hub %s (pid %d): relay self-ping failed", self.worker_id, os.getpid())
        self.relay_ok = ok
        return ok

    async def _watch_relay(self) -> None:
        while self._started:
            await self.check_relay(timeout=self.config.health_interval)
            await asyncio.sleep(self.config.health_interval)

    # -- BackendListener -----------------------------------------------------------------

    def on_message(self, channel: str, data: bytes) -> None:
        try:
            envelope = decode(data)
        except InvalidEnvelope as error:
            self.stats.invalid_envelopes += 1
            logger.warning("Dropped a message on channel %r: %s", channel, error)
            return
        try:
            self._dispatch(envelope)
        except Exception:
            self.stats.listener_errors += 1
            logger.exception("Dispatch of a message on channel %r failed", channel)

    def _dispatch(self, envelope: Envelope) -> None:
        if envelope.kind == KIND_PING:
            future = self._pings.get(envelope.payload)
            if future is not None and not future.done():
                future.set_result(None)
            return
        delivery = Delivery(envelope.payload, envelope.kind != KIND_TEXT)
        if envelope.target:
            ws = self.connections.get(envelope.target)
            if ws is not None and ws.outbox is not None:
                ws.outbox.deliver(delivery)
            return
        members = self.rooms.get(envelope.room)
        if not members:
            return
        exclude = envelope.exclude
        for connection_id, ws in members.items():
            if connection_id != exclude:
                ws.outbox.deliver(delivery)  # type: ignore[union-attr]

    def on_connection_lost(self, error: BaseException | None) -> None:
        self.stats.backend_outages += 1
        self.relay_ok = False
        self._lost_at = time.monotonic()
        logger.warning(
            "Hub %s (pid %d) lost its backend at %s: %s",
            self.worker_id,
            os.getpid(),
            wall_clock(),
            describe_error(error),
        )

    def on_connection_restored(self) -> None:
        self.stats.backend_reconnects += 1
        outage = "" if self._lost_at is None else f" after a {time.monotonic() - self._lost_at:.2f}s outage"
        logger.warning(
            "Hub %s (pid %d) recovered its backend at %s%s; %d rooms resubscribed",
            self.worker_id,
            os.getpid(),
            wall_clock(),
            outage,
            len(self.rooms),
        )
        self._lost_at = None
        if self._started:
            self._spawn(self._after_reconnect(), "reconnect follow-up", forever=False)

    async def _after_reconnect(self) -> None:
        # The backend may have lost its data (a restarted Redis keeps nothing): re-add presence.
        with contextlib.suppress(BackendUnavailable):
            await self._refresh_presence()
        await self.check_relay()
        for hook in list(self.reconnect_hooks):
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("on_backend_reconnect hook %r failed", hook)
