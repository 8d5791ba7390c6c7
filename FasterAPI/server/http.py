"""Our uvicorn HTTP protocols: a deadline for each request's headers, and bounds on their size.

uvicorn's HTTP protocols wait for a request's headers as long as the client likes (its
keep-alive timer only runs between requests) and hold as many header bytes as it sends. So
a few thousand connections that each send half a request line hold a worker's file
descriptors forever, and one request can make it buffer megabytes of headers. Ours, the
same protocols (httptools, else h11) with two additions, under every WebSocket handshake too
(uvicorn reads the upgrade request with its HTTP protocol):

- **A header deadline.** A request's line and headers must be complete within
  ``header_timeout`` seconds (``FASTERAPI_HEADER_TIMEOUT``, default 10) of the connection
  opening, or of the first byte of a later request on a kept-alive connection; else the
  connection is closed. The deadline is absolute, so a client that sends a byte now and then
  does not stretch it.
- **Header limits**, checked on the bytes as they arrive, before a parser holds them: a
  line (its CRLF included) of at most :data:`MAX_LINE` bytes, at most :data:`MAX_HEADERS`
  headers, at most :data:`MAX_HEADER_BYTES` for the request line and headers together.
  Over one, the answer is ``431 Request Header Fields Too Large`` (``414 URI Too Long`` for
  the request line) and the connection closes (after reading and dropping what the client
  still sends for up to :data:`LINGER` seconds, so that the answer is not lost to a reset).

Each refusal (and each invalid request, answered 400) is counted and logged at INFO, rate
limited (:mod:`.errors`). ``fasterapi run`` and ``FasterWorker`` load these protocols when
:mod:`.compat` found uvicorn's internals as expected.
"""

from __future__ import annotations

import asyncio
import functools
from http import HTTPStatus
from typing import Any, Protocol

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools comes with the server extra; without it h11 serves, as in uvicorn
    HTTPTOOLS = False
else:
    HTTPTOOLS = True

from ..config import ServerConfig
from .errors import client_errors, peer

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_LINE",
    "FasterH11Protocol",
    "FasterHttpToolsProtocol",
    "HeaderBlock",
    "HeadersTooLarge",
    "http_protocol_class",
]

#: The longest request line or header line, its CRLF included (websockets' own bound).
MAX_LINE = 8192
#: The most header lines in one request (websockets' own bound).
MAX_HEADERS = 128
#: The request line and every header line together.
MAX_HEADER_BYTES = 64 * 1024
#: How long a refused connection's further bytes are read and dropped before it is closed:
#: closing with unread data would reset it, and the client could lose the answer.
LINGER = 2.0


@functools.cache
def header_timeout() -> float:
    """``FASTERAPI_HEADER_TIMEOUT``, read once per process."""
    timeout: float = ServerConfig.load({}).header_timeout
    return timeout


class HeadersTooLarge(Exception):
    """A request's head broke a limit: it is answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        #: The :data:`~.errors.REASONS` key it is counted under.
        self.reason = reason
        self.detail = detail


class HeaderBlock:
    """One request's line and headers, measured as their bytes arrive.

    :meth:`feed` takes the connection's bytes in order from the start of a request and
    raises :class:`HeadersTooLarge` as soon as a limit is broken, even in the middle of a
    line a parser would still be buffering.
    """

    __slots__ = ("_last", "line", "lines", "size")

    def __init__(self) -> None:
        #: Bytes of the line being read so far (without its LF).
        self.line = 0
        #: Complete non-empty lines so far: the request line, then the headers.
        self.lines = 0
        #: Bytes of the head so far.
        self.size = 0
        self._last = 0  # the byte before ``data`` (a CR that ends a line split from its LF)

    def feed(self, data: bytes) -> int | None:
        """Measure ``data``; the offset just past the head's end if it ends in it, else None."""
        start = 0
        end_of_data = len(data)
        while start < end_of_data:
            newline = data.find(b"\n", start)
            if newline < 0:
                self.line += end_of_data - start
                self.size += end_of_data - start
                self._last = data[-1]
                self._check_line(self.line)
                self._check_size()
                return None
            length = self.line + newline - start  # without the LF
            before = data[newline - 1] if newline > start else self._last
            self.line = 0
            self.size += newline + 1 - start
            start = newline + 1
            if length == 0 or (length == 1 and before == 0x0D):  # an empty line
                if self.lines:
                    return start  # the end of the head
                continue  # RFC 9112 2.2: empty lines before the request line are ignored
            self._check_line(length + 1)
            self.lines += 1
            if self.lines > MAX_HEADERS + 1:
                raise HeadersTooLarge(431, "headers_too_large", f"more than {MAX_HEADERS} header lines")
            self._check_size()
        self._last = data[-1] if data else self._last
        return None

    def _check_line(self, length: int) -> None:
        if length <= MAX_LINE:
            return
        if self.lines == 0:
            raise HeadersTooLarge(414, "request_line_too_long", f"request line over {MAX_LINE} bytes")
        raise HeadersTooLarge(431, "headers_too_large", f"header line over {MAX_LINE} bytes")

    def _check_size(self) -> None:
        if self.size > MAX_HEADER_BYTES:
            raise HeadersTooLarge(431, "headers_too_large", f"headers over {MAX_HEADER_BYTES} bytes")


class _Connection(Protocol):
    """What :class:`_HeaderGuard` uses of uvicorn's HTTP protocols."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None
    server_state: Any
    cycle: Any
    _header_timer: asyncio.TimerHandle | None
    _head: HeaderBlock | None
    _refused: bool

    def _header_deadline(self) -> None: ...

    def _start_deadline(self) -> None: ...


class _HeaderGuard:
    """The deadline and the limits, shared by both protocols (mixed in before uvicorn's class)."""

    #: The deadline of the head being read; None when no request is being read.
    _header_timer: asyncio.TimerHandle | None = None
    #: The head being read; None between a request's headers and the next request.
    _head: HeaderBlock | None = None
    #: Answered with an error: what the client still sends is dropped until the close.
    _refused = False

    def _expect_head(self: _Connection, *, start_deadline: bool = False) -> None:
        """A request may start now: measure its head (its deadline starts with its first byte)."""
        self._head = HeaderBlock()
        if start_deadline:
            self._start_deadline()

    def _start_deadline(self: _Connection) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(header_timeout(), self._header_deadline)

    def _head_done(self: _Connection) -> None:
        """The parser has the whole head: no deadline, no measuring until the next request."""
        self._head = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _measure(self: _Connection, data: bytes) -> bool:
        """Measure ``data`` if a head is being read; False if it broke a limit (then it was refused)."""
        head = self._head
        if head is None:
            return True
        self._start_deadline()
        try:
            if head.feed(data) is not None:
                self._head = None  # what follows the head is a body, or a pipelined request
        except HeadersTooLarge as error:
            _refuse(self, error.status, error.reason, error.detail)
            return False
        return True

    def _header_deadline(self: _Connection) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A response is still being written and a pipelined request waits behind it:
            # that request's deadline starts over (it is read once the response is done).
            self._header_timer = self.loop.call_later(header_timeout(), self._header_deadline)
            return
        client_errors.report(
            "header_timeout",
            "Closed the connection from %s: no complete request headers within %gs",
            peer(self.client),
            header_timeout(),
        )
        self.transport.close()


def _refuse(connection: _Connection, status: int, reason: str, detail: str) -> None:
    """Answer ``status`` with ``detail``, close the connection, count and log it."""
    client_errors.report(reason, "Refused a request from %s with %d: %s", peer(connection.client), status, detail)
    body = f"{HTTPStatus(status).phrase}: {detail}\n".encode()
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
    for name, value in connection.server_state.default_headers:
        head += [name, b": ", value, b"\r\n"]
    head.append(
        b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    transport = connection.transport
    connection._refused = True
    if not transport.is_closing():
        transport.write(b"".join(head) + body)
        if transport.can_write_eof():
            # Our side is done; the client's (say, the rest of 20 MiB of headers) is read and
            # dropped until it stops or LINGER is over, so the answer is not lost to a reset.
            transport.write_eof()
            connection.loop.call_later(LINGER, transport.close)
        else:
            transport.close()
    connection._head = None
    if connection._header_timer is not None:
        connection._header_timer.cancel()
        connection._header_timer = None


if HTTPTOOLS:

    class FasterHttpToolsProtocol(_HeaderGuard, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header deadline and limits."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._expect_head(start_deadline=True)

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_done()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused or not self._measure(data):
                return
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            except httptools.HttpParserError as error:
                # uvicorn logs each one as a warning: a free way to flood the logs.
                _refuse(self, 400, "invalid_http", f"invalid HTTP request ({error})")

        def on_headers_complete(self) -> None:
            self._head_done()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._expect_head()  # a kept-alive connection's next request


class FasterH11Protocol(_HeaderGuard, H11Protocol):
    """uvicorn's h11 protocol with the header deadline and limits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # h11 answers 400 when its buffer outgrows this while a head is incomplete; ours
        # (431 at MAX_HEADER_BYTES) must come first.
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=2 * MAX_HEADER_BYTES)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head(start_deadline=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # h11 is between requests (IDLE) until it has parsed a whole head.
        if self.conn.their_state is h11.IDLE and self._head is None and self._header_timer is None:
            self._expect_head()
        if not self._measure(data):
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_done()


def http_protocol_class() -> type[asyncio.Protocol]:
    """Ours on httptools when it is installed (uvicorn's own choice), else ours on h11."""
    return FasterHttpToolsProtocol if HTTPTOOLS else FasterH11Protocol
