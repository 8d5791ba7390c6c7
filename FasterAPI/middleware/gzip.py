"""``GZipMiddleware``: gzip HTTP responses for clients that accept it.

A complete body (one message) is compressed when it is at least ``minimum_size`` bytes. A
streamed body is compressed as it goes, each chunk flushed (``Z_SYNC_FLUSH``) so the client
gets it at once rather than when the compressor's buffer fills. Left alone: responses that
already have a ``Content-Encoding``, ``text/event-stream`` (a server-sent event must reach
the client the moment it is sent; an intermediary must not wait on it), and WebSocket scopes
(this middleware is not in the WebSocket chain at all).
"""

from __future__ import annotations

import zlib

from ..types import ASGIApp, Message, Receive, Scope, Send
from .cors import _add_vary

__all__ = ["GZipMiddleware"]

#: Content types never compressed: a stream of events has to reach the client at once.
UNCOMPRESSED_TYPES = (b"text/event-stream",)


#: Answers of :func:`accepts_gzip` by header value: clients send a handful of distinct values.
_accepts_cache: dict[bytes, bool] = {}
_ACCEPTS_CACHE_SIZE = 256


def accepts_gzip(header: bytes) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (``gzip;q=0`` forbids it, ``*`` allows it)."""
    answer = _accepts_cache.get(header)
    if answer is None:
        if len(_accepts_cache) >= _ACCEPTS_CACHE_SIZE:
            _accepts_cache.clear()  # odd values from odd clients: start over rather than grow
        answer = _accepts_cache[header] = _parse_accepts_gzip(header)
    return answer


def _parse_accepts_gzip(header: bytes) -> bool:
    allowed_by_star = False
    for item in header.split(b","):
        coding, _, params = item.strip().partition(b";")
        coding = coding.strip().lower()
        quality = 1.0
        for param in params.split(b";"):
            key, _, value = param.strip().partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if coding in (b"gzip", b"x-gzip"):
            return quality > 0
        if coding == b"*":
            allowed_by_star = quality > 0
    return allowed_by_star


class GZipMiddleware:
    """Compress responses of at least ``minimum_size`` bytes at ``compresslevel`` (1-9)."""

    scope_types = frozenset({"http"})

    def __init__(self, app: ASGIApp, minimum_size: int = 500, compresslevel: int = 9) -> None:
        if not 0 <= compresslevel <= 9:
            raise ValueError(f"compresslevel must be 0-9, got {compresslevel}")
        self.app = app
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"accept-encoding":
                if accepts_gzip(value):
                    await self.app(scope, receive, _GZipSender(send, self.minimum_size, self.compresslevel).send)
                    return
                break
        await self.app(scope, receive, send)


class _GZipSender:
    """The ``send`` of one response: holds the start until the first body shows what to do."""

    __slots__ = ("compressor", "level", "minimum_size", "passthrough", "send_to", "start")

    def __init__(self, send: Send, minimum_size: int, level: int) -> None:
        self.send_to = send
        self.minimum_size = minimum_size
        self.level = level
        self.start: Message | None = None
        self.passthrough = False
        self.compressor: zlib._Compress | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.passthrough:
            await self.send_to(message)
            return
        if kind == "http.response.start":
            if self._leave_alone(message):
                self.passthrough = True
                await self.send_to(message)
                return
            self.start = message
            return
        if kind != "http.response.body":
            await self.send_to(message)
            return
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self.compressor is None:
            start = self.start
            assert start is not None, "http.response.body before http.response.start"
            if not more and len(body) < self.minimum_size:
                self.passthrough = True
                await self.send_to(start)
                await self.send_to(message)
                return
            self.compressor = zlib.compressobj(self.level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            headers = []
            for key, value in start.get("headers", []):
                name = key.lower()
                if name == b"content-length":
                    continue
                if name == b"etag" and not value.startswith(b"W/"):
                    # The compressed bytes are another representation: its validator is weak.
                    value = b"W/" + value
                headers.append((key, value))
            headers.append((b"content-encoding", b"gzip"))
            start["headers"] = headers
            _add_vary(start, b"Accept-Encoding")
            if not more:
                compressed = self.compressor.compress(body) + self.compressor.flush()
                start["headers"].append((b"content-length", str(len(compressed)).encode()))
                await self.send_to(start)
                await self.send_to({"type": "http.response.body", "body": compressed})
                return
            await self.send_to(start)
        if more:
            chunk = self.compressor.compress(body) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        else:
            chunk = self.compressor.compress(body) + self.compressor.flush()
        await self.send_to({"type": "http.response.body", "body": chunk, "more_body": more})

    @staticmethod
    def _leave_alone(start: Message) -> bool:
        # 206: a Content-Range counts the identity bytes; compressing would break it.
        if start["status"] < 200 or start["status"] in (204, 206, 304):
            return True
        for key, value in start.get("headers", []):
            name = key.lower()
            if name == b"content-encoding":
                return True
            if name == b"content-type" and value.split(b";")[0].strip().lower() in UNCOMPRESSED_TYPES:
                return True
        return False
