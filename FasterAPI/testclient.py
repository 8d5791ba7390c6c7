"""``TestClient``: call an app in-process, HTTP and WebSocket, without a server.

The app runs on an event loop in a background thread, concurrently with the test: a
WebSocket session performs the real ASGI handshake (``websocket.connect`` answered by the
app's ``accept`` or ``close``) and then exchanges messages both ways while the handler runs.
``with TestClient(app):`` runs the lifespan (startup on enter, shutdown on exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode, urljoin, urlsplit

import msgspec

from . import status
from .datastructures import Headers, parse_cookies
from .exceptions import WebSocketDisconnect
from .types import ASGIApp, Message, Scope

__all__ = ["TestClient", "TestResponse", "WebSocketDenialResponse", "WebSocketTestSession"]

T = TypeVar("T")


class TestResponse:
    """What the app answered: ``status_code``, ``headers``, ``content``, ``text``, ``json()``."""

    __test__ = False

    def __init__(self, status_code: int, headers: Headers, content: bytes, url: str) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.url = url

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return msgspec.json.decode(self.content)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def __repr__(self) -> str:
        return f"<TestResponse [{self.status_code}]>"


class WebSocketDenialResponse(TestResponse, Exception):
    """The app refused the WebSocket handshake with an HTTP response."""


class _Portal:
    """An event loop in a daemon thread, and a way to run coroutines on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="testclient-loop", daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def _cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(_cancel_rest(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class TestClient:
    """Drive an ASGI app from synchronous test code."""

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        *,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
        timeout: float = 30.0,
        client: tuple[str, int] = ("testclient", 50000),
    ) -> None:
        self.app = app
        self.base_url = base_url
        self.headers = dict(headers or {})
        self.follow_redirects = follow_redirects
        self.timeout = timeout
        self.client = client
        self.cookies: dict[str, str] = {}
        self.app_state: dict[str, Any] = {}
        self._portal: _Portal | None = None
        self._lifespan: Future[None] | None = None
        self._lifespan_in: asyncio.Queue[Message] | None = None
        self._lifespan_out: queue.Queue[Message] = queue.Queue()

    @property
    def portal(self) -> _Portal:
        if self._portal is None:
            self._portal = _Portal()
        return self._portal

    # -- lifespan ------------------------------------------------------------------------

    def __enter__(self) -> TestClient:
        portal = self.portal

        async def make_queue() -> asyncio.Queue[Message]:
            return asyncio.Queue()

        self._lifespan_in = portal.call(make_queue())
        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.app_state}
        self._lifespan = portal.spawn(self._run_lifespan(scope))
        self._lifespan_send({"type": "lifespan.startup"})
        reply = self._lifespan_out.get(timeout=self.timeout)
        if reply["type"] == "lifespan.startup.failed":
            self._finish_lifespan()
            self.close()
            raise RuntimeError(f"Lifespan startup failed: {reply.get('message', '')}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Run the shutdown (after ``with``) and stop the client's event-loop thread."""
        try:
            if self._lifespan is not None and not self._lifespan.done():
                self._lifespan_send({"type": "lifespan.shutdown"})
                reply = self._lifespan_out.get(timeout=self.timeout)
                self._finish_lifespan()
                if reply["type"] == "lifespan.shutdown.failed":
                    raise RuntimeError(f"Lifespan shutdown failed: {reply.get('message', '')}")
        finally:
            if self._portal is not None:
                self._portal.close()
                self._portal = None

    async def _run_lifespan(self, scope: Scope) -> None:
        assert self._lifespan_in is not None
        inbox = self._lifespan_in

        async def receive() -> Message:
            return await inbox.get()

        async def send(message: Message) -> None:
            self._lifespan_out.put(message)

        try:
            await self.app(scope, receive, send)
        except BaseException as error:  # the app already reported it through send
            self._lifespan_out.put({"type": "lifespan.crashed", "message": repr(error)})

    def _lifespan_send(self, message: Message) -> None:
        assert self._lifespan_in is not None
        self.portal.loop.call_soon_threadsafe(self._lifespan_in.put_nowait, message)

    def _finish_lifespan(self) -> None:
        if self._lifespan is not None:
            with contextlib.suppress(Exception):
                self._lifespan.result(self.timeout)

    # -- HTTP ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        cookies: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        follow_redirects: bool | None = None,
    ) -> TestResponse:
        """Send one HTTP request through the app and return its complete response.

        ``headers`` may be a list of pairs to send a header more than once.
        """
        body = b""
        defaults = {k.lower(): v for k, v in self.headers.items()}
        if json is not None:
            body = msgspec.json.encode(json)
            defaults.setdefault("content-type", "application/json")
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        given = [(k.lower(), v) for k, v in (headers.items() if isinstance(headers, Mapping) else headers or ())]
        jar = {**self.cookies, **(cookies or {})}
        if jar:
            defaults["cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        if body:
            defaults["content-length"] = str(len(body))
        named = {k for k, _ in given}
        all_headers = [(k, v) for k, v in defaults.items() if k not in named] + given
        target = urljoin(self.base_url, url)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params, doseq=True)
        for _ in range(10):
            response = self.portal.call(self._http(method.upper(), target, all_headers, body), self.timeout)
            self._store_cookies(response.headers)
            follow = self.follow_redirects if follow_redirects is None else follow_redirects
            if not (follow and response.status_code in (301, 302, 303, 307, 308)):
                return response
            target = urljoin(target, response.headers["location"])
            if response.status_code == 303:
                method, body = "GET", b""
        raise RuntimeError(f"Too many redirects from {url!r}")

    def _store_cookies(self, headers: Headers) -> None:
        for line in headers.getlist("set-cookie"):
            pair = line.split(";", 1)[0]
            for key, value in parse_cookies(pair).items():
                if "max-age=0" in line.lower():
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = value

    def _scope(self, kind: str, target: str, headers: Mapping[str, str] | Sequence[tuple[str, str]]) -> Scope:
        parts = urlsplit(target)
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        host = next((v for k, v in pairs if k.lower() == "host"), None) or parts.netloc or "testserver"
        raw = [(b"host", host.encode())]
        raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in pairs if k.lower() != "host"]
        default_port = {"http": 80, "https": 443, "ws": 80, "wss": 443}[parts.scheme or "http"]
        path = parts.path or "/"
        return {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": parts.scheme or "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": parts.query.encode(),
            "headers": raw,
            "client": list(self.client),
            "server": [parts.hostname or "testserver", parts.port or default_port],
            "state": dict(self.app_state),
            "extensions": {"websocket.http.response": {}} if kind == "websocket" else {},
        }

    async def _http(self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes) -> TestResponse:
        scope = self._scope("http", target, headers)
        scope["method"] = method
        request_sent = False
        done = asyncio.Event()
        status: int | None = None
        response_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                if status is not None:
                    raise RuntimeError("http.response.start sent twice")
                status = message["status"]
                response_headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                if status is None:
                    raise RuntimeError("http.response.body sent before http.response.start")
                if method != "HEAD":
                    chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        try:
            await self.app(scope, receive, send)
        finally:
            done.set()
        if status is None:
            raise RuntimeError("The app returned without sending a response")
        return TestResponse(status, Headers(response_headers), b"".join(chunks), target)

    def get(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("OPTIONS", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> TestResponse:
        return self.request("DELETE", url, **kwargs)

    # -- WebSocket -----------------------------------------------------------------------

    def websocket_connect(
        self,
        url: str,
        subprotocols: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> WebSocketTestSession:
        """Open a WebSocket session; use it as a context manager."""
        target = urljoin(self.base_url.replace("http", "ws", 1), url)
        all_headers = {**{k.lower(): v for k, v in self.headers.items()}}
        all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
        all_headers.setdefault("connection", "upgrade")
        all_headers.setdefault("upgrade", "websocket")
        all_headers.setdefault("sec-websocket-version", "13")
        if subprotocols:
            all_headers["sec-websocket-protocol"] = ", ".join(subprotocols)
        if self.cookies:
            all_headers.setdefault("cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        scope = self._scope("websocket", target, all_headers)
        scope["subprotocols"] = list(subprotocols or [])
        return WebSocketTestSession(self, scope)


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
        self._closed = False

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
        self._closed = True
        if message["type"] == "websocket.close":
            self._wait_app()
            raise WebSocketDisconnect(message.get("code", status.WS_1000_NORMAL_CLOSURE), message.get("reason"))
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

    def __exit__(self, *exc_info: object) -> None:
        try:
            if not self._closed:
                self.close(status.WS_1000_NORMAL_CLOSURE)
        finally:
            self._wait_app()

    async def _run(self) -> None:
        assert self._to_app is not None
        inbox = self._to_app

        async def receive() -> Message:
            return await inbox.get()

        async def send(message: Message) -> None:
            self._from_app.put(message)

        try:
            await self.client.app(self.scope, receive, send)
        except BaseException as error:
            self._from_app.put(error)
            raise
        finally:
            self._from_app.put(None)

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
        if self._task is None:
            return
        try:
            self._task.result(self.client.timeout)
        except WebSocketDisconnect:
            pass

    # -- sending -------------------------------------------------------------------------

    def send(self, message: Message) -> None:
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
        self._closed = True
        self._put({"type": "websocket.disconnect", "code": code, "reason": reason or ""})

    # -- receiving -----------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> Message:
        """The next raw message the app sent; a close raises WebSocketDisconnect."""
        message = self._next(timeout)
        if message["type"] == "websocket.close":
            self._closed = True
            self.close_code = message.get("code", status.WS_1000_NORMAL_CLOSURE)
            self.close_reason = message.get("reason") or ""
            raise WebSocketDisconnect(self.close_code, self.close_reason)
        return message

    def receive_text(self, timeout: float | None = None) -> str:
        message = self.receive(timeout)
        if message.get("text") is None:
            raise TypeError(f"Expected a text message, got {message!r}")
        return message["text"]  # type: ignore[no-any-return]

    def receive_bytes(self, timeout: float | None = None) -> bytes:
        message = self.receive(timeout)
        if message.get("bytes") is None:
            raise TypeError(f"Expected a binary message, got {message!r}")
        return message["bytes"]  # type: ignore[no-any-return]

    def receive_json(self, mode: str = "text", timeout: float | None = None) -> Any:
        data = self.receive_text(timeout) if mode == "text" else self.receive_bytes(timeout)
        return msgspec.json.decode(data)

    def iter_messages(self) -> Iterator[Message]:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield self.receive()
