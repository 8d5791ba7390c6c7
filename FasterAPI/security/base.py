"""What every security helper shares: its OpenAPI scheme and how it refuses a connection."""

from __future__ import annotations

from collections.abc import Mapping

from ..exceptions import HTTPException, WebSocketException
from ..openapi.models import SecurityScheme
from ..requests import HTTPConnection
from ..status import HTTP_401_UNAUTHORIZED, WS_1008_POLICY_VIOLATION
from ..websockets import WebSocket, WebSocketState

__all__ = ["SecurityBase", "refusal"]


class SecurityBase:
    """A security helper: ``model`` is its OpenAPI security scheme, ``scheme_name`` its key in
    ``components.securitySchemes`` (the class name unless given)."""

    model: SecurityScheme
    scheme_name: str
    auto_error: bool


def refusal(conn: HTTPConnection, detail: str, headers: Mapping[str, str]) -> Exception:
    """The exception that refuses ``conn``: an HTTP 401 with ``headers`` (``WWW-Authenticate``);
    for a WebSocket already accepted, a close with 1008 (the handshake's answer is gone)."""
    if isinstance(conn, WebSocket) and conn.application_state is not WebSocketState.CONNECTING:
        return WebSocketException(WS_1008_POLICY_VIOLATION, detail)
    return HTTPException(HTTP_401_UNAUTHORIZED, detail, headers=headers)
