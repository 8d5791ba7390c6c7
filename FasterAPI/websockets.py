"""The WebSocket connection: Starlette's state machine, plus rooms through the app's hub."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .exceptions import InvalidJSONMessage, UnexpectedFrameType, WebSocketDisconnect
from .requests import HTTPConnection
from .types import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .pubsub.outbox import Sink

__all__ = ["WebSocket", "WebSocketDisconnect", "WebSocketState"]

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


class WebSocketState(enum.Enum):
    """One side of the connection: the client's (what we received) or the app's (what we sent)."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2


class WebSocket(HTTPConnection):
    """A WebSocket connection as the handler sees it.

    ``client_state`` follows the messages received from the client, ``application_state``
    the messages the app sent. Misuse (send before accept, accept twice, receive after a
    disconnect) raises RuntimeError naming the expected and the actual state.
    """

    __slots__ = ("_id", "_receive", "_send", "application_state", "client_state", "outbox", "rooms")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"WebSocket needs a 'websocket' scope, got {scope['type']!r}")
        super().__init__(scope)
        self._receive = receive
        self._send = send
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING
        self._id: str | None = None
        #: Rooms this connection joined in this worker (kept by the hub). A tuple: most
        #: sockets are in one or two rooms, and a set costs four times the memory.
        self.rooms: tuple[str, ...] = ()
        #: Where the hub delivers broadcasts (set when the connection gets its id).
        self.outbox: Sink | None = None

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
        """Send a raw ASGI message (``websocket.accept``, ``websocket.send``, ``websocket.close``)."""
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
                raise WebSocketDisconnect(1006) from None
            return
        if state is WebSocketState.CONNECTING:
            if kind == "websocket.accept":
                self.application_state = WebSocketState.CONNECTED
            elif kind == "websocket.close":
                self.application_state = WebSocketState.DISCONNECTED
            elif kind != "websocket.http.response.start":
                raise RuntimeError(
                    f"Cannot send {kind!r} before accept(): application state is CONNECTING, "
                    "expected CONNECTED"
                )
            await self._send(message)
            return
        raise RuntimeError(
            f'Cannot send {kind!r} once a close message has been sent: application state is '
            "DISCONNECTED, expected CONNECTED"
        )

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

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code``; before accept() this rejects the handshake with HTTP 403."""
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
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
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
        except msgspec.DecodeError as error:
            raise InvalidJSONMessage(f"Malformed JSON in WebSocket message: {error}") from None

    async def receive_text(self) -> str:
        """The next text message; a binary frame raises :class:`UnexpectedFrameType`."""
        return self._text_of(self._data(await self._next_message()))

    async def receive_bytes(self) -> bytes:
        """The next binary message; a text frame raises :class:`UnexpectedFrameType`."""
        return self._bytes_of(self._data(await self._next_message()))

    async def receive_json(self, mode: Literal["text", "binary"] = "text") -> Any:
        """The next message decoded as JSON; malformed JSON raises :class:`InvalidJSONMessage`."""
        if mode not in ("text", "binary"):
            raise ValueError(f"mode must be 'text' or 'binary', got {mode!r}")
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
        encoded = _json_encode(data)
        if mode == "text":
            await self.send({"type": "websocket.send", "text": encoded.decode()})
        elif mode == "binary":
            await self.send({"type": "websocket.send", "bytes": encoded})
        else:
            raise ValueError(f"mode must be 'text' or 'binary', got {mode!r}")

    # -- rooms -------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """This connection's id, unique across every worker and host sharing the backend."""
        if self._id is None:
            return self.app.hub.register(self)
        return self._id

    async def join(self, room: str) -> None:
        """Receive every broadcast to ``room``, from any worker, until leave() or the socket ends."""
        self._require_connected()
        await self.app.hub.join(self, room)

    async def leave(self, room: str) -> None:
        """Stop receiving ``room``'s broadcasts. Leaving a room not joined is a no-op."""
        await self.app.hub.leave(self, room)
