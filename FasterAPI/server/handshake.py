"""The ASGI side of a WebSocket handshake, sized for many idle connections.

Everything here lives as long as its socket: an idle worker holds tens of thousands of
scopes and app tasks, so what is the same for every connection is made once and shared.

- :func:`websocket_scope` builds the scope uvicorn's websockets-sansio protocol would, but
  header names are lowercased (as ASGI asks) and the header pairs that repeat across clients
  (``Upgrade: websocket``, the ``Host``, the browser's ``User-Agent`` and ``Origin``, ...) are
  one shared tuple of bytes, as is the ``asgi`` entry; per connection that is about a
  kilobyte less than a tuple and two byte strings per header.
- :func:`frameless_app` drops the coroutine frame uvicorn's ``ProxyHeadersMiddleware`` keeps
  suspended for each socket's life, with the scope still rewritten by uvicorn's own code.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from websockets.version import version as websockets_version

if TYPE_CHECKING:
    from uvicorn.config import Config
    from websockets.http11 import Request

__all__ = ["frameless_app", "shared_addresses", "websocket_scope"]

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

#: Headers whose values repeat across connections: the same proxy, site, browser build or
#: client library sends the same bytes. Per-connection values (keys, cookies, tokens) are
#: never kept.
SHARED_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "origin",
        "user-agent",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "pragma",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "x-forwarded-proto",
    }
)
#: Bound on the shared pairs: a client can send any value, so past this new ones are not kept.
MAX_SHARED = 4096
#: Longest header value worth sharing.
MAX_SHARED_VALUE = 512

# websockets 17 documents that header values are ISO-8859-1; before it used surrogateescape.
_ERRORS = "strict" if websockets_version >= "17.0" else "surrogateescape"
_VALUE_ENCODING = "latin-1" if websockets_version >= "17.0" else "ascii"

_pairs: dict[tuple[str, str], tuple[bytes, bytes]] = {}
#: Header name as sent -> (the lowercased bytes, whether its values are shared).
_names: dict[str, tuple[bytes, bool]] = {}
_asgi: dict[str, dict[str, str]] = {}


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    pair = _pairs.get((name, value))
    if pair is not None:
        return pair
    known = _names.get(name)
    if known is None:
        lowered = name.lower()
        known = (lowered.encode("ascii"), lowered in SHARED_HEADERS)
        if len(_names) < MAX_SHARED:
            _names[name] = known
    raw_name, shared = known
    pair = (raw_name, value.encode(_VALUE_ENCODING, _ERRORS))
    if shared and len(value) <= MAX_SHARED_VALUE and len(_pairs) < MAX_SHARED:
        _pairs[(name, value)] = pair
    return pair


_addresses: dict[tuple[str, int | None], tuple[str, int | None]] = {}
_hosts: dict[str, str] = {}


def shared_addresses(
    server: tuple[str, int | None] | None, client: tuple[str, int] | None
) -> tuple[tuple[str, int | None] | None, tuple[str, int] | None]:
    """The connection's local and peer addresses, sharing what repeats.

    Every connection accepted on one listening socket has the same local address, and many
    peers share a host (one proxy, one NAT): one tuple and one string serve them all.
    """
    if server is not None:
        known = _addresses.get(server)
        if known is not None:
            server = known
        elif len(_addresses) < MAX_SHARED:
            _addresses[server] = server
    if client is not None:
        host = _hosts.get(client[0])
        if host is None:
            host = client[0]
            if len(_hosts) < MAX_SHARED:
                _hosts[host] = host
        client = (host, client[1])
    return server, client


def websocket_scope(
    request: Request,
    *,
    asgi_version: str,
    scheme: str,
    server: tuple[str, int | None] | None,
    client: tuple[str, int] | None,
    root_path: str,
    app_state: dict[str, Any],
) -> dict[str, Any]:
    """The ASGI ``websocket`` scope of a handshake request websockets accepted."""
    headers = [_header(name, value) for name, value in request.headers.raw_items()]
    raw_path, _, query_string = request.path.partition("?")
    subprotocols: list[str] = []
    for header in request.headers.get_all("Sec-WebSocket-Protocol"):
        subprotocols.extend(token.strip() for token in header.split(","))
    asgi = _asgi.get(asgi_version)
    if asgi is None:
        asgi = _asgi[asgi_version] = {"version": asgi_version, "spec_version": "2.4"}
    return {
        "type": "websocket",
        "asgi": asgi,
        "http_version": "1.1",
        "scheme": scheme,
        "server": server,
        "client": client,
        "root_path": root_path,
        "path": root_path + unquote(raw_path),
        "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
        "query_string": query_string.encode("ascii"),
        "headers": headers,
        "subprotocols": subprotocols,
        "state": app_state.copy(),
        "extensions": {"websocket.http.response": {}},
    }


class _ProxyHeaders:
    """``ProxyHeadersMiddleware`` that returns the app's coroutine instead of awaiting it.

    uvicorn's middleware only rewrites ``client`` and ``scheme`` and then awaits the app, so
    its frame stays suspended above the app for as long as the socket is open. Here its own
    code rewrites the scope (run to its end at once around an app that does nothing), and
    the real app's coroutine is handed back for the server to await directly.
    """

    __slots__ = ("app", "rewrite")

    def __init__(self, middleware: ProxyHeadersMiddleware) -> None:
        self.app: ASGIApp = middleware.app
        self.rewrite = ProxyHeadersMiddleware(_done, trusted_hosts="*")
        self.rewrite.trusted_hosts = middleware.trusted_hosts

    def __call__(self, scope: Any, receive: Any, send: Any) -> Awaitable[None]:
        coroutine = self.rewrite(scope, receive, send)
        try:
            coroutine.send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - _done never suspends
            coroutine.close()
            raise RuntimeError("ProxyHeadersMiddleware suspended before calling its app")
        return self.app(scope, receive, send)


async def _done(scope: Any, receive: Any, send: Any) -> None:
    return None


_frameless: weakref.WeakKeyDictionary[Config, ASGIApp] = weakref.WeakKeyDictionary()


def frameless_app(config: Config) -> ASGIApp:
    """``config.loaded_app``, with uvicorn's proxy-headers middleware made frameless."""
    app = _frameless.get(config)
    if app is None:
        loaded: ASGIApp = config.loaded_app
        app = _ProxyHeaders(loaded) if type(loaded) is ProxyHeadersMiddleware else loaded
        _frameless[config] = app
    return app
