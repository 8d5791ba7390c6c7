"""Server-sent events: ``EventSourceResponse`` over an async iterator of ``ServerSentEvent``.

As in FastAPI, either return ``EventSourceResponse(iterator)``, or declare the route with
``response_class=EventSourceResponse`` and write the handler as an async generator. Each item
is a :class:`ServerSentEvent`, or any other value, which becomes the event's JSON ``data``.

While the iterator is quiet, a comment line (``: ping``) goes out every ``ping`` seconds so
proxies keep the connection open. The response watches for the client's ``http.disconnect``:
when the client goes, the iterator is closed (its ``finally`` blocks run) at once, not at the
next event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .responses import StreamingResponse, _denial_send
from .types import Receive, Scope, Send

if TYPE_CHECKING:
    from .background import BackgroundTask

__all__ = ["KEEPALIVE_COMMENT", "EventSourceResponse", "ServerSentEvent", "format_sse_event"]

_json_encode = msgspec.json.Encoder().encode

#: What a keep-alive ping looks like on the wire: a comment, which EventSource ignores.
KEEPALIVE_COMMENT = b": ping\n\n"


def _lines(value: str) -> list[str]:
    # The event-stream format ends a line at \r\n, \r or \n: each becomes a line of its own.
    return value.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _single_line(value: str | None, field: str) -> str | None:
    if value is not None and ("\n" in value or "\r" in value):
        raise ValueError(f"The SSE {field!r} must be a single line, got {value!r}")
    return value


class ServerSentEvent:
    """One event: ``data`` (sent as JSON) or ``raw_data`` (a string sent as it is, split at
    its line breaks), ``event`` (the type), ``id``, ``retry`` (milliseconds), ``comment``."""

    __slots__ = ("comment", "data", "event", "id", "raw_data", "retry")

    def __init__(
        self,
        data: Any = None,
        *,
        raw_data: str | None = None,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        if data is not None and raw_data is not None:
            raise ValueError("Give a ServerSentEvent 'data' (sent as JSON) or 'raw_data' (sent as is), not both")
        if id is not None and "\x00" in id:
            raise ValueError("The SSE 'id' must not contain a NUL character")
        if retry is not None and (not isinstance(retry, int) or retry < 0):
            raise ValueError(f"The SSE 'retry' must be a non-negative integer (milliseconds), got {retry!r}")
        self.data = data
        self.raw_data = raw_data
        self.event = _single_line(event, "event")
        self.id = _single_line(id, "id")
        self.retry = retry
        self.comment = comment

    def encode(self) -> bytes:
        """The event in the ``text/event-stream`` format, ending with its blank line."""
        data = self.raw_data
        if data is None and self.data is not None:
            data = _json_encode(self.data).decode()
        return format_sse_event(data=data, event=self.event, id=self.id, retry=self.retry, comment=self.comment)

    def __repr__(self) -> str:
        given = [name for name in self.__slots__ if getattr(self, name) is not None]
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in given)
        return f"ServerSentEvent({fields})"


def format_sse_event(
    *,
    data: str | None = None,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """The wire form of one event from already-serialized ``data``."""
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {line}" for line in _lines(comment))
    if event is not None:
        lines.append(f"event: {event}")
    if data is not None:
        lines.extend(f"data: {line}" for line in _lines(data))
    if id is not None:
        lines.append(f"id: {id}")
    if retry is not None:
        lines.append(f"retry: {retry}")
    return ("\n".join(lines) + "\n\n").encode()


def _encode_item(item: Any) -> bytes:
    if isinstance(item, ServerSentEvent):
        return item.encode()
    return format_sse_event(data=_json_encode(item).decode())


class EventSourceResponse(StreamingResponse):
    """A ``text/event-stream`` response; ``ping`` is the keep-alive interval in seconds (None: none)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterable[Any],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        ping: float | None = 15.0,
    ) -> None:
        if not isinstance(content, AsyncIterable):
            raise TypeError(f"EventSourceResponse needs an async iterator (an async generator), got {content!r}")
        super().__init__(content, status_code, headers, media_type, background)
        self.ping = ping
        self.headers.setdefault("cache-control", "no-cache")
        # nginx buffers proxied responses unless told not to; events must not wait.
        self.headers.setdefault("x-accel-buffering", "no")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            send = _denial_send(send)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.headers.raw})
        iterator = aiter(self.body_iterator)  # type: ignore[arg-type]
        disconnected = asyncio.ensure_future(_until_disconnect(receive))
        waiting: asyncio.Future[Any] | None = None
        finished = False
        try:
            while True:
                if waiting is None:
                    waiting = asyncio.ensure_future(_next_item(iterator))
                done, _ = await asyncio.wait(
                    (waiting, disconnected), timeout=self.ping, return_when=asyncio.FIRST_COMPLETED
                )
                if disconnected in done:
                    break  # the client left: stop the iterator now
                if waiting in done:
                    item = waiting.result()
                    waiting = None
                    if item is _END:
                        finished = True
                        break
                    await send({"type": "http.response.body", "body": _encode_item(item), "more_body": True})
                else:
                    await send({"type": "http.response.body", "body": KEEPALIVE_COMMENT, "more_body": True})
        except OSError:
            pass  # the connection is gone (a server's send raised): as a disconnect
        finally:
            disconnected.cancel()
            if waiting is not None and not waiting.done():
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await waiting
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                await closer()
        if finished:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if self.background is not None:
                await self.background()


_END = object()


async def _next_item(iterator: AsyncIterator[Any]) -> Any:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
