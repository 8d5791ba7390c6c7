"""The WebSocket connection: Starlette's state machine, plus rooms through the app's hub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .exceptions import InvalidJSONMessage, UnexpectedFrameType, WebSocketDisconnect
from .pubsub.delivery import SINK_EXTENSION, ServerSink, Sink, SinkSettings
from .pubsub.outbox import Outbox
from .requests import HTTPConnection
from .status import WS_1000_NORMAL_CLOSURE, WS_1006_ABNORMAL_CLOSURE
from .types import Message, Receive, Scope, Send, WebSocketState

if TYPE_CHECKING:
    from .pubsub.history import JoinResult, Position
    from .pubsub.hub import Hub
    from .responses import Response

__all__ = ["WebSocket", "WebSocketDisconnect", "WebSocketState"]

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode

#: The ASGI extension that lets an app answer a handshake with an HTTP response.
DENIAL_EXTENSION = "websocket.http.response"


def _check_mode(mode: str) -> None:
    # A RuntimeError, as Starlette raises: ported code may catch that.
    if mode not in ("text", "binary"):
        raise RuntimeError(f"The 'mode' argument must be 'text' or 'binary', got {mode!r}")


class WebSocket(HTTPConnection):
    """A WebSocket connection as the handler sees it.

    ``client_state`` follows the messages received from the client, ``application_state``
    the messages the app sent. Misuse (send before accept, accept twice, receive after a
    disconnect) raises RuntimeError naming the expected and the actual state.

    ``hub`` (given by the app) makes the connection a room member: it issues the id, and
    the connection is known to it from ``accept()`` until the app has served it.

    Like Starlette's, it is a read-only mapping of its scope (``ws["subprotocols"]``).
    """

    __slots__ = ("_hub", "_id", "_receive", "_send", "application_state", "client_state")

    def __init__(self, scope: Scope, receive: Receive, send: Send, *, hub: Hub | None = None) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"WebSocket needs a 'websocket' scope, got {scope['type']!r}")
        super().__init__(scope)
        self._receive = receive
        self._send = send
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING
        self._hub = hub
        self._id = "" if hub is None else hub.new_connection_id()

    # -- raw ASGI messages -------------------------------------------------------------------

    async def receive(self) -> Message:
        """The next raw ASGI message from the client (``websocket.receive`` or ``.disconnect``)."""
        state = self.client_state
        if state is WebSocketState.CONNECTED:
            return self._check_received(await self._receive())
        if state is WebSocketState.CONNECTING:
            message = await self._receive()
            if message["type"] != "websocket.connect":
                raise RuntimeError(f"Expected ASGI message 'websocket.connect', got {message['type']!r}")
            self.client_state = WebSocketState.CONNECTED
            return message
        raise RuntimeError(
            'Cannot call "receive" once a disconnect message has been received: '
            "client state is DISCONNECTED, expected CONNECTED"
        )

    async def send(self, message: Message) -> None:
        """Send a raw ASGI message: ``websocket.accept``, ``.send``, ``.close``, or a denial
        response (``websocket.http.response.start`` then ``.body``) instead of accepting."""
        state = self.application_state
        kind = message["type"]
        if state is WebSocketState.CONNECTED:
            if kind == "websocket.close":
                self.application_state = WebSocketState.DISCONNECTED
            elif kind != "websocket.send":
                raise RuntimeError(
                    f"Cannot send {kind!r}: application state is CONNECTED, "
                    "expected 'websocket.send' or 'websocket.close'"
                    + (" (accept() was already called)" if kind == "websocket.accept" else "")
                )
            try:
                await self._send(message)
            except OSError:
                self.application_state = WebSocketState.DISCONNECTED
                raise WebSocketDisconnect(WS_1006_ABNORMAL_CLOSURE) from None
            return
        if state is WebSocketState.CONNECTING:
            if kind == "websocket.accept":
                self.application_state = WebSocketState.CONNECTED
            elif kind == "websocket.close":
                self.application_state = WebSocketState.DISCONNECTED
            elif kind == "websocket.http.response.start":
                if DENIAL_EXTENSION not in self.scope.get("extensions", {}):
                    raise RuntimeError(
                        "Cannot send 'websocket.http.response.start': the server does not support "
                        "the WebSocket denial response extension; close() before accept() answers 403"
                    )
                self.application_state = WebSocketState.RESPONSE
            else:
                raise RuntimeError(
                    f"Cannot send {kind!r} before accept(): application state is CONNECTING, expected "
                    "CONNECTED (before it only 'websocket.accept', 'websocket.close' or "
                    "'websocket.http.response.start' may be sent)"
                )
            await self._send(message)
            return
        if state is WebSocketState.RESPONSE:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Cannot send {kind!r} during a denial response: application state is RESPONSE, "
                    "expected 'websocket.http.response.body'"
                )
            if not message.get("more_body", False):
                self.application_state = WebSocketState.DISCONNECTED
            await self._send(message)
            return
        raise RuntimeError(
            f'Cannot send {kind!r} once a close message has been sent: application state is '
            "DISCONNECTED, expected CONNECTED"
        )

    async def send_denial_response(self, response: Response) -> None:
        """Refuse the handshake with ``response`` (any status, headers and body) instead of a 403.

        Needs the server's ``websocket.http.response`` extension (uvicorn, our server and the
        TestClient have it); without it this raises RuntimeError. Only before accept().
        """
        if DENIAL_EXTENSION not in self.scope.get("extensions", {}):
            raise RuntimeError("The server does not support the WebSocket denial response extension")
        if self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError(
                f"Cannot send a denial response: application state is {self.application_state.name}, "
                "expected CONNECTING (before accept())"
            )
        await response(self.scope, self.receive, self.send)

    # -- handshake and close -----------------------------------------------------------------

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] | Mapping[str, str] | None = None,
    ) -> None:
        """Complete the handshake; consumes the client's ``websocket.connect`` first."""
        if self.application_state is not WebSocketState.CONNECTING:
            raise RuntimeError(
                f"Cannot accept(): application state is {self.application_state.name}, "
                "expected CONNECTING (accept() may be called once)"
            )
        if self.client_state is WebSocketState.CONNECTING:
            await self.receive()
        raw: list[tuple[bytes, bytes]] = []
        if isinstance(headers, Mapping):
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        elif headers is not None:
            raw = [(bytes(k), bytes(v)) for k, v in headers]
        await self.send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": raw})
        if self._hub is not None:
            self._hub.add(self)  # from now on send_to(ws.id) reaches it

    async def close(self, code: int = WS_1000_NORMAL_CLOSURE, reason: str | None = None) -> None:
        """Close with ``code``; before accept() this rejects the handshake with HTTP 403
        (the TestClient raises WebSocketDisconnect with ``code``)."""
        await self.send({"type": "websocket.close", "code": code, "reason": reason or ""})

    # -- typed receive -----------------------------------------------------------------------

    def _require_connected(self) -> None:
        if self.application_state is not WebSocketState.CONNECTED:
            raise RuntimeError(
                f"WebSocket is not connected: application state is {self.application_state.name}, "
                'expected CONNECTED (call "accept" first)'
            )

    # The typed receives await the server's receive directly on the common path (both sides
    # connected): a coroutine frame of ours kept suspended per open socket is memory per
    # connection, and an idle server holds thousands of them.

    def _next_message(self) -> Awaitable[Message]:
        if self.application_state is WebSocketState.CONNECTED and self.client_state is WebSocketState.CONNECTED:
            return self._receive()
        return self._receive_checked()

    async def _receive_checked(self) -> Message:
        self._require_connected()
        return await self.receive()

    def _check_received(self, message: Message) -> Message:
        """Check a message received while connected; a disconnect ends the client's side."""
        kind = message["type"]
        if kind == "websocket.disconnect":
            self.client_state = WebSocketState.DISCONNECTED
        elif kind != "websocket.receive":
            raise RuntimeError(
                f"Expected ASGI message 'websocket.receive' or 'websocket.disconnect', got {kind!r}"
            )
        return message

    def _data(self, message: Message) -> Message:
        """``message`` if it carries data; a disconnect raises WebSocketDisconnect."""
        if message["type"] != "websocket.receive":
            self._check_received(message)  # a disconnect, or a server bug that raises here
            raise WebSocketDisconnect(message.get("code", WS_1000_NORMAL_CLOSURE), message.get("reason"))
        return message

    @staticmethod
    def _text_of(message: Message) -> str:
        text = message.get("text")
        if text is None:
            size = len(message.get("bytes") or b"")
            raise UnexpectedFrameType(
                f"Expected a text frame, got a binary frame ({size} bytes); use receive_bytes()"
            )
        return text  # type: ignore[no-any-return]

    @staticmethod
    def _bytes_of(message: Message) -> bytes:
        data = message.get("bytes")
        if data is None:
            size = len(message.get("text") or "")
            raise UnexpectedFrameType(
                f"Expected a binary frame, got a text frame ({size} characters); use receive_text()"
            )
        return data  # type: ignore[no-any-return]

    @staticmethod
    def _json_of(message: Message, mode: str) -> Any:
        data = WebSocket._text_of(message) if mode == "text" else WebSocket._bytes_of(message)
        try:
            return _json_decode(data)
        except (msgspec.DecodeError, RecursionError) as error:  # RecursionError: a nesting bomb
            raise InvalidJSONMessage(f"Malformed JSON in WebSocket message: {error}") from None

    async def receive_text(self) -> str:
        """The next text message; a binary frame raises :class:`UnexpectedFrameType`."""
        return self._text_of(self._data(await self._next_message()))

    async def receive_bytes(self) -> bytes:
        """The next binary message; a text frame raises :class:`UnexpectedFrameType`."""
        return self._bytes_of(self._data(await self._next_message()))

    async def receive_json(self, mode: Literal["text", "binary"] = "text") -> Any:
        """The next message decoded as JSON; malformed JSON raises :class:`InvalidJSONMessage`."""
        _check_mode(mode)
        return self._json_of(self._data(await self._next_message()), mode)

    async def iter_text(self) -> AsyncIterator[str]:
        """Text messages until the client disconnects."""
        try:
            while True:
                yield self._text_of(self._data(await self._next_message()))
        except WebSocketDisconnect:
            pass

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Binary messages until the client disconnects."""
        try:
            while True:
                yield self._bytes_of(self._data(await self._next_message()))
        except WebSocketDisconnect:
            pass

    async def iter_json(self) -> AsyncIterator[Any]:
        """JSON messages until the client disconnects."""
        try:
            while True:
                yield self._json_of(self._data(await self._next_message()), "text")
        except WebSocketDisconnect:
            pass

    # -- typed send --------------------------------------------------------------------------

    async def send_text(self, data: str) -> None:
        await self.send({"type": "websocket.send", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        await self.send({"type": "websocket.send", "bytes": data})

    async def send_json(self, data: Any, mode: Literal["text", "binary"] = "text") -> None:
        """Send ``data`` encoded with msgspec (dicts, lists, Structs, dataclasses...)."""
        _check_mode(mode)
        encoded = _json_encode(data)
        if mode == "text":
            await self.send({"type": "websocket.send", "text": encoded.decode()})
        else:
            await self.send({"type": "websocket.send", "bytes": encoded})

    # -- rooms -------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """This connection's id, unique across every worker and host sharing the backend."""
        self._member_hub()
        return self._id

    @property
    def rooms(self) -> tuple[str, ...]:
        """The rooms this connection joined (in this worker), in joining order."""
        return () if self._hub is None else self._hub.rooms_of(self._id)

    async def join(self, room: str, since: Position | None = None) -> JoinResult:
        """Receive every broadcast to ``room``, from any worker, until leave() or the socket ends.

        With room history on, ``since`` (the last :class:`Position` the client saw) replays
        every message after it first, in order and once, when the history still holds them
        all: then ``result.recovered`` is True. Else nothing is replayed and the client should
        reload. ``result.position`` is the room's current top (None without history). The
        replay is queued to the socket before this returns, ahead of anything sent after.
        With ``since`` while the relay is down, the history cannot be read: this raises
        :class:`~FasterAPI.pubsub.BackendUnavailable` and the connection is not in the room;
        try again with the same ``since`` once the relay is back, and nothing is lost.
        """
        self._require_connected()
        return await self._member_hub().join(self, room, since)

    async def leave(self, room: str) -> None:
        """Stop receiving ``room``'s broadcasts. Leaving a room not joined is a no-op."""
        await self._member_hub().leave(self._id, room)

    def open_sink(self, settings: SinkSettings) -> Sink:
        """Where the hub delivers this connection's broadcasts: the server's own sink when it
        offers one for this connection (our frame-once protocol), else an ASGI :class:`Outbox`."""
        server_sink = self.scope.get("extensions", {}).get(SINK_EXTENSION)
        if isinstance(server_sink, ServerSink) and server_sink.attach(settings):
            return server_sink
        return Outbox(self, self._send, settings)

    def _member_hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("This WebSocket has no hub: rooms and ids need a socket served by a Faster app")
        return self._hub
