"""What the app answered a TestClient: an HTTP response, or a refused WebSocket handshake."""

from __future__ import annotations

from typing import Any

import msgspec

from .. import status
from ..datastructures import Headers
from ..exceptions import WebSocketDisconnect

__all__ = ["TestResponse", "WebSocketDenialResponse"]


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
