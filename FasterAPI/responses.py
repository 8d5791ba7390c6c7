"""Responses: bytes, text, HTML, JSON (msgspec), streams and redirects."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from .datastructures import MutableHeaders
from .types import Message, Receive, Scope, Send

_json_encode = msgspec.json.Encoder().encode


class Response:
    """A complete body sent in one piece."""

    media_type: str | None = None
    charset = "utf-8"

    def __init__(
        self,
        content: Any = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.body = self.render(content)
        self.headers = MutableHeaders()
        if headers:
            for key, value in headers.items():
                self.headers.append(key, value)
        self._init_headers()

    def render(self, content: Any) -> bytes:
        if content is None:
            return b""
        if isinstance(content, bytes | bytearray | memoryview):
            return bytes(content)
        return str(content).encode(self.charset)

    def _init_headers(self) -> None:
        raw = self.headers.raw
        has_length = has_type = False
        for key, _ in raw:
            if key == b"content-length":
                has_length = True
            elif key == b"content-type":
                has_type = True
        if not has_length and not (self.status_code < 200 or self.status_code in (204, 304)):
            raw.append((b"content-length", str(len(self.body)).encode()))
        if not has_type and self.media_type is not None:
            content_type = self.media_type
            if content_type.startswith("text/") and "charset=" not in content_type:
                content_type += f"; charset={self.charset}"
            raw.append((b"content-type", content_type.encode("latin-1")))

    def set_cookie(
        self,
        key: str,
        value: str = "",
        *,
        max_age: int | None = None,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: str | None = "lax",
    ) -> None:
        parts = [f"{key}={quote(value, safe='')}", f"Path={path}"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if domain:
            parts.append(f"Domain={domain}")
        if secure:
            parts.append("Secure")
        if httponly:
            parts.append("HttpOnly")
        if samesite:
            parts.append(f"SameSite={samesite}")
        self.headers.append("set-cookie", "; ".join(parts))

    def delete_cookie(self, key: str, path: str = "/") -> None:
        self.set_cookie(key, "", max_age=0, path=path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            send = _denial_send(send)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.headers.raw})
        await send({"type": "http.response.body", "body": self.body})


class PlainTextResponse(Response):
    media_type = "text/plain"


class HTMLResponse(Response):
    media_type = "text/html"


class JSONResponse(Response):
    """Any value msgspec can encode: dicts, lists, Structs, dataclasses, datetimes."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _json_encode(content)


class RedirectResponse(Response):
    def __init__(
        self, url: str, status_code: int = 307, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(b"", status_code=status_code, headers=headers)
        self.headers["location"] = quote(url, safe=":/%#?=@[]!$&'()*+,;")


class StreamingResponse(Response):
    """A body produced piece by piece by a (sync or async) iterable."""

    def __init__(
        self,
        content: AsyncIterable[str | bytes] | Iterable[str | bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.body = b""
        self.body_iterator = content
        self.headers = MutableHeaders()
        if headers:
            for key, value in headers.items():
                self.headers.append(key, value)
        if self.media_type is not None and "content-type" not in self.headers:
            self.headers["content-type"] = self.media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            send = _denial_send(send)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.headers.raw})
        if isinstance(self.body_iterator, AsyncIterable):
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": _as_bytes(chunk), "more_body": True})
        else:
            for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": _as_bytes(chunk), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _denial_send(send: Send) -> Send:
    """``send`` for a response that answers a WebSocket handshake: the ASGI denial messages."""

    async def denial(message: Message) -> None:
        kind = message["type"]
        if kind in ("http.response.start", "http.response.body"):
            message = {**message, "type": "websocket." + kind}
        await send(message)

    return denial


def _as_bytes(chunk: str | bytes) -> bytes:
    return chunk.encode("utf-8") if isinstance(chunk, str) else chunk
