"""TrustedHostMiddleware: exact hosts, wildcard subdomains, ports, www redirect, WebSockets."""

from __future__ import annotations

import pytest

from FasterAPI import Faster, WebSocket, WebSocketDisconnect
from FasterAPI.middleware.trustedhost import TrustedHostMiddleware
from FasterAPI.testclient import TestClient


def make_client(hosts: list[str], **options: bool) -> TestClient:
    app = Faster()
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, **options)

    @app.get("/path")
    async def path() -> dict[str, bool]:
        return {"ok": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("in")
        await websocket.close()

    return TestClient(app, follow_redirects=False)


def test_allowed_hosts_pass_and_others_get_400() -> None:
    client = make_client(["example.com", "*.example.org"])
    assert client.get("/path", headers={"host": "example.com"}).status_code == 200
    assert client.get("/path", headers={"host": "example.com:8000"}).status_code == 200
    assert client.get("/path", headers={"host": "api.example.org"}).status_code == 200
    for host in ("evil.com", "example.com.evil.com", "notexample.org"):
        response = client.get("/path", headers={"host": host})
        assert response.status_code == 400, host
        assert response.text == "Invalid host header"


def test_www_redirect_keeps_path_and_query() -> None:
    client = make_client(["www.example.com"])
    response = client.get("http://example.com/path?x=1")
    assert response.status_code == 307
    assert response.headers["location"] == "http://www.example.com/path?x=1"
    assert make_client(["www.example.com"], www_redirect=False).get("http://example.com/path").status_code == 400


def test_websocket_handshake_with_a_bad_host_is_refused() -> None:
    client = make_client(["example.com"])
    with client.websocket_connect("ws://example.com/ws") as session:
        assert session.receive_text() == "in"
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("ws://evil.com/ws"):
        pass
    assert refused.value.code == 1008


def test_a_bad_wildcard_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="wildcard"):
        TrustedHostMiddleware(Faster(), allowed_hosts=["example.*"])


def test_ipv6_host_with_port() -> None:
    client = make_client(["[::1]"])
    assert client.get("/path", headers={"host": "[::1]:8000"}).status_code == 200
