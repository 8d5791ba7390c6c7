"""The Python asyncio client of the realtime endpoint (``app.realtime(path)``), for services,
scripts and tests; the same shape as the browser client (``<path>/client.js``).

::

    rt = Realtime("ws://localhost:8000/rt", params=lambda: {"token": token})
    room = rt.room("chat:42")
    room.on("message", lambda data, meta: print(data, meta))
    recovered, position = await room.join({"name": "ann"})
    await room.publish({"text": "hi"})
    await room.leave()
    await rt.close()

It reconnects by itself (full-jitter backoff: 0.5 s doubling to 20 s, reset after a connection
that stayed up 10 s), rejoins every room with the last position it saw so the server replays
what it missed (a rejoin the server cannot serve yet, ``unavailable``, is tried again with the
same backoff), drops duplicates by offset, and notices a dead link when nothing (not even a
ping) arrived for two ping intervals. Binary broadcasts arrive as ``bytes``. The transport is
the ``websockets`` library. It behaves as the browser client does (``client.js`` is the
reference).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import inspect
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["ConnectionState", "JoinResult", "Position", "Realtime", "RealtimeError", "Room", "full_jitter"]

logger = logging.getLogger("fasterapi.client")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

SUBPROTOCOL = "fasterapi.v1"


class ConnectionState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class Position(NamedTuple):
    """Where a message stands in its room's history."""

    offset: int
    epoch: str


class JoinResult(NamedTuple):
    """What a join found: ``recovered`` (nothing was missed since the last position), the room's top."""

    recovered: bool
    position: Position | None


class RealtimeError(Exception):
    """A request the server refused (``denied`` or ``error``), or a connection that went away."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}" if reason else code)
        self.code = code
        self.reason = reason


Callback = Callable[..., Any]


def _data_of(frame: dict[str, Any]) -> Any:
    """A ``message`` frame's data: bytes (sent as base64 in JSON mode) when ``binary``."""
    data = frame.get("data")
    if frame.get("binary") is True and isinstance(data, str):
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            logger.warning("Realtime server sent a binary message that is not base64")
    return data


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """The wait before reconnect ``attempt`` (0, 1, ...): uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 30)))


class _Emitter:
    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    def _keep(self, awaitable: Any) -> None:
        """Run ``awaitable`` on its own, holding a reference until it is done."""
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on(self, event: str, callback: Callback) -> Callback:
        """Call ``callback`` on ``event`` (sync, or async: then it runs as a task). Returns it."""
        self._callbacks.setdefault(event, []).append(callback)
        return callback

    def off(self, event: str, callback: Callback) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._callbacks[event].remove(callback)

    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._callbacks.get(event, ())):
            try:
                result = callback(*args)
                if inspect.isawaitable(result):
                    self._keep(result)
            except Exception:
                logger.exception("Realtime %r callback %r failed", event, callback)


class Room(_Emitter):
    """One room of a :class:`Realtime` connection. Events: ``message(data, meta)`` (meta: a dict
    with ``offset``, ``epoch``; data is ``bytes`` for a binary broadcast), ``presence(diff)``,
    ``reset()``, ``left(info)``: the membership ended without :meth:`leave`, ``info`` a dict
    ``{"code", "reason"}`` (code ``removed``: the server took the connection out, e.g. a kick;
    else the code of a refused rejoin)."""

    def __init__(self, client: Realtime, name: str) -> None:
        super().__init__()
        self.client = client
        self.name = name
        #: The last position seen (None: none yet, or forgotten after a reset).
        self.position: Position | None = None
        #: The members and their metadata, kept up to date by presence diffs.
        self.presence: dict[str, Any] = {}
        self.wanted = False
        self.joined = False
        self._payload: Any = msgspec.UNSET
        self._waiter: asyncio.Future[JoinResult] | None = None
        #: It was joined when the connection dropped: its next join is a rejoin.
        self._resuming = False
        #: A rejoin the server could not serve yet (``unavailable``) waits here to be sent again.
        self._retry: asyncio.TimerHandle | None = None
        self._retries = 0

    async def join(self, payload: Any = msgspec.UNSET) -> JoinResult:
        """Join (connecting first if needed); raises :class:`RealtimeError` when denied."""
        self.wanted = True
        self._payload = payload
        self._cancel_retry()  # this join replaces a rejoin waiting to be sent again
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        self.client._start()
        if self.client.state is ConnectionState.CONNECTED:
            await self.client._send_join(self)
        return await asyncio.shield(waiter)

    async def publish(self, data: Any) -> Position | None:
        """Publish ``data`` to the room; its position once the server acknowledged it."""
        reply = await self.client._request({"op": "publish", "room": self.name, "data": data})
        position = reply.get("position")
        return None if position is None else Position(position["offset"], position["epoch"])

    async def leave(self) -> None:
        """Leave the room (no rejoin after a reconnect)."""
        self.wanted = False
        self.joined = self._resuming = False
        self._cancel_retry()
        if self.client.state is ConnectionState.CONNECTED:
            with contextlib.suppress(RealtimeError):
                await self.client._request({"op": "leave", "room": self.name})

    # -- frames from the server -------------------------------------------------------------

    def _message(self, frame: dict[str, Any]) -> None:
        if not self.wanted:
            return
        offset, epoch = frame.get("offset", 0), frame.get("epoch", "")
        position = self.position
        if offset:
            if position is not None and epoch == position.epoch and offset <= position.offset:
                return  # a duplicate (a replay crossing the live stream)
            self.position = Position(offset, epoch)
        self._emit("message", _data_of(frame), {"offset": offset, "epoch": epoch})

    def _joined(self, frame: dict[str, Any]) -> None:
        self.joined = True
        self._resuming = False
        self._retries = 0
        top = frame.get("position")
        if top is not None:
            current = self.position
            if current is None or current.epoch != top["epoch"] or current.offset < top["offset"]:
                if current is None or not frame.get("recovered"):
                    self.position = Position(top["offset"], top["epoch"])
        self.presence = dict(frame.get("presence") or {})
        top_position = None if top is None else Position(top["offset"], top["epoch"])
        result = JoinResult(bool(frame.get("recovered")), top_position)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(result)

    def _refused(self, code: str, reason: str, rejoin: bool) -> None:
        if rejoin and code == "unavailable" and self.wanted:
            # The server's relay is down: the rejoin is not refused, only delayed. Try again.
            delay = full_jitter(self._retries, self.client.backoff_base, self.client.backoff_cap)
            self._retries += 1
            logger.info("Rejoin of room %r: the server is unavailable; trying again in %.2f s", self.name, delay)
            self._cancel_retry()
            self._retry = asyncio.get_running_loop().call_later(delay, self._rejoin)
            return
        # Denied: this connection is not in the room, and does not retry by itself.
        self.wanted = self.joined = self._resuming = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(RealtimeError(code, reason))
        if rejoin:
            self._emit("left", {"code": code, "reason": reason})

    def _rejoin(self) -> None:
        self._retry = None
        if self.wanted and self.client.state is ConnectionState.CONNECTED:
            self.client._keep(self.client._send_join(self))

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _disconnected(self) -> None:
        """The connection dropped: a room that was joined is rejoined (a rejoin) once it is back."""
        self._cancel_retry()
        if self.joined:
            self._resuming = True
        self.joined = False

    def _removed(self, reason: str) -> None:
        """``left`` without an id: the server took the connection out (a kick, a revoked permission)."""
        if not self.wanted:
            return
        self.wanted = self.joined = self._resuming = False
        self._emit("left", {"code": "removed", "reason": reason or "removed by the server"})

    def _presence(self, frame: dict[str, Any]) -> None:
        for member in frame.get("leaves") or ():
            self.presence.pop(member, None)
        self.presence.update(frame.get("joins") or {})
        self._emit("presence", {"joins": frame.get("joins") or {}, "leaves": frame.get("leaves") or []})

    def _reset(self) -> None:
        self.position = None
        self._emit("reset")


class Realtime(_Emitter):
    """A connection to a realtime endpoint that stays up (see the module docstring).

    ``url`` is the endpoint's ``ws://``/``wss://`` URL; ``params()`` (called at every connect)
    gives query parameters, e.g. a fresh token. Events: ``state(state)``; ``message(data)``: a
    message sent to this connection alone (``app.send_to``, room ``""``); ``error(error)``: a
    :class:`RealtimeError` from an ``error`` frame that answers no request.
    """

    def __init__(
        self,
        url: str,
        *,
        params: Callable[[], Mapping[str, str]] | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 20.0,
        stable_after: float = 10.0,
        open_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.params = params
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stable_after = stable_after
        self.open_timeout = open_timeout
        self.state = ConnectionState.DISCONNECTED
        #: The server's connection id for the current connection ("" while disconnected).
        self.connection_id = ""
        self.ping_interval = 10.0
        self.rooms: dict[str, Room] = {}
        self._ids = itertools.count(1)
        #: Requests waiting for their reply: publishes and leaves (futures), joins (their room,
        #: and whether the join is a rejoin).
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._joins: dict[int, tuple[Room, bool]] = {}
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._connected = asyncio.Event()

    def room(self, name: str) -> Room:
        """The room called ``name`` (the same object every time)."""
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(self, name)
        return room

    async def connect(self) -> None:
        """Connect now (joins connect by themselves) and wait until connected."""
        self._start()
        await self._connected.wait()

    async def close(self) -> None:
        """Close for good: no reconnect."""
        self._closed = True
        task, self._task = self._task, None
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state(ConnectionState.DISCONNECTED)
        for room in self.rooms.values():
            room.wanted = room.joined = room._resuming = False
            room._cancel_retry()
            if room._waiter is not None and not room._waiter.done():
                room._waiter.set_exception(RealtimeError("closed", "The client was closed"))

    async def __aenter__(self) -> Realtime:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- the connection loop ----------------------------------------------------------------

    def _start(self) -> None:
        if self._closed:
            raise RealtimeError("closed", "This Realtime client was closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fasterapi realtime client")

    def _set_state(self, state: ConnectionState) -> None:
        if state is not self.state:
            self.state = state
            self._emit("state", state.value)

    def _connect_url(self) -> str:
        if self.params is None:
            return self.url
        parts = urlsplit(self.url)
        query = urlencode(dict(self.params()))
        joined = f"{parts.query}&{query}" if parts.query and query else parts.query or query
        return urlunsplit(parts._replace(query=joined))

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            self._set_state(ConnectionState.CONNECTING)
            started = time.monotonic()
            try:
                async with connect(
                    self._connect_url(),
                    subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                    open_timeout=self.open_timeout,
                    ping_interval=None,  # the protocol's own pings, which the server expects
                    max_size=None,
                ) as ws:
                    self._ws = ws
                    await self._session(ws)
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as error:
                logger.debug("Realtime connection to %s ended: %r", self.url, error)
            finally:
                self._ws = None
                self._connected.clear()
                self.connection_id = ""
                self._fail_pending(RealtimeError("disconnected", "The connection was lost"))
                for room in self.rooms.values():
                    room._disconnected()
            if self._closed:
                break
            self._set_state(ConnectionState.DISCONNECTED)
            if time.monotonic() - started >= self.stable_after:
                attempt = 0
            delay = full_jitter(attempt, self.backoff_base, self.backoff_cap)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self, ws: ClientConnection) -> None:
        welcome = _decode(await asyncio.wait_for(ws.recv(), self.open_timeout))
        if not isinstance(welcome, dict) or welcome.get("op") != "welcome":
            raise ConnectionClosed(None, None)
        self.connection_id = str(welcome.get("connection", ""))
        self.ping_interval = float(welcome.get("ping_interval") or self.ping_interval)
        self._set_state(ConnectionState.CONNECTED)
        self._connected.set()
        pinger = asyncio.get_running_loop().create_task(self._ping(ws))
        try:
            for room in list(self.rooms.values()):
                if room.wanted:
                    await self._send_join(room)
            while True:
                # Nothing at all for two ping intervals: the link is dead (a blackholed network
                # gives no error); drop it and reconnect.
                try:
                    raw = await asyncio.wait_for(ws.recv(), 2 * self.ping_interval)
                except TimeoutError:
                    logger.info("Realtime link to %s silent for two ping intervals; reconnecting", self.url)
                    ws.transport.abort()
                    return
                self._receive(raw)
        finally:
            pinger.cancel()

    async def _ping(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            while True:
                await asyncio.sleep(self.ping_interval)
                await ws.send('{"op":"ping"}')

    async def _send_join(self, room: Room) -> None:
        frame: dict[str, Any] = {"op": "join", "room": room.name}
        if room.position is not None:
            frame["since"] = {"offset": room.position.offset, "epoch": room.position.epoch}
        if room._payload is not msgspec.UNSET:
            frame["payload"] = room._payload
        request_id = next(self._ids)
        frame["id"] = request_id
        # The reply (joined / denied / error) goes to the room.
        self._joins[request_id] = (room, room._resuming)
        with contextlib.suppress(ConnectionClosed):
            await self._send(frame)

    async def _send(self, frame: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            raise RealtimeError("disconnected", "Not connected")
        await ws.send(_encode(frame).decode())

    async def _request(self, frame: dict[str, Any]) -> dict[str, Any]:
        if self.state is not ConnectionState.CONNECTED:
            raise RealtimeError("disconnected", "Not connected")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            try:
                await self._send({**frame, "id": request_id})
            except ConnectionClosed:
                raise RealtimeError("disconnected", "The connection was lost") from None
            return await future
        finally:
            self._pending.pop(request_id, None)

    def _fail_pending(self, error: RealtimeError) -> None:
        pending, self._pending = self._pending, {}
        self._joins.clear()  # a join in flight is sent again after the reconnect
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    # -- frames from the server -------------------------------------------------------------

    def _receive(self, raw: str | bytes) -> None:
        try:
            frame = _decode(raw)
        except msgspec.DecodeError:
            logger.warning("Realtime server sent a frame that is not JSON")
            return
        if not isinstance(frame, dict):
            return
        op = frame.get("op")
        room = self.rooms.get(frame.get("room") or "")
        if op == "message":
            if frame.get("room") == "":
                self._emit("message", _data_of(frame))  # sent to this connection alone
            elif room is not None:
                room._message(frame)
        elif op == "ping":
            if self._ws is not None:
                self._keep(self._pong(self._ws))
        elif op in ("joined", "denied", "left", "ack", "error"):
            self._reply(op, frame, room)
        elif op == "presence":
            if room is not None and room.wanted:
                room._presence(frame)
        elif op == "reset":
            if room is not None:
                room._reset()
        # pong and unknown ops: their arrival is all that counts

    async def _pong(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await ws.send('{"op":"pong"}')

    def _reply(self, op: str, frame: dict[str, Any], room: Room | None) -> None:
        request_id = frame.get("id")
        if not isinstance(request_id, int):
            if op == "left" and room is not None:
                room._removed(str(frame.get("reason", "")))  # the server took it out
            elif op == "error":
                logger.warning("Realtime server: %s: %s", frame.get("code"), frame.get("reason"))
                self._emit("error", RealtimeError(str(frame.get("code")), str(frame.get("reason", ""))))
            return
        joining = self._joins.pop(request_id, None)
        if joining is not None:
            joining_room, rejoin = joining
            if op == "joined":
                joining_room._joined(frame)
            elif op in ("denied", "error"):
                joining_room._refused(str(frame.get("code")), str(frame.get("reason", "")), rejoin)
            return
        future = self._pending.pop(request_id, None)
        if future is None or future.done():
            return
        if op == "error":
            future.set_exception(RealtimeError(str(frame.get("code")), str(frame.get("reason", ""))))
        else:
            future.set_result(frame)
