"""``TestClient``: call an app in-process, HTTP and WebSocket, without a server.

The app runs on an event loop in a background thread, concurrently with the test: a
WebSocket session performs the real ASGI handshake (``websocket.connect`` answered by the
app's ``accept`` or ``close``) and then exchanges messages both ways while the handler runs.
``with TestClient(app):`` runs the lifespan (startup on enter, shutdown on exit).

WebSocket sessions behave as Starlette's (so FastAPI's tests port unchanged): a refused
handshake raises :class:`WebSocketDisconnect` (or :class:`WebSocketDenialResponse`, one of
them) from ``websocket_connect(...).__enter__``; ``receive_text/bytes/json`` raise it when the
app closes; leaving the ``with`` block closes from the client's side, cancels a handler that
is not waiting for a message, and raises what the handler raised (its ``WebSocketDisconnect``
too, as a ``while True: receive_text()`` loop does when the client leaves).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import queue
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode, urljoin, urlsplit

import msgspec

from . import status
from .datastructures import Headers, parse_cookies
from .exceptions import WebSocketDisconnect
from .types import RAISE_EXCEPTIONS_EXTENSION, ASGIApp, Message, Scope
from .websockets import DENIAL_EXTENSION

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


class WebSocketDenialResponse(TestResponse, WebSocketDisconnect):
    """The app refused the WebSocket handshake with an HTTP response (``send_denial_response``).

    A :class:`WebSocketDisconnect` too, as in Starlette, with the code a browser reports for
    a failed handshake (1006): ``pytest.raises(WebSocketDisconnect)`` takes either refusal.
    """

    def __init__(self, status_code: int, headers: Headers, content: bytes, url: str) -> None:
        TestResponse.__init__(self, status_code, headers, content, url)
        WebSocketDisconnect.__init__(self, status.WS_1006_ABNORMAL_CLOSURE, f"HTTP {status_code}")

    def __repr__(self) -> str:
        return f"<WebSocketDenialResponse [{self.status_code}]>"


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
        cookies: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
        raise_server_exceptions: bool = True,
        timeout: float = 30.0,
        client: tuple[str, int] = ("testclient", 50000),
    ) -> None:
        """``headers`` and ``cookies`` go with every request and WebSocket handshake (the
        ``user-agent`` is ``testclient`` unless given). With ``raise_server_exceptions`` an
        exception that no handler took in a WebSocket route reaches the test, as in Starlette;
        the app has closed the socket (1011) first. ``timeout`` bounds every wait for the app."""
        self.app = app
        self.base_url = base_url
        self.headers = dict(headers or {})
        if not any(key.lower() == "user-agent" for key in self.headers):
            self.headers["user-agent"] = "testclient"
        self.follow_redirects = follow_redirects
        self.raise_server_exceptions = raise_server_exceptions
        self.timeout = timeout
        self.client = client
        self.cookies: dict[str, str] = dict(cookies or {})
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
            "extensions": self._extensions(kind),
        }

    def _extensions(self, kind: str) -> dict[str, Any]:
        extensions: dict[str, Any] = {}
        if kind == "websocket":
            extensions[DENIAL_EXTENSION] = {}
            if self.raise_server_exceptions:
                extensions[RAISE_EXCEPTIONS_EXTENSION] = {}
        return extensions

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
        *,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> WebSocketTestSession:
        """A WebSocket session; the handshake happens when it is entered (``with``).

        The handshake request carries what a browser's does: the client's headers and
        cookies (``cookies`` added for this one), ``sec-websocket-key`` and ``-version``,
        ``user-agent``, and the offered ``subprotocols``; ``params`` join the query string.
        """
        target = urljoin(self.base_url.replace("http", "ws", 1), url)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params, doseq=True)
        given = [(k.lower(), v) for k, v in (headers.items() if isinstance(headers, Mapping) else headers or ())]
        named = {k for k, _ in given}
        defaults = {k.lower(): v for k, v in self.headers.items()}
        defaults.update(
            {
                "connection": "upgrade",
                "upgrade": "websocket",
                "sec-websocket-key": base64.b64encode(os.urandom(16)).decode(),
                "sec-websocket-version": "13",
            }
        )
        if subprotocols:
            defaults["sec-websocket-protocol"] = ", ".join(subprotocols)
        jar = {**self.cookies, **(cookies or {})}
        if jar:
            defaults["cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        all_headers = [(k, v) for k, v in defaults.items() if k not in named] + given
        scope = self._scope("websocket", target, all_headers)
        offered = next((v for k, v in reversed(all_headers) if k == "sec-websocket-protocol"), "")
        scope["subprotocols"] = [p.strip() for p in offered.split(",") if p.strip()]
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
