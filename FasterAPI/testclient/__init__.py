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

from .client import TestClient
from .responses import TestResponse, WebSocketDenialResponse
from .websocket import WebSocketTestSession

__all__ = ["TestClient", "TestResponse", "WebSocketDenialResponse", "WebSocketTestSession"]
