"""Precise aliases for the ASGI interface."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

#: A scope extension a server (our TestClient) sets to have the app raise, after it has
#: answered, the exceptions no handler took, as Starlette's apps do: the test sees them.
#: Without it the app logs them and ends the connection, and nothing reaches the server.
RAISE_EXCEPTIONS_EXTENSION = "fasterapi.raise_exceptions"


class WebSocketState(enum.Enum):
    """One side of a WebSocket: the client's (what we received) or the app's (what we sent).

    ``RESPONSE`` is the app's side while it sends an HTTP response instead of accepting
    (``send_denial_response``); it ends as ``DISCONNECTED``.
    """

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2
    RESPONSE = 3
