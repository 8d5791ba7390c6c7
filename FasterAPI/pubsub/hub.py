"""The hub: rooms and the broadcast path (publish, receive, local fan-out).

It knows nothing of Redis, nor of the web core: it speaks to a
:class:`~FasterAPI.pubsub.backends.base.Backend` (the relay) and a
:class:`~FasterAPI.pubsub.backends.base.PresenceStore`, and to connections through the
small :class:`Member` interface. One hub per worker process. A broadcast is packed once by
its publisher (:func:`~FasterAPI.pubsub.envelope.prepare`), published on the room's channel,
and every worker with local members of the room decodes it once and hands one shared
:class:`~FasterAPI.pubsub.delivery.Delivery` to each member's sink.

The hub keeps its own record of each connection (its sink and its rooms); a connection is
known from :meth:`Hub.add` (a WebSocket's accept, or its first join) until :meth:`Hub.discard`.

Presence bookkeeping (:mod:`~FasterAPI.pubsub.room_presence`), control messages
(:mod:`~FasterAPI.pubsub.control`) and the relay's health (:mod:`~FasterAPI.pubsub.relay_health`)
are parts of the hub kept in modules of their own.
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
from typing import Any, Protocol

from ..config import HubConfig
from .backends import backend_from_url
from .backends.base import Backend, PresenceStore, describe_error, wall_clock
from .control import ControlHandler, ControlMessages
from .delivery import Delivery, Sink, SinkSettings
from .envelope import (
    ENVELOPE_OVERHEAD,
    KIND_CONTROL,
    KIND_PING,
    Envelope,
    Identified,
    decode,
    prepare,
    room_channel,
    validate_room,
    verify,
    worker_channel,
)
from .errors import BackendUnavailable, InvalidEnvelope, TooManyRooms
from .history import Gap, History, Joiner, JoinResult, Position, RetentionPolicy, delivery_of
from .recovery import Recovery
from .relay_health import RelayHealth
from .room_presence import RoomPresence, _metadata_value  # noqa: F401  (importable here, as before the split)

__all__ = ["ControlHandler", "Hub", "HubStats", "Member"]

logger = logging.getLogger("fasterapi.hub")

ReconnectHook = Callable[[], Any]
#: ``hook(room, gap)``, sync or async: messages of a room could not be recovered.
GapHook = Callable[[str, Gap], Any]


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
    history_repaired: int = 0
    history_gaps: int = 0


class Member(Protocol):
    """What the hub needs of a connection (``FasterAPI.WebSocket`` provides it)."""

    @property
    def id(self) -> str:
        """The connection id the hub issued (:meth:`Hub.new_connection_id`)."""

    def open_sink(self, settings: SinkSettings) -> Sink:
        """The sink for this connection's broadcasts, bound by ``settings``."""


class _Connection:
    """The hub's record of one local connection."""

    __slots__ = ("rooms", "sink")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        #: A tuple: most sockets are in one or two rooms, and a set costs four times the memory.
        self.rooms: tuple[str, ...] = ()


class Hub(RoomPresence, ControlMessages, RelayHealth):
    """Rooms and broadcast for one worker, over any backend.

    Presence (:class:`~FasterAPI.pubsub.room_presence.RoomPresence`), control messages
    (:class:`~FasterAPI.pubsub.control.ControlMessages`) and the relay's self-ping
    (:class:`~FasterAPI.pubsub.relay_health.RelayHealth`) live in modules of their own.
    """

    def __init__(
        self,
        backend: str | Backend | None = None,
        *,
        presence: PresenceStore | None = None,
        history: History | None = None,
        **options: Any,
    ) -> None:
        self.config: HubConfig = HubConfig.load({"backend": backend if isinstance(backend, str) else None, **options})
        self.backend: Backend = backend if isinstance(backend, Backend) else backend_from_url(self.config.backend)
        store = presence if presence is not None else self.backend.presence
        if store is None:
            raise TypeError(f"{type(self.backend).__name__} keeps no presence: pass presence= a PresenceStore")
        self.presence: PresenceStore = store
        self._retention = RetentionPolicy.from_settings(history, self.config.history_size, self.config.history_ttl)
        #: Room history settings (None: off, and everything works as plain pub/sub).
        self.history = self._retention.history
        if self.history is not None and not self.backend.keeps_history:
            raise TypeError(f"{type(self.backend).__name__} keeps no room history: history= needs another backend")
        self.gap_hooks: list[GapHook] = []
        #: Called (on the event loop, must not block) with every control message this worker
        #: receives: on a room's channel when it has local members, or addressed to a local connection.
        self.control_handlers: list[ControlHandler] = []
        #: room -> {connection id: presence metadata (JSON)}, for local members that have some.
        self._metadata: dict[str, dict[str, bytes]] = {}
        self._worker_id = secrets.token_hex(6)
        self._worker_pid = os.getpid()
        self.stats = HubStats()
        self._sink_settings = SinkSettings(
            self.config.send_queue_size, self.config.overflow, self.stats, self.discard, self.config.write_delay
        )
        #: room -> {connection id: sink}, local members only.
        self.rooms: dict[str, dict[str, Sink]] = {}
        #: connection id -> the hub's record, for every local connection it knows.
        self.connections: dict[str, _Connection] = {}
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
        self._secrets = self.config.relay_secrets
        #: The largest envelope a worker accepts: a payload at the limit plus room for the rest.
        self._max_envelope = self.config.max_message_size + ENVELOPE_OVERHEAD
        self._warned: dict[str, float] = {}
        self.recovery = Recovery(
            self.backend,
            self._retention,
            self._fan_out,
            self.rooms.get,
            self._report_gap,
            self._count_repaired,
            lambda coro, name: self._spawn(coro, name, forever=False),
        )

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

    @property
    def _signing_secret(self) -> bytes:
        return self._secrets[0] if self._secrets else b""

    def new_connection_id(self) -> str:
        """A connection id unique across every worker sharing the backend: ``"<worker>.<n>"``."""
        return f"{self.worker_id}.{next(self._ids)}"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the backend and start the background upkeep. Idempotent."""
        async with self._start_lock:
            if self._started:
                return
            await self.backend.start(self)
            await self.backend.subscribe(worker_channel(self.worker_id))
            self._started = True
            with contextlib.suppress(BackendUnavailable):  # the reconnect does it otherwise
                await self._heartbeat()
            self._spawn(self._keep_presence(), "presence heartbeat")
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

    def add(self, member: Member) -> None:
        """Know ``member`` from now on: direct sends (``send_to(member.id)``) reach it. Idempotent.

        Call it once the connection is open: its sink is opened here.
        """
        if member.id not in self.connections:
            self.connections[member.id] = _Connection(member.open_sink(self._sink_settings))

    def rooms_of(self, connection_id: str) -> tuple[str, ...]:
        """The rooms a local connection is in (empty for one the hub does not know)."""
        record = self.connections.get(connection_id)
        return () if record is None else record.rooms

    async def join(
        self, member: Member, room: str, since: Position | None = None, *, metadata: bytes | None = None
    ) -> JoinResult:
        """Put ``member`` in ``room``; returns once broadcasts to it reach the member.

        With room history and ``since`` (the last position the client saw), every message after
        it is delivered first, in order and once, if the history still holds them all
        (``recovered``); if the history cannot be read (the relay is down), this raises
        BackendUnavailable and the member is not in the room, so that a retry with the same
        ``since`` loses nothing. ``position`` is the room's top (None without history). ``metadata``
        (JSON bytes) is the member's presence metadata in the room (:meth:`presence_of`); a
        member already in the room only has its metadata replaced.
        """
        validate_room(room)
        if since is not None and not isinstance(since, Position):
            raise TypeError(f"since must be a Position, got {type(since).__name__}")
        await self.ensure_started()
        connection_id = member.id
        self.add(member)
        record = self.connections[connection_id]
        if room in record.rooms:
            if metadata is not None:
                self._metadata.setdefault(room, {})[connection_id] = metadata
                await self._presence_call(self.presence.add(room, [connection_id], {connection_id: metadata}))
            return JoinResult(False, self.recovery.position(room))
        if len(record.rooms) >= self.config.max_rooms_per_connection:
            raise TooManyRooms(
                f"Connection {connection_id} is in {len(record.rooms)} rooms, the limit "
                f"(max_rooms_per_connection); cannot join {room!r}"
            )
        retention = self._retention(room)
        sink: Sink = record.sink
        if retention is not None and since is not None:
            sink = Joiner(connection_id, sink)  # holds live messages while the history is read
        record.rooms = (*record.rooms, room)
        members = self.rooms.get(room)
        new_room = members is None
        if members is None:
            members = self.rooms[room] = {}
            if retention is not None:
                self.recovery.open(room)
        members[connection_id] = sink
        try:
            # Also waits for a subscription another join started, so that a broadcast sent
            # after this join returns is received.
            async with self._subscription_lock:
                # Still wanted? A leave may have emptied the room while we waited.
                if new_room and self.rooms.get(room) is members:
                    await self.backend.subscribe(room_channel(room))
                    if retention is not None:
                        await self.recovery.start(room, retention)
            if isinstance(sink, Joiner) and retention is not None and since is not None:
                result = await self.recovery.resume(room, retention, sink, since)
            else:
                result = JoinResult(False, self.recovery.position(room) if retention else None)
        except BaseException:
            # Leave no phantom room behind a failed join.
            record.rooms = tuple(r for r in record.rooms if r != room)
            if members.get(connection_id) is sink:
                del members[connection_id]
            if not members and self.rooms.get(room) is members:
                del self.rooms[room]
                self.recovery.close(room)
            raise
        await self._write_member(room, connection_id, metadata)
        return result

    async def leave(self, connection_id: str, room: str) -> None:
        """Take a connection out of ``room``. Leaving a room not joined is a no-op."""
        validate_room(room)
        record = self.connections.get(connection_id)
        if record is None or room not in record.rooms:
            return
        record.rooms = tuple(r for r in record.rooms if r != room)
        await self._forget(connection_id, room)

    async def discard(self, connection_id: str) -> None:
        """The connection ended: close its sink, leave every room. Never raises."""
        record = self.connections.pop(connection_id, None)
        if record is None:
            return
        record.sink.close()
        rooms, record.rooms = record.rooms, ()
        for room in rooms:
            try:
                await self._forget(connection_id, room, presence=False)
            except Exception:
                logger.exception("Cleanup of %s in room %r failed", connection_id, room)
        if rooms:
            # Every room's presence in one go (one round trip on Redis, however many rooms).
            await self._presence_call(self.presence.remove_everywhere(connection_id, rooms))

    async def _forget(self, connection_id: str, room: str, *, presence: bool = True) -> None:
        self._forget_metadata(connection_id, room)
        members = self.rooms.get(room)
        if members is not None:
            members.pop(connection_id, None)
            if not members:
                del self.rooms[room]
                self.recovery.close(room)
                async with self._subscription_lock:
                    if room not in self.rooms:
                        await self.backend.unsubscribe(room_channel(room))
        if presence:
            await self._presence_call(self.presence.remove(room, [connection_id]))

    # -- publishing ----------------------------------------------------------------------

    async def broadcast(self, room: str, data: Any, *, exclude: Identified | str | None = None) -> Position | None:
        """Publish ``data`` to ``room`` on every worker; its position in the room's history, if kept.

        Raises BackendUnavailable when the backend is down.
        """
        channel, message = prepare(
            data, room=room, exclude=exclude, origin=self.worker_id, max_size=self.config.max_message_size,
            secret=self._signing_secret,
        )  # fmt: skip
        await self.ensure_started()
        position = await self.backend.publish(channel, message, self._retention(room))
        self.stats.published += 1
        return position

    async def send_to(self, connection_id: str, data: Any) -> None:
        """Publish ``data`` to one connection, on whichever worker holds it."""
        channel, message = prepare(
            data, target=connection_id, origin=self.worker_id, max_size=self.config.max_message_size,
            secret=self._signing_secret,
        )  # fmt: skip
        await self.ensure_started()
        await self.backend.publish(channel, message)
        self.stats.published += 1

    # -- history -------------------------------------------------------------------------

    async def room_history(
        self, room: str, since: Position | None = None, limit: int = 100
    ) -> list[tuple[Position, Any]]:
        """The retained messages of ``room`` after ``since`` (else the newest ``limit``), as sent."""
        validate_room(room)
        await self.ensure_started()
        return await self.recovery.read(room, since, limit)

    def _report_gap(self, gap: Gap) -> None:
        self.stats.history_gaps += 1
        if gap.epoch_changed:
            logger.warning("Room %r lost its history (a new epoch) after offset %d here", gap.room, gap.first - 1)
        else:
            logger.warning("Room %r: offsets %d..%d were no longer in its history", gap.room, gap.first, gap.last)
        for hook in list(self.gap_hooks):
            self._spawn(self._run_hook(hook, gap.room, gap), "room gap hook", forever=False)

    def _count_repaired(self, messages: int) -> None:
        self.stats.history_repaired += messages

    async def _run_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("Hook %r failed", hook)

    # -- BackendListener -----------------------------------------------------------------

    def on_message(self, channel: str, data: bytes) -> None:
        # The relay is not trusted: anyone who can publish to it could write here. A message
        # must fit the size limit, decode, be addressed to the channel it came on, and carry
        # a valid signature when the app has a relay secret; anything else is dropped, counted.
        try:
            if len(data) > self._max_envelope:
                raise InvalidEnvelope(f"Envelope of {len(data)} bytes is over the limit ({self._max_envelope})")
            envelope = decode(data)
            self._check_route(channel, envelope)
            if self._secrets and not verify(envelope, self._secrets):
                raise InvalidEnvelope("Envelope is not signed with this app's relay secret")
        except InvalidEnvelope as error:
            self.stats.invalid_envelopes += 1
            self._warn_limited("invalid", "Dropped a message on channel %r: %s", channel, error)
            return
        try:
            self._dispatch(envelope)
        except Exception:
            self.stats.listener_errors += 1
            logger.exception("Dispatch of a message on channel %r failed", channel)

    def _check_route(self, channel: str, envelope: Envelope) -> None:
        """Raise InvalidEnvelope unless ``envelope`` belongs on ``channel``."""
        if envelope.kind == KIND_PING or envelope.target:
            expected = worker_channel(self.worker_id)
            if envelope.target and envelope.target.partition(".")[0] != self.worker_id:
                raise InvalidEnvelope(f"Direct message for {envelope.target!r} is not for this worker")
        else:
            expected = room_channel(envelope.room)
        if channel != expected:
            raise InvalidEnvelope(f"Envelope for {expected!r} arrived on {channel!r}")

    def _warn_limited(self, reason: str, message: str, *args: Any) -> None:
        """Log a warning at most once a second per ``reason``: bad input must not flood the logs."""
        now = time.monotonic()
        if now - self._warned.get(reason, -1.0) >= 1.0:
            self._warned[reason] = now
            logger.warning(message, *args)

    def _dispatch(self, envelope: Envelope) -> None:
        if envelope.kind == KIND_PING:
            self._answer_ping(envelope)
            return
        if envelope.kind == KIND_CONTROL:
            self._handle_control(envelope)
            return
        if envelope.target:
            record = self.connections.get(envelope.target)
            if record is not None:
                record.sink.deliver(delivery_of(envelope))
            return
        if envelope.offset:
            self.recovery.receive(envelope)  # kept in the room's history: in order, once
            return
        self._fan_out(envelope.room, delivery_of(envelope), envelope.exclude)

    def _fan_out(self, room: str, delivery: Delivery, exclude: str) -> None:
        """Hand one broadcast to every local member of ``room`` but ``exclude``."""
        members = self.rooms.get(room)
        if not members:
            return
        for connection_id, sink in members.items():
            if connection_id != exclude:
                sink.deliver(delivery)

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
        # The backend may have lost its data (a restarted Redis keeps nothing): write presence again.
        with contextlib.suppress(BackendUnavailable):
            await self.presence.heartbeat(self.worker_id, self.config.presence_ttl)
            await self._add_all_presence()
        # Rooms with history catch up first (what a dropped subscriber missed is replayed),
        # so the app's hooks see the rooms in order.
        await self.recovery.resync()
        await self.check_relay()
        for hook in list(self.reconnect_hooks):
            await self._run_hook(hook)
