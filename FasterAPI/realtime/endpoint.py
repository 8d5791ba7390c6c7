"""``app.realtime(path)``: one WebSocket endpoint for every room of a connection, and its client.

The endpoint declares rooms (``@rt.room(pattern)``: the join guard) and who may publish
(``@rt.on_publish(pattern)``), serves each connection with a
:class:`~FasterAPI.realtime.session.Session`, and keeps what a worker shares between them:
its local members per room (for presence diffs and resets), one ping timer for all of them,
and the browser client at ``<path>/client.js``.

Presence diffs and kicks travel between workers as hub control messages: a diff is published
on the room's channel (so only workers with local members of the room receive it, and a room
without realtime members costs nothing), a kick on the worker channel of the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from ..pubsub.envelope import Envelope
from ..pubsub.errors import BackendUnavailable
from ..pubsub.history import Gap
from ..pubsub.hub import Hub
from ..requests import Request
from ..responses import Response
from ..routing import HTTPRoute, WebSocketRoute
from ..websockets import WebSocket
from . import frames
from .rooms import RoomTable
from .schema import describe_realtime
from .session import PING_TIMEOUT_CLOSE, Session

if TYPE_CHECKING:
    from ..applications import Faster

__all__ = ["Realtime"]

logger = logging.getLogger("fasterapi.realtime")

F = TypeVar("F", bound=Callable[..., Any])

CLIENT_MEDIA_TYPE = "text/javascript; charset=utf-8"


class Realtime:
    """A realtime endpoint of ``app`` at ``path`` (made by :meth:`Faster.realtime`)."""

    def __init__(self, app: Faster, path: str, *, ping_interval: float = 10.0) -> None:
        if not ping_interval > 0:
            raise ValueError(f"ping_interval must be positive (seconds), got {ping_interval!r}")
        self.app = app
        self.path = path
        self.ping_interval = float(ping_interval)
        self.guards = RoomTable()
        self.publishers = RoomTable()
        #: This worker's open sessions, by connection id.
        self.sessions: dict[str, Session] = {}
        #: room -> {connection id: session}: this worker's members of each room.
        self.rooms: dict[str, dict[str, Session]] = {}
        self._pinger: asyncio.Task[None] | None = None
        self._hooked: Hub | None = None
        self._client: tuple[bytes, str] | None = None
        # In the AsyncAPI document through describe_realtime, with the protocol's frames.
        app.add_route(WebSocketRoute(path, self._serve, name=f"realtime:{path}", include_in_schema=False))
        app.add_route(HTTPRoute(path.rstrip("/") + "/client.js", self._client_js, name=f"realtime-client:{path}"))
        app.on_shutdown.append(self._stop)
        app.asyncapi_sources.append(lambda builder: describe_realtime(self, builder))

    # -- declarations -----------------------------------------------------------------------

    def room(self, pattern: str, *, presence: bool = True) -> Callable[[F], F]:
        """Declare the rooms matching ``pattern`` (``"chat:{room_id}"``) with their join guard.

        The guard runs on every join, rejoin and resume; it raises :class:`JoinDenied` to
        refuse, and returns the connection's presence metadata in the room (a dict, a Struct,
        or None). Rooms that no pattern matches are refused. ``presence=False``: members get
        no presence diffs and an empty member list on joining (for rooms with thousands of
        members, where every join would otherwise go to everyone); ``app.presence`` still works.
        """

        def decorator(func: F) -> F:
            self.guards.add(pattern, func, presence=presence)
            return func

        return decorator

    def on_publish(self, pattern: str) -> Callable[[F], F]:
        """Let members publish to the rooms matching ``pattern``: what the handler returns is
        broadcast to the room (None: nothing); it raises :class:`PublishRefused` to refuse."""

        def decorator(func: F) -> F:
            self.publishers.add(pattern, func)
            return func

        return decorator

    # -- connections ------------------------------------------------------------------------

    async def _serve(self, websocket: WebSocket) -> None:
        await Session(self, websocket).run()

    def attach(self, session: Session) -> None:
        """A session opened on this worker."""
        hub = self.app.hub
        if self._hooked is not hub:
            hub.control_handlers.append(self._on_control)
            hub.gap_hooks.append(self._on_gap)
            self._hooked = hub
        self.sessions[session.id] = session
        if self._pinger is None:
            self._pinger = asyncio.get_running_loop().create_task(self._ping(), name="fasterapi realtime pings")

    def detach(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        for room in session.metadata:
            self.unindex(room, session)

    def index(self, room: str, session: Session) -> None:
        self.rooms.setdefault(room, {})[session.id] = session

    def unindex(self, room: str, session: Session) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.pop(session.id, None)
            if not members:
                del self.rooms[room]

    async def _ping(self) -> None:
        """Every session: a ping each interval (one shared frame), a 4000 close when silent too long."""
        last_ping = time.monotonic()
        try:
            while self.sessions:
                await asyncio.sleep(self.ping_interval / 4)
                now = time.monotonic()
                ping = None
                if now - last_ping >= self.ping_interval:
                    ping, last_ping = frames.SharedFrame(frames.PING), now
                for session in list(self.sessions.values()):
                    if session.timed_out(now):
                        logger.info("Realtime connection %s sent nothing for two ping intervals", session.id)
                        session.close(PING_TIMEOUT_CLOSE, "ping timeout")
                    elif ping is not None:
                        session.deliver(ping)
        finally:
            self._pinger = None

    async def _stop(self) -> None:
        pinger = self._pinger
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    # -- between workers --------------------------------------------------------------------

    async def announce(
        self, room: str, *, joins: dict[str, bytes] | None = None, leaves: list[str] | None = None, exclude: str
    ) -> None:
        """Tell every member of ``room`` on every worker (but ``exclude``) who joined or left."""
        diff = frames.presence_diff(room, joins or {}, leaves or [])
        try:
            await self.app.hub.send_control(diff, room=room, exclude=exclude)
        except BackendUnavailable:
            logger.debug("Presence diff of room %r not sent: the relay is unavailable", room)

    async def presence_of(self, room: str) -> dict[str, Any]:
        try:
            return await self.app.hub.presence_of(room)
        except BackendUnavailable:
            return {}

    def _on_control(self, envelope: Envelope) -> None:
        if envelope.target:
            session = self.sessions.get(envelope.target)
            kick = None if session is None else frames.read_kick(envelope.payload)
            if session is not None and kick is not None:
                session.kicked(kick.room, kick.reason)
            return
        if not envelope.payload.startswith(frames.PRESENCE_PREFIX):
            return
        members = self.rooms.get(envelope.room)
        if members:
            diff = frames.SharedFrame(envelope.payload)  # one frame per form for every member here
            for connection_id, session in list(members.items()):
                if connection_id != envelope.exclude:
                    session.deliver(diff)

    def _on_gap(self, room: str, gap: Gap) -> None:
        members = self.rooms.get(room)
        if members:
            reset = frames.SharedFrame(frames.reset(room))
            for session in list(members.values()):
                session.deliver(reset)

    # -- the browser client -----------------------------------------------------------------

    def _client_source(self) -> tuple[bytes, str]:
        if self._client is None:
            body = resources.files(__package__).joinpath("client.js").read_bytes()
            self._client = body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return self._client

    async def _client_js(self, request: Request) -> Response:
        body, etag = self._client_source()
        # Revalidated on each load (the file changes with the package at the same URL); a 304 is cheap.
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        matches = request.headers.get("if-none-match", "")
        if etag in [tag.strip().removeprefix("W/") for tag in matches.split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type=CLIENT_MEDIA_TYPE)
