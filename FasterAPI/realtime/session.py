"""One realtime connection: its frames in, its replies out, its rooms.

A :class:`Session` is the hub's member for the connection. Its sink (:class:`RealtimeSink`)
wraps the connection's real sink (the server's frame-once sink, or the ASGI outbox): room
broadcasts go through as the worker's one shared ``message`` frame of each broadcast, and only
for rooms the connection is in right now, so a revoked room stops at once; the session's own
replies go through the same real sink, so the client sees everything in one order.

Requests are served one at a time, in the order they came.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ..exceptions import HTTPException, WebSocketDisconnect, WebSocketRequestValidationError
from ..pubsub.delivery import Delivery, Sink, SinkSettings, Transform
from ..pubsub.errors import BackendUnavailable, PayloadTooLarge, TooManyRooms
from ..pubsub.history import Position
from ..status import WS_1008_POLICY_VIOLATION
from ..websockets import WebSocket
from . import frames
from .errors import Refused
from .frames import BadFrame, ErrorCode, Join, Leave, Ping, Publish
from .rooms import InvalidPayload, RoomHandler

if TYPE_CHECKING:
    from .endpoint import Realtime

__all__ = ["RealtimeSink", "Session"]

logger = logging.getLogger("fasterapi.realtime")

_encode = msgspec.json.Encoder().encode

#: Bad frames a client may send within ``BAD_FRAME_WINDOW`` seconds; one more closes it with 1008.
BAD_FRAME_LIMIT = 20
BAD_FRAME_WINDOW = 10.0
#: The close code of a link from which nothing arrived for two ping intervals.
PING_TIMEOUT_CLOSE = 4000


class RealtimeSink(Sink):
    """A realtime connection's sink in the hub (see the module docstring)."""

    __slots__ = ("inner", "rooms", "wrap")

    def __init__(self, inner: Sink, wrap: Transform = frames.wrap_message) -> None:
        self.inner = inner
        #: The protocol form's transform (the same function for every connection of that form).
        self.wrap = wrap
        #: The rooms whose broadcasts pass: joined, and not revoked.
        self.rooms: set[str] = set()

    def deliver(self, delivery: Delivery) -> None:
        # A direct send (send_to) has no room: it passes as a message of room "".
        room = delivery.room
        if room in self.rooms or not room:
            self.inner.deliver(delivery.derived(self.wrap))

    def close(self) -> None:
        self.inner.close()

    @property
    def pending(self) -> int:
        return self.inner.pending

    @property
    def label(self) -> str:
        return self.inner.label

    def drop_oldest(self) -> None:
        self.inner.drop_oldest()

    def close_for_overflow(self) -> None:
        self.inner.close_for_overflow()


class SessionState(enum.Enum):
    """Where a session stands: frames go out only while OPEN."""

    OPENING = "opening"  #: before the accept
    OPEN = "open"  #: serving frames
    CLOSING = "closing"  #: the server is closing it (ping timeout, bad input); nothing more goes out
    CLOSED = "closed"  #: out of every room, forgotten by the hub


class Session:
    """One realtime connection (see the module docstring)."""

    def __init__(self, endpoint: Realtime, ws: WebSocket) -> None:
        self.endpoint = endpoint
        self.ws = ws
        self.hub = endpoint.app.hub
        self.sink: RealtimeSink | None = None
        #: The protocol form this connection speaks (chosen from its subprotocols at accept).
        self.codec = frames.JSON
        self.state = SessionState.OPENING
        #: When the last frame arrived (time.monotonic()).
        self.last_seen = time.monotonic()
        #: A request is being served (frames are not read meanwhile).
        self.serving = False
        self._bad: collections.deque[float] = collections.deque()
        #: room -> the presence metadata (JSON) its guard gave this connection.
        self.metadata: dict[str, bytes] = {}
        #: Rooms declared with ``presence=False``: no diffs, no member list in ``joined``.
        self.quiet: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None

    # -- the hub's Member -------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.ws.id

    def open_sink(self, settings: SinkSettings) -> Sink:
        self.sink = RealtimeSink(self.ws.open_sink(settings), self.codec.wrap)
        return self.sink

    # -- sending ----------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Queue one of this session's own frames (built as JSON), in order with its broadcasts."""
        if self.sink is not None and self.state is SessionState.OPEN:
            self.sink.inner.deliver(self.codec.delivery(frame))

    def deliver(self, shared: frames.SharedFrame) -> None:
        """Queue a frame shared by several sessions (a presence diff, a ping, a reset)."""
        if self.sink is not None and self.state is SessionState.OPEN:
            self.sink.inner.deliver(shared.delivery(self.codec))

    # -- the connection's life --------------------------------------------------------------

    async def run(self) -> None:
        """Accept, greet, serve frames until the client goes; then leave every room."""
        ws = self.ws
        offered = ws.scope.get("subprotocols") or ()
        await ws.receive()  # websocket.connect
        # Accepted here rather than with ws.accept(): the hub must know this session (whose
        # sink frames broadcasts), not the bare socket.
        self.codec, subprotocol = frames.choose_codec(offered)
        await ws.send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": []})
        self.hub.add(self)
        self.state = SessionState.OPEN
        self.endpoint.attach(self)
        try:
            self.send(frames.welcome(self.id, self.endpoint.ping_interval))
            while self.state is SessionState.OPEN:
                message = await ws.receive()
                if message["type"] != "websocket.receive":
                    break
                self.last_seen = time.monotonic()
                self.serving = True
                try:
                    await self._serve(message)
                finally:
                    self.serving = False
                self.last_seen = time.monotonic()
        except WebSocketDisconnect:
            pass
        finally:
            if self._closing is not None:
                # Closed by the server: its close (code and reason) goes out before the app's own.
                await self._closing
            await self.end()

    async def end(self) -> None:
        """Leave every room (telling the others) and forget the connection. Idempotent."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self.endpoint.detach(self)
        rooms = list(self.metadata)
        if self.sink is not None:
            self.sink.rooms.clear()
        self.metadata.clear()
        await self.hub.discard(self.id)
        for room in rooms:
            await self._announce(room, leaves=[self.id])
        self.quiet.clear()

    def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` and end the session now (not when the peer answers)."""
        if self.state is not SessionState.OPEN:
            return
        self.state = SessionState.CLOSING
        if self.sink is not None:
            self.sink.rooms.clear()
        self._closing = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await self.ws.close(code, reason)
        await self.end()

    def timed_out(self, now: float) -> bool:
        """Nothing came for two ping intervals (time in a slow guard is not the client's silence:
        frames are not read meanwhile)."""
        return not self.serving and now - self.last_seen > 2 * self.endpoint.ping_interval

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- requests ---------------------------------------------------------------------------

    async def _serve(self, message: Mapping[str, Any]) -> None:
        codec = self.codec
        raw = message.get("bytes") if codec.binary else message.get("text")
        if raw is None:
            kind = "Text" if codec.binary else "Binary"
            self._bad_frame(None, ErrorCode.BAD_FRAME, f"{kind} frames are not read in {codec.subprotocol}")
            return
        limit = self.hub.config.max_message_size
        # A str of n characters is at most 4n bytes of UTF-8: encode only when that could matter.
        size = len(raw) if codec.binary or len(raw) * 4 <= limit else len(raw.encode("utf-8", "surrogatepass"))
        if size > limit:
            self._bad_frame(None, ErrorCode.TOO_LARGE, f"Frame over max_message_size ({limit} bytes)")
            return
        try:
            request = codec.read(raw)
        except BadFrame as problem:
            self._bad_frame(problem.request_id, problem.code, problem.reason)
            return
        if isinstance(request, Join):
            await self._join(request)
        elif isinstance(request, Leave):
            await self._leave(request)
        elif isinstance(request, Publish):
            await self._publish(request)
        elif isinstance(request, Ping):
            self.send(frames.PONG)
        # Pong: its arrival is all that counts.

    def _count_bad(self) -> None:
        """A bad frame: past the limit the connection is closed with 1008."""
        now = time.monotonic()
        bad = self._bad
        bad.append(now)
        while bad and bad[0] < now - BAD_FRAME_WINDOW:
            bad.popleft()
        if len(bad) > BAD_FRAME_LIMIT:
            logger.info("Realtime connection %s sent too many bad frames; closing it", self.id)
            self.close(WS_1008_POLICY_VIOLATION, "too many bad frames")

    def _bad_frame(self, request_id: int | None, code: ErrorCode, reason: str) -> None:
        self.send(frames.error(request_id, code, reason))
        self._count_bad()

    def _deny(self, request: Join, code: str, reason: str, *, bad: bool = False) -> None:
        self.send(frames.denied(request.id, request.room, code, reason))
        if bad:
            self._count_bad()

    async def _join(self, request: Join) -> None:
        room = request.room
        found = self.endpoint.guards.find(room)
        if found is None:
            self._deny(request, ErrorCode.UNKNOWN_ROOM, f"No declared room matches {room!r}", bad=True)
            return
        handler, params = found
        try:
            payload = handler.convert(request.payload)
        except InvalidPayload as problem:
            self._deny(request, ErrorCode.INVALID_PAYLOAD, str(problem), bad=True)
            return
        was_member = room in self.metadata
        admitted = await self._call(handler, params, payload)
        if isinstance(admitted, _Refusal):
            if was_member:
                await self._drop(room)  # a guard that no longer admits it revokes the membership
            self._deny(request, admitted.code, admitted.reason)
            return
        try:
            metadata = _encode(admitted)
        except (TypeError, msgspec.EncodeError) as problem:
            logger.error("The guard of room %r returned metadata that is not JSON: %s", room, problem)
            self._deny(request, ErrorCode.INTERNAL_ERROR, "The room's guard failed")
            return
        if not was_member and len(self.metadata) >= self.hub.config.max_rooms_per_connection:
            self._deny(request, ErrorCode.TOO_MANY_ROOMS, "This connection is in as many rooms as allowed", bad=True)
            return
        since = None if request.since is None else Position(request.since.offset, request.since.epoch)
        assert self.sink is not None
        self.sink.rooms.add(room)  # before the join: what it replays must pass
        try:
            outcome = await self.hub.join(self, room, since, metadata=metadata)
        except TooManyRooms as problem:
            self.sink.rooms.discard(room)
            self._deny(request, ErrorCode.TOO_MANY_ROOMS, str(problem), bad=True)
            return
        except BackendUnavailable:
            if not was_member:
                self.sink.rooms.discard(room)
            self._deny(request, ErrorCode.UNAVAILABLE, "The relay is unavailable; try again")
            return
        if self.state is not SessionState.OPEN:
            return
        previous = self.metadata.get(room)
        self.metadata[room] = metadata
        self.endpoint.index(room, self)
        if since is not None and not was_member and not outcome.recovered:
            self.send(frames.reset(room))
        presence: dict[str, Any] = {}
        if handler.presence:
            self.quiet.discard(room)
            presence = await self.endpoint.presence_of(room)
            presence[self.id] = msgspec.json.decode(metadata)
        else:
            self.quiet.add(room)
        self.send(frames.joined(request.id, room, was_member or outcome.recovered, outcome.position, presence))
        if previous != metadata:
            await self._announce(room, joins={self.id: metadata})

    async def _leave(self, request: Leave) -> None:
        if request.room in self.metadata:
            await self._drop(request.room)
        self.send(frames.left(request.id, request.room))

    async def _drop(self, room: str) -> None:
        """Out of ``room``: no broadcast of it passes from now on; the others are told."""
        if self.sink is not None:
            self.sink.rooms.discard(room)
        if self.metadata.pop(room, None) is None:
            return
        self.endpoint.unindex(room, self)
        with contextlib.suppress(BackendUnavailable):
            await self.hub.leave(self.id, room)
        await self._announce(room, leaves=[self.id])
        self.quiet.discard(room)

    async def _announce(
        self, room: str, *, joins: dict[str, bytes] | None = None, leaves: list[str] | None = None
    ) -> None:
        if room not in self.quiet:
            await self.endpoint.announce(room, joins=joins, leaves=leaves, exclude=self.id)

    def kicked(self, room: str, reason: str) -> None:
        """``app.kick``: out of ``room`` at once, then told so."""
        if room not in self.metadata:
            return
        if self.sink is not None:
            self.sink.rooms.discard(room)  # now: nothing more of the room reaches it
        self._spawn(self._kick(room, reason))

    async def _kick(self, room: str, reason: str) -> None:
        await self._drop(room)
        self.send(frames.removed(room, reason))

    async def _publish(self, request: Publish) -> None:
        room = request.room
        found = self.endpoint.publishers.find(room)
        if found is None:
            self._bad_frame(request.id, ErrorCode.PUBLISH_REFUSED, f"Clients may not publish to {room!r}")
            return
        if room not in self.metadata:
            self._bad_frame(request.id, ErrorCode.NOT_JOINED, f"Join {room!r} before publishing to it")
            return
        handler, params = found
        try:
            data = handler.convert(request.data)
        except InvalidPayload as problem:
            self._bad_frame(request.id, ErrorCode.INVALID_PAYLOAD, str(problem))
            return
        result = await self._call(handler, params, data)
        if isinstance(result, _Refusal):
            self.send(frames.error(request.id, result.code, result.reason))
            return
        position = None
        if result is not None:
            try:
                position = await self.hub.broadcast(room, result)
            except PayloadTooLarge as problem:
                self.send(frames.error(request.id, ErrorCode.TOO_LARGE, str(problem)))
                return
            except BackendUnavailable:
                self.send(frames.error(request.id, ErrorCode.UNAVAILABLE, "The relay is unavailable; try again"))
                return
            except TypeError as problem:
                logger.error("The publish handler of room %r returned something that is not JSON: %s", room, problem)
                self.send(frames.error(request.id, ErrorCode.INTERNAL_ERROR, "The room's publish handler failed"))
                return
        self.send(frames.ack(request.id, room, position))

    async def _call(self, handler: RoomHandler, params: dict[str, str], payload: Any) -> Any:
        """The handler's result, or a :class:`_Refusal` for what it raised."""
        try:
            return await handler.call(self.ws, params, payload)
        except Refused as refused:
            return _Refusal(refused.code, refused.reason)
        except HTTPException as refused:  # from a dependency shared with HTTP routes
            return _Refusal(ErrorCode.FORBIDDEN, str(refused.detail))
        except WebSocketRequestValidationError as invalid:
            return _Refusal(ErrorCode.BAD_REQUEST, _describe(invalid.errors))
        except Exception:
            logger.exception("Realtime handler %s failed", getattr(handler.func, "__qualname__", handler.func))
            return _Refusal(ErrorCode.INTERNAL_ERROR, "The room's handler failed")


class _Refusal:
    __slots__ = ("code", "reason")

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason


def _describe(errors: list[Mapping[str, Any]]) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors)
