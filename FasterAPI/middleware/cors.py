"""``CORSMiddleware``: the CORS protocol of the Fetch standard, for HTTP requests.

* A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
  here, without calling the app: 204 with the allowed origin, methods, headers and max age
  when the origin, the method and every requested header are allowed, else 400 naming what
  was refused (the browser then blocks the request).
* Any other request from an allowed origin gets ``Access-Control-Allow-Origin`` (and
  ``-Allow-Credentials``, ``-Expose-Headers``) on its response; from another origin, nothing.
* ``Vary: Origin`` is on every response whose CORS headers depend on the origin, so a cache
  never hands one origin's answer to another.
* With credentials the wildcards mean nothing to a browser, so ``"*"`` is answered with the
  request's own origin, method and headers instead. ``allow_headers=["*"]`` echoes the
  requested headers in any case: a literal ``*`` would not cover ``Authorization``.

WebSocket handshakes are not subject to CORS (browsers send them cross-origin freely): they
pass through untouched (this middleware is not even in the WebSocket chain). Check their
``Origin`` with ``Faster(allowed_origins=...)`` -- share one list with this middleware::

    ORIGINS = ["https://app.example.com"]
    app = Faster(allowed_origins=ORIGINS)
    app.add_middleware(CORSMiddleware, allow_origins=ORIGINS, allow_credentials=True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..datastructures import Headers, MutableHeaders
from ..responses import PlainTextResponse, Response
from ..types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CORSMiddleware"]

ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
#: Request headers a browser sends cross-origin without asking (the CORS-safelisted ones).
SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language", "content-type"})


class CORSMiddleware:
    """Cross-origin resource sharing; the options and defaults are Starlette's."""

    scope_types = frozenset({"http"})

    def __init__(
        self,
        app: ASGIApp,
        allow_origins: Iterable[str] = (),
        allow_methods: Iterable[str] = ("GET",),
        allow_headers: Iterable[str] = (),
        allow_credentials: bool = False,
        allow_origin_regex: str | None = None,
        expose_headers: Iterable[str] = (),
        max_age: int = 600,
    ) -> None:
        self.app = app
        origins = frozenset(allow_origins)
        self.allow_all_origins = "*" in origins
        self.allow_origins = origins - {"*"}
        self.allow_origin_regex = None if allow_origin_regex is None else re.compile(allow_origin_regex)
        methods = {m.upper() for m in allow_methods}
        self.allow_all_methods = "*" in methods
        self.allow_methods = ", ".join(ALL_METHODS if self.allow_all_methods else sorted(methods))
        self._methods = frozenset(ALL_METHODS) if self.allow_all_methods else frozenset(methods)
        headers = {h.lower() for h in allow_headers}
        self.allow_all_headers = "*" in headers
        self._headers = frozenset(headers - {"*"}) | SAFELISTED_HEADERS
        self.allow_credentials = allow_credentials
        self.expose_headers = ", ".join(expose_headers)
        self.max_age = str(max_age)
        # Only "any origin, no credentials" has the same answer for everyone: "*".
        self.static_wildcard = self.allow_all_origins and not allow_credentials
        #: The headers an actual response gets, by request origin (few origins call an API).
        self._response_headers: dict[str, list[tuple[bytes, bytes]]] = {}

    def origin_allowed(self, origin: str) -> bool:
        if self.allow_all_origins or origin in self.allow_origins:
            return True
        return self.allow_origin_regex is not None and self.allow_origin_regex.fullmatch(origin) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin: str | None = None
        request_method: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"origin":
                origin = value.decode("latin-1")
            elif key == b"access-control-request-method":
                request_method = value
        if origin is None:
            if self.static_wildcard:
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, self._vary_only(send))
            return
        if scope["method"] == "OPTIONS" and request_method is not None:
            response = self.preflight(origin, request_method.decode("latin-1"), Headers(scope=scope))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, self._with_cors_headers(send, origin))

    def preflight(self, origin: str, method: str, request_headers: Headers) -> Response:
        """The answer to a preflight request."""
        refused: list[str] = []
        if not self.origin_allowed(origin):
            refused.append("origin")
        if method.upper() not in self._methods:
            refused.append("method")
        requested = [h.strip().lower() for h in request_headers.get("access-control-request-headers", "").split(",")]
        requested = [h for h in requested if h]
        if not self.allow_all_headers and any(h not in self._headers for h in requested):
            refused.append("headers")
        headers = MutableHeaders()
        headers["vary"] = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
        if refused:
            return PlainTextResponse(f"Disallowed CORS {', '.join(refused)}", status_code=400, headers=headers)
        headers["access-control-allow-origin"] = "*" if self.static_wildcard else origin
        if self.allow_credentials:
            headers["access-control-allow-credentials"] = "true"
            # A credentialed preflight takes "*" literally: name the method asked for.
            allow_methods = method.upper() if self.allow_all_methods else self.allow_methods
        else:
            allow_methods = self.allow_methods
        headers["access-control-allow-methods"] = allow_methods
        allowed_headers = requested if self.allow_all_headers else sorted(self._headers)
        if allowed_headers:
            headers["access-control-allow-headers"] = ", ".join(allowed_headers)
        headers["access-control-max-age"] = self.max_age
        return Response(status_code=204, headers=headers)

    def _vary_only(self, send: Send) -> Send:
        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_vary(message, b"Origin")
            await send(message)

        return send_with_vary

    def response_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        """The CORS headers of a response to a request from ``origin`` (none if it is not allowed)."""
        extra = self._response_headers.get(origin)
        if extra is not None:
            return extra
        extra = []
        if self.origin_allowed(origin):
            value = "*" if self.static_wildcard else origin
            extra.append((b"access-control-allow-origin", value.encode("latin-1")))
            if self.allow_credentials:
                extra.append((b"access-control-allow-credentials", b"true"))
            if self.expose_headers:
                extra.append((b"access-control-expose-headers", self.expose_headers.encode("latin-1")))
        if len(self._response_headers) >= 256:
            self._response_headers.clear()  # many distinct origins: start over rather than grow
        self._response_headers[origin] = extra
        return extra

    def _with_cors_headers(self, send: Send, origin: str) -> Send:
        extra = self.response_headers(origin)
        vary = not self.static_wildcard

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                if extra:
                    # Ours replaces any the app set, so the response never carries two.
                    headers = [
                        (k, v) for k, v in message.get("headers", []) if k.lower() != b"access-control-allow-origin"
                    ]
                    message["headers"] = headers + extra
                if vary:
                    _add_vary(message, b"Origin")
            await send(message)

        return send_with_cors


def _add_vary(message: Message, name: bytes) -> None:
    """Add ``name`` to the response's Vary header (merged into an existing one)."""
    headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
    for index, (key, value) in enumerate(headers):
        if key.lower() == b"vary":
            names = [v.strip().lower() for v in value.split(b",")]
            if name.lower() not in names and b"*" not in names:
                headers[index] = (key, value + b", " + name)
            message["headers"] = headers
            return
    headers.append((b"vary", name))
    message["headers"] = headers
