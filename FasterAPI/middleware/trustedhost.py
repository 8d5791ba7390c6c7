"""``TrustedHostMiddleware``: refuse requests whose ``Host`` header is not one of yours.

A forged Host header is how cache poisoning and password-reset link hijacks start. Entries
are host names (``"example.com"``), wildcards for subdomains (``"*.example.com"``), or
``"*"`` for any. HTTP requests with another host get 400; WebSocket handshakes are refused
(403). With ``www_redirect``, a request for ``example.com`` when only ``www.example.com`` is
allowed is redirected there.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..datastructures import URL, Headers
from ..responses import PlainTextResponse, RedirectResponse, Response
from ..types import ASGIApp, Receive, Scope, Send

__all__ = ["TrustedHostMiddleware"]


class TrustedHostMiddleware:
    """Allow only ``allowed_hosts`` (default: any)."""

    scope_types = frozenset({"http", "websocket"})

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None = None, www_redirect: bool = True) -> None:
        hosts = list(allowed_hosts) if allowed_hosts is not None else ["*"]
        for pattern in hosts:
            if "*" in pattern[1:] or (pattern.startswith("*") and pattern != "*" and not pattern.startswith("*.")):
                raise ValueError(f"A wildcard host must look like '*.example.com', got {pattern!r}")
        self.app = app
        self.allow_any = "*" in hosts
        self.exact = frozenset(h.lower() for h in hosts if not h.startswith("*"))
        self.suffixes = tuple(h[1:].lower() for h in hosts if h.startswith("*."))
        self.www_redirect = www_redirect

    def host_allowed(self, host: str) -> bool:
        return self.allow_any or host in self.exact or host.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _host_name(Headers(scope=scope).get("host", ""))
        if self.host_allowed(host):
            await self.app(scope, receive, send)
            return
        response: Response
        if self.www_redirect and not host.startswith("www.") and self.host_allowed("www." + host):
            url = URL(scope=scope)
            netloc = "www." + url.netloc
            response = RedirectResponse(f"{url.scheme}://{netloc}{url.path}" + (f"?{url.query}" if url.query else ""))
        else:
            response = PlainTextResponse("Invalid host header", status_code=400)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": "Invalid host header"})
            return
        await response(scope, receive, send)


def _host_name(header: str) -> str:
    """The host of a Host header, lower-cased, without its port (``[::1]:8000`` -> ``[::1]``)."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[: end + 1] if end != -1 else header
    return header.partition(":")[0]
