"""Responses: bytes, text, HTML, JSON (msgspec), streams, files and redirects."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import mimetypes
import os
import stat
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

import msgspec

from .datastructures import Headers, MutableHeaders
from .types import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .background import BackgroundTask

_json_encode = msgspec.json.Encoder().encode


class Response:
    """A complete body sent in one piece."""

    media_type: str | None = None
    charset = "utf-8"
    #: Run after the response is sent (``Response(..., background=BackgroundTask(f))``).
    background: BackgroundTask | None = None

    def __init__(
        self,
        content: Any = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = status_code
        if background is not None:
            self.background = background
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
        if self.background is not None:
            await self.background()


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
        self,
        url: str,
        status_code: int = 307,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(b"", status_code=status_code, headers=headers, background=background)
        self.headers["location"] = quote(url, safe=":/%#?=@[]!$&'()*+,;")


class StreamingResponse(Response):
    """A body produced piece by piece by a (sync or async) iterable."""

    def __init__(
        self,
        content: AsyncIterable[str | bytes] | Iterable[str | bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = status_code
        if background is not None:
            self.background = background
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
        if self.background is not None:
            await self.background()


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


class RangeNotSatisfiable(Exception):
    """A Range header the file cannot serve (malformed, or no range inside the file): 416."""


class ByteRange(NamedTuple):
    """Bytes ``start`` to ``end`` of a file, both included."""

    start: int
    end: int


#: More ranges than this in one request is refused (416): no client needs them, and each
#: one costs a part header and a read.
MAX_RANGES = 100


def parse_range(header: str, size: int) -> list[ByteRange] | None:
    """The byte ranges a ``Range`` header asks of a ``size``-byte file, sorted and merged.

    None when the header is not about bytes (then it is ignored and the whole file sent).
    Raises :class:`RangeNotSatisfiable` for a malformed set, a range that ends before it
    starts, too many ranges, or none that starts inside the file.
    """
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    wanted: list[ByteRange] = []
    parts = [part.strip() for part in specs.split(",")]
    if len(parts) > MAX_RANGES:
        raise RangeNotSatisfiable(f"More than {MAX_RANGES} ranges")
    for part in parts:
        if not part:
            continue
        first, dash, last = part.partition("-")
        first, last = first.strip(), last.strip()
        well_formed = dash and (first.isdigit() or not first) and (last.isdigit() or not last) and (first or last)
        if not well_formed:
            raise RangeNotSatisfiable(f"Malformed range {part!r}")
        if not first:  # "-500": the last 500 bytes
            length = int(last)
            if length == 0 or size == 0:
                continue
            wanted.append(ByteRange(max(size - length, 0), size - 1))
            continue
        start = int(first)
        end = int(last) if last else size - 1
        if end < start:
            raise RangeNotSatisfiable(f"Range {part!r} ends before it starts")
        if start >= size:
            continue  # outside the file: dropped; 416 if nothing is left
        wanted.append(ByteRange(start, min(end, size - 1)))
    if not wanted:
        raise RangeNotSatisfiable(f"No range inside the file's {size} bytes")
    wanted.sort()
    merged = [wanted[0]]
    for current in wanted[1:]:
        last_range = merged[-1]
        if current.start <= last_range.end + 1:  # overlapping or adjacent: one range
            merged[-1] = ByteRange(last_range.start, max(last_range.end, current.end))
        else:
            merged.append(current)
    return merged


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match: weak comparison, ``*`` matches any."""
    tags = [tag.strip() for tag in header.split(",")]
    bare = etag.removeprefix("W/")
    return "*" in tags or any(tag.removeprefix("W/") == bare for tag in tags)


class FileResponse(Response):
    """A file from disk, streamed in chunks read in a worker thread.

    ``Content-Type`` is guessed from ``filename`` or ``path``; ``filename`` adds a
    ``Content-Disposition`` (``content_disposition_type``: attachment or inline). The response
    carries an ``ETag`` and ``Last-Modified``, answers ``If-None-Match`` / ``If-Modified-Since``
    with 304, a ``Range`` with 206 (several ranges: ``multipart/byteranges``; ``If-Range``
    honoured) or 416, and HEAD with the headers alone.
    """

    chunk_size = 64 * 1024

    def __init__(
        self,
        path: str | os.PathLike[str],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        filename: str | None = None,
        stat_result: os.stat_result | None = None,
        method: str | None = None,
        content_disposition_type: str = "attachment",
    ) -> None:
        self.path = os.fspath(path)
        self.status_code = status_code
        self.filename = filename
        self.method = method
        if background is not None:
            self.background = background
        if media_type is None:
            media_type = mimetypes.guess_type(filename or self.path)[0] or "application/octet-stream"
        self.media_type = media_type
        self.body = b""
        self.headers = MutableHeaders()
        if headers:
            for key, value in headers.items():
                self.headers.append(key, value)
        if filename is not None:
            plain = filename.isascii() and filename.isprintable() and not any(c in filename for c in '"\\')
            if not plain:  # RFC 6266: other names go percent-encoded in filename*
                disposition = f"{content_disposition_type}; filename*=utf-8''{quote(filename)}"
            else:
                disposition = f'{content_disposition_type}; filename="{filename}"'
            self.headers.setdefault("content-disposition", disposition)
        self.stat_result = stat_result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            send = _denial_send(send)
        method = (self.method or scope.get("method", "GET")).upper()
        info = self.stat_result
        if info is None:
            try:
                info = await asyncio.to_thread(os.stat, self.path)
            except FileNotFoundError:
                raise RuntimeError(f"File at path {self.path} does not exist") from None
        if not stat.S_ISREG(info.st_mode):
            raise RuntimeError(f"File at path {self.path} is not a file")
        size = info.st_size
        etag = f'"{hashlib.md5(f"{info.st_mtime_ns}-{size}".encode(), usedforsecurity=False).hexdigest()}"'
        last_modified = email.utils.formatdate(info.st_mtime, usegmt=True)
        headers = self.headers
        content_type = self.media_type or "application/octet-stream"
        if content_type.startswith("text/") and "charset=" not in content_type:
            content_type += f"; charset={self.charset}"
        headers.setdefault("etag", etag)
        headers.setdefault("last-modified", last_modified)
        headers.setdefault("accept-ranges", "bytes")
        request_headers = Headers(scope=scope)
        ranges: list[ByteRange] | None = None
        if self.status_code == 200 and method in ("GET", "HEAD"):
            if _not_modified(request_headers, headers["etag"], info.st_mtime):
                await self._send_not_modified(send)
                return
            range_header = request_headers.get("range")
            if_range = request_headers.get("if-range")
            if range_header is not None and _if_range_holds(if_range, headers["etag"], last_modified):
                try:
                    ranges = parse_range(range_header, size)
                except RangeNotSatisfiable as error:
                    await self._send_unsatisfiable(send, size, str(error))
                    return
        send_body = method != "HEAD"
        if ranges is None:
            headers["content-type"] = content_type
            headers["content-length"] = str(size)
            await send({"type": "http.response.start", "status": self.status_code, "headers": headers.raw})
            if send_body:
                await self._send_file(send, [ByteRange(0, size - 1)] if size else [], None, content_type, size)
            else:
                await send({"type": "http.response.body", "body": b""})
        elif len(ranges) == 1:
            only = ranges[0]
            headers["content-type"] = content_type
            headers["content-range"] = f"bytes {only.start}-{only.end}/{size}"
            headers["content-length"] = str(only.end - only.start + 1)
            await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
            if send_body:
                await self._send_file(send, ranges, None, content_type, size)
            else:
                await send({"type": "http.response.body", "body": b""})
        else:
            boundary = os.urandom(12).hex()
            length = sum(
                len(_part_header(boundary, content_type, r, size)) + (r.end - r.start + 1) + 2 for r in ranges
            ) + len(f"--{boundary}--\r\n")
            headers["content-type"] = f"multipart/byteranges; boundary={boundary}"
            headers["content-length"] = str(length)
            await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
            if send_body:
                await self._send_file(send, ranges, boundary, content_type, size)
            else:
                await send({"type": "http.response.body", "body": b""})
        if self.background is not None:
            await self.background()

    async def _send_file(
        self, send: Send, ranges: list[ByteRange], boundary: str | None, content_type: str, size: int
    ) -> None:
        handle = await asyncio.to_thread(open, self.path, "rb")
        try:
            for byte_range in ranges:
                if boundary is not None:
                    part = _part_header(boundary, content_type, byte_range, size)
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                await asyncio.to_thread(handle.seek, byte_range.start)
                remaining = byte_range.end - byte_range.start + 1
                while remaining > 0:
                    chunk = await asyncio.to_thread(handle.read, min(self.chunk_size, remaining))
                    if not chunk:
                        raise RuntimeError(f"File at path {self.path} shrank while it was being sent")
                    remaining -= len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if boundary is not None:
                    await send({"type": "http.response.body", "body": b"\r\n", "more_body": True})
        finally:
            await asyncio.to_thread(handle.close)
        tail = f"--{boundary}--\r\n".encode() if boundary is not None else b""
        await send({"type": "http.response.body", "body": tail})

    async def _send_not_modified(self, send: Send) -> None:
        kept = [(k, v) for k, v in self.headers.raw if not k.startswith(b"content-")]
        await send({"type": "http.response.start", "status": 304, "headers": kept})
        await send({"type": "http.response.body", "body": b""})

    async def _send_unsatisfiable(self, send: Send, size: int, reason: str) -> None:
        body = f"Range Not Satisfiable: {reason}".encode()
        headers = [
            (b"content-range", f"bytes */{size}".encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 416, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _part_header(boundary: str, content_type: str, byte_range: ByteRange, size: int) -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: {content_type}\r\n"
        f"Content-Range: bytes {byte_range.start}-{byte_range.end}/{size}\r\n\r\n"
    ).encode("latin-1")


def _not_modified(request_headers: Headers, etag: str, mtime: float) -> bool:
    """Whether the client's copy is current (If-None-Match wins over If-Modified-Since)."""
    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, etag)
    if_modified_since = request_headers.get("if-modified-since")
    if if_modified_since is not None:
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError):
            return False  # an unparsable date is ignored, as RFC 9110 says
        return int(mtime) <= since
    return False


def _if_range_holds(if_range: str | None, etag: str, last_modified: str) -> bool:
    """Whether a Range applies: no If-Range, or one naming this very version (strong match)."""
    if if_range is None:
        return True
    if if_range.startswith(('"', "W/")):
        return if_range == etag and not etag.startswith("W/")
    return if_range == last_modified
