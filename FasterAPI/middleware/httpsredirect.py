"""``HTTPSRedirectMiddleware``: send ``http://`` requests to ``https://`` (and ``ws://`` to ``wss://``).

HTTP requests get a 307 (the method and body are kept) to the same URL over TLS, with the
standard port dropped. A plain WebSocket handshake is refused (403): a browser does not
follow redirects for WebSockets.
"""

from __future__ import annotations

from ..datastructures import URL
from ..responses import RedirectResponse
from ..types import ASGIApp, Receive, Scope, Send

__all__ = ["HTTPSRedirectMiddleware"]


class HTTPSRedirectMiddleware:
    """Redirect every request that did not come over TLS."""

    scope_types = frozenset({"http", "websocket"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheme = scope.get("scheme")
        if scope["type"] == "http" and scheme == "http":
            url = URL(scope=scope)
            host = url.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            port = url.port
            netloc = host if port in (None, 80, 443) else f"{host}:{port}"
            target = f"https://{netloc}{url.path}" + (f"?{url.query}" if url.query else "")
            await RedirectResponse(target, status_code=307)(scope, receive, send)
            return
        if scope["type"] == "websocket" and scheme == "ws":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "Use wss://"})
            return
        await self.app(scope, receive, send)
