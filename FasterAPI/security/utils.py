"""Reading credentials out of a request's headers."""

from __future__ import annotations

from ..requests import HTTPConnection
from ..websockets import WebSocket

__all__ = ["WEBSOCKET_BEARER_SUBPROTOCOL", "bearer_token", "get_authorization_scheme_param"]

#: A browser cannot set headers on a WebSocket: it offers the subprotocols ``bearer`` and then
#: the token (``new WebSocket(url, ["bearer", token])``), and the endpoint accepts with
#: ``subprotocol="bearer"``.
WEBSOCKET_BEARER_SUBPROTOCOL = "bearer"


def get_authorization_scheme_param(authorization: str | None) -> tuple[str, str]:
    """``"Bearer abc"`` -> ``("Bearer", "abc")``; ``("", "")`` when there is nothing."""
    if not authorization:
        return "", ""
    scheme, _, param = authorization.strip().partition(" ")
    return scheme, param.strip()


def bearer_token(conn: HTTPConnection) -> tuple[str, str]:
    """(scheme, token) from ``Authorization``, or on a WebSocket from its offered subprotocols."""
    scheme, token = get_authorization_scheme_param(conn.headers.get("authorization"))
    if scheme or not isinstance(conn, WebSocket):
        return scheme, token
    offered: list[str] = list(conn.scope.get("subprotocols") or ())
    if WEBSOCKET_BEARER_SUBPROTOCOL in offered:
        index = offered.index(WEBSOCKET_BEARER_SUBPROTOCOL)
        if index + 1 < len(offered):
            return "Bearer", offered[index + 1]
    return "", ""
