"""HTTPSRedirectMiddleware: http to https with 307, standard ports dropped; ws refused."""

from __future__ import annotations

import pytest

from FasterAPI import Faster, WebSocket, WebSocketDisconnect
from FasterAPI.middleware.httpsredirect import HTTPSRedirectMiddleware
from FasterAPI.testclient import TestClient


def make_client(base_url: str = "http://testserver") -> TestClient:
    app = Faster()
    app.add_middleware(HTTPSRedirectMiddleware)

    @app.post("/items")
    async def items() -> dict[str, bool]:
        return {"ok": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    return TestClient(app, base_url=base_url, follow_redirects=False)


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("http://example.com/items?q=1", "https://example.com/items?q=1"),
        ("http://example.com:80/items", "https://example.com/items"),
        ("http://example.com:8080/items", "https://example.com:8080/items"),
    ],
)
def test_http_is_redirected_with_307(url: str, location: str) -> None:
    response = make_client().post(url)
    assert response.status_code == 307  # the method and body are kept
    assert response.headers["location"] == location


def test_https_passes_and_plain_websockets_are_refused() -> None:
    assert make_client("https://example.com").post("/items").json() == {"ok": True}
    with pytest.raises(WebSocketDisconnect), make_client().websocket_connect("ws://example.com/ws"):
        pass
    with make_client().websocket_connect("wss://example.com/ws"):
        pass
