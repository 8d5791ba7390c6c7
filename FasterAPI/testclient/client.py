"""``TestClient``: an app on an event loop in a background thread, called over HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import queue
import threading
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode, urljoin, urlsplit

import msgspec

from ..datastructures import Headers, parse_cookies
from ..types import RAISE_EXCEPTIONS_EXTENSION, ASGIApp, Message, Scope
from ..websockets import DENIAL_EXTENSION
from .responses import TestResponse
from .websocket import WebSocketTestSession

__all__ = ["TestClient"]

T = TypeVar("T")


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
        data: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        follow_redirects: bool | None = None,
    ) -> TestResponse:
        """Send one HTTP request through the app and return its complete response.

        ``headers`` may be a list of pairs to send a header more than once. ``data`` sends a
        form (urlencoded; multipart with ``files``), as httpx does: ``files={"upload":
        ("a.txt", b"...", "text/plain")}``, the content type and even the name optional.
        """
        body = b""
        defaults = {k.lower(): v for k, v in self.headers.items()}
        if json is not None:
            body = msgspec.json.encode(json)
            defaults.setdefault("content-type", "application/json")
        elif content is not None:
            body = content.encode() if isinstance(content, str) else content
        elif files:
            body, content_type = encode_multipart(data or {}, files)
            defaults["content-type"] = content_type
        elif data is not None:
            body = urlencode(data, doseq=True).encode()
            defaults["content-type"] = "application/x-www-form-urlencoded"
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


def encode_multipart(
    data: Mapping[str, Any], files: Mapping[str, Any] | Sequence[tuple[str, Any]]
) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type, from form fields and files."""
    boundary = os.urandom(16).hex()
    parts: list[bytes] = []
    for name, value in data.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + str(item).encode()
            )
    pairs = files.items() if isinstance(files, Mapping) else files
    for name, spec in pairs:
        filename, content, content_type = "upload", spec, "application/octet-stream"
        if isinstance(spec, tuple):
            filename, content = spec[0], spec[1]
            if len(spec) > 2:
                content_type = spec[2]
        if hasattr(content, "read"):
            content = content.read()
        if isinstance(content, str):
            content = content.encode()
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(head.encode() + content)
    body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
