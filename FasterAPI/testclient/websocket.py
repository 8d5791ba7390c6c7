"""A TestClient's WebSocket session: the real ASGI handshake, then messages both ways."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

import msgspec

from .. import status
from ..datastructures import Headers
from ..exceptions import WebSocketDisconnect
from ..types import Message, Scope
from .responses import WebSocketDenialResponse

if TYPE_CHECKING:
    from .client import TestClient

__all__ = ["WebSocketTestSession"]


class WebSocketTestSession:
    """One WebSocket conversation with the app, which runs concurrently on the client's loop."""

    __test__ = False

    def __init__(self, client: TestClient, scope: Scope) -> None:
        self.client = client
        self.scope = scope
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._to_app: asyncio.Queue[Message] | None = None
        self._from_app: queue.Queue[Message | BaseException | None] = queue.Queue()
        self._task: Future[None] | None = None
        # Kept on the client's loop: the app's task, how many of its receive() calls are
        # waiting, whether each side has closed, and whether the client cancelled the app.
        self._app_task: asyncio.Task[Any] | None = None
        self._receivers = 0
        self._client_closed = False
        self._server_closed = False
        self._cancelled = False

    def __enter__(self) -> WebSocketTestSession:
        portal = self.client.portal

        async def make_queue() -> asyncio.Queue[Message]:
            return asyncio.Queue()

        self._to_app = portal.call(make_queue())
        self._task = portal.spawn(self._run())
        self._put({"type": "websocket.connect"})
        message = self._next()
        if message["type"] == "websocket.accept":
            self.accepted_subprotocol = message.get("subprotocol")
            self.extra_headers = list(message.get("headers") or [])
            return self
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", status.WS_1000_NORMAL_CLOSURE)
            self.close_reason = message.get("reason") or ""
            self._wait_app()  # what the app raised comes first
            raise WebSocketDisconnect(self.close_code, self.close_reason)
        if message["type"] == "websocket.http.response.start":
            body = b""
            while True:
                part = self._next()
                body += part.get("body", b"")
                if not part.get("more_body", False):
                    break
            self._wait_app()
            raise WebSocketDenialResponse(
                message["status"], Headers(list(message.get("headers", []))), body, str(self.scope["path"])
            )
        raise RuntimeError(f"Expected websocket.accept or websocket.close, got {message['type']!r}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        """Close from the client's side (1000) unless it already has, cancel the handler if it is
        not waiting for a message, wait for the app, and raise what it raised.

        An exception already leaving the ``with`` block is not replaced: what the app raised
        is added to it as a note.
        """
        self.client.portal.loop.call_soon_threadsafe(self._leave, status.WS_1000_NORMAL_CLOSURE, "")
        try:
            self._wait_app()
        except Exception as app_error:
            if exc is None:
                raise
            exc.add_note(f"The WebSocket app also raised {app_error!r}")

    async def _run(self) -> None:
        assert self._to_app is not None
        inbox = self._to_app
        self._app_task = asyncio.current_task()

        async def receive() -> Message:
            if self._client_closed and inbox.empty():
                # The client is gone: every further receive is its disconnect.
                return {"type": "websocket.disconnect", "code": status.WS_1000_NORMAL_CLOSURE, "reason": ""}
            self._receivers += 1
            try:
                return await inbox.get()
            finally:
                self._receivers -= 1

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.close" or (kind == "websocket.http.response.body" and not message.get("more_body")):
                self._server_closed = True
            self._from_app.put(message)

        try:
            await self.client.app(self.scope, receive, send)
        except asyncio.CancelledError:
            if not self._cancelled:
                raise
            # The client left and cancelled the handler (as Starlette's TestClient does).
        except BaseException as error:
            self._from_app.put(error)
            raise
        finally:
            self._from_app.put(None)

    def _leave(self, code: int, reason: str) -> None:
        """On the client's loop: the client closes; a handler that will not see it is cancelled."""
        self._close_on_loop(code, reason)
        task = self._app_task
        if task is not None and not task.done() and not self._server_closed and self._receivers == 0:
            self._cancelled = True
            task.cancel()

    def _put(self, message: Message) -> None:
        assert self._to_app is not None
        self.client.portal.loop.call_soon_threadsafe(self._to_app.put_nowait, message)

    def _next(self, timeout: float | None = None) -> Message:
        try:
            item = self._from_app.get(timeout=timeout or self.client.timeout)
        except queue.Empty:
            raise TimeoutError("No message from the app within the timeout") from None
        if isinstance(item, BaseException):
            raise item
        if item is None:
            self._from_app.put(None)  # keep reporting the end to later calls
            raise WebSocketDisconnect(status.WS_1006_ABNORMAL_CLOSURE, "The app returned without closing")
        return item

    def _wait_app(self) -> None:
        """Wait for the app to return; raise what it raised (not the client's own cancel)."""
        if self._task is None:
            return
        try:
            self._task.result(self.client.timeout)
        except FutureTimeout:
            raise TimeoutError(
                f"The WebSocket app did not return within {self.client.timeout:g} s of the session's end"
            ) from None

    # -- sending -------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send a raw ASGI message to the app (``websocket.receive``, ``websocket.disconnect``)."""
        if message["type"] == "websocket.disconnect":
            self.close(message.get("code", status.WS_1000_NORMAL_CLOSURE), message.get("reason"))
            return
        self._put(message)

    def send_text(self, data: str) -> None:
        self._put({"type": "websocket.receive", "text": data})

    def send_bytes(self, data: bytes) -> None:
        self._put({"type": "websocket.receive", "bytes": data})

    def send_json(self, data: Any, mode: str = "text") -> None:
        encoded = msgspec.json.encode(data)
        if mode == "text":
            self.send_text(encoded.decode())
        else:
            self.send_bytes(encoded)

    def close(self, code: int = status.WS_1000_NORMAL_CLOSURE, reason: str | None = None) -> None:
        """The client closes: the app's next receive sees ``websocket.disconnect``."""
        self.client.portal.loop.call_soon_threadsafe(self._close_on_loop, code, reason or "")

    def _close_on_loop(self, code: int, reason: str) -> None:
        if not self._client_closed:
            self._client_closed = True
            assert self._to_app is not None
            self._to_app.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})

    # -- receiving -----------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> Message:
        """The next raw message the app sent, a ``websocket.close`` included (as Starlette's)."""
        message = self._next(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", status.WS_1000_NORMAL_CLOSURE)
            self.close_reason = message.get("reason") or ""
        return message

    def _receive_data(self, timeout: float | None) -> Message:
        message = self.receive(timeout)
        if message["type"] == "websocket.close":
            raise WebSocketDisconnect(self.close_code or status.WS_1000_NORMAL_CLOSURE, self.close_reason)
        return message

    def receive_text(self, timeout: float | None = None) -> str:
        """The next text message; the app's close raises WebSocketDisconnect (code and reason)."""
        message = self._receive_data(timeout)
        if message.get("text") is None:
            raise TypeError(f"Expected a text message, got {message!r}")
        return message["text"]  # type: ignore[no-any-return]

    def receive_bytes(self, timeout: float | None = None) -> bytes:
        """The next binary message; the app's close raises WebSocketDisconnect (code and reason)."""
        message = self._receive_data(timeout)
        if message.get("bytes") is None:
            raise TypeError(f"Expected a binary message, got {message!r}")
        return message["bytes"]  # type: ignore[no-any-return]

    def receive_json(self, mode: str = "text", timeout: float | None = None) -> Any:
        data = self.receive_text(timeout) if mode == "text" else self.receive_bytes(timeout)
        return msgspec.json.decode(data)

    def iter_messages(self) -> Iterator[Message]:
        """Messages until the app closes (the close is not yielded)."""
        while True:
            message = self.receive()
            if message["type"] == "websocket.close":
                return
            yield message
