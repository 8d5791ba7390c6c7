"""The WebSocket handshake's scope and the frameless proxy-headers app (FasterAPI.server.handshake)."""

from __future__ import annotations

from typing import Any

import pytest
from uvicorn.config import Config
from websockets.datastructures import Headers
from websockets.http11 import Request

from FasterAPI.server import handshake
from FasterAPI.server.handshake import frameless_app, websocket_scope


def request(path: str = "/ws?token=abc", **extra: str) -> Request:
    headers = Headers()
    headers["Host"] = "chat.example"
    headers["Upgrade"] = "websocket"
    headers["Connection"] = "Upgrade"
    headers["Sec-WebSocket-Key"] = extra.pop("key", "dGhlIHNhbXBsZSBub25jZQ==")
    headers["Sec-WebSocket-Version"] = "13"
    for name, value in extra.items():
        headers[name.replace("_", "-")] = value
    return Request(path, headers)


def scope_of(req: Request, **options: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "asgi_version": "3.0",
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "app_state": {},
    }
    return websocket_scope(req, **{**settings, **options})


def test_the_scope_is_uvicorns_with_lowercased_header_names() -> None:
    offered = request(Sec_WebSocket_Protocol="fasterapi.v1.json, bearer", User_Agent="tester/1")
    scope = scope_of(offered, root_path="/api")
    assert scope["type"] == "websocket" and scope["http_version"] == "1.1"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (scope["path"], scope["raw_path"], scope["query_string"]) == ("/api/ws", b"/api/ws", b"token=abc")
    assert scope["subprotocols"] == ["fasterapi.v1.json", "bearer"]
    assert dict(scope["headers"])[b"host"] == b"chat.example"
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert (b"user-agent", b"tester/1") in scope["headers"]
    assert "websocket.http.response" in scope["extensions"]


def test_repeating_header_pairs_are_shared_and_per_connection_values_are_not() -> None:
    first = scope_of(request(key="a2V5LW9uZS0xMjM0NTY3OA=="))
    second = scope_of(request(key="a2V5LXR3by0xMjM0NTY3OA=="))
    shared = {name for (name, _), (_, _) in zip(first["headers"], second["headers"], strict=True)}
    for one, two in zip(first["headers"], second["headers"], strict=True):
        if one[0] == b"sec-websocket-key":
            assert one != two and ("Sec-WebSocket-Key", one[1].decode()) not in handshake._pairs
        else:
            assert one is two, one  # the same tuple, not an equal copy
    assert b"host" in shared
    assert first["asgi"] is second["asgi"]
    # Per-connection containers stay per connection.
    assert first["headers"] is not second["headers"] and first["state"] is not second["state"]
    assert first["extensions"] is not second["extensions"]


def test_the_shared_pairs_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handshake, "_pairs", {})
    monkeypatch.setattr(handshake, "MAX_SHARED", 10)
    for number in range(50):
        scope = scope_of(request(Origin=f"https://site{number}.example"))
        assert (b"origin", f"https://site{number}.example".encode()) in scope["headers"]
    assert len(handshake._pairs) == 10
    long_value = "x" * (handshake.MAX_SHARED_VALUE + 1)
    monkeypatch.setattr(handshake, "_pairs", {})
    scope_of(request(User_Agent=long_value))
    assert ("User-Agent", long_value) not in handshake._pairs


async def inner(scope: Any, receive: Any, send: Any) -> None:
    return None


def loaded(**options: Any) -> Config:
    config = Config(app=inner, lifespan="off", **options)
    config.load()
    return config


def proxied_scope(client: str, **headers: bytes) -> dict[str, Any]:
    return {
        "type": "websocket",
        "scheme": "ws",
        "client": (client, 50000),
        "headers": [(name.replace("_", "-").encode(), value) for name, value in headers.items()],
    }


def test_frameless_proxy_headers_rewrite_a_trusted_peers_scope_and_return_the_apps_coroutine() -> None:
    app = frameless_app(loaded(proxy_headers=True, forwarded_allow_ips="10.0.0.1"))
    assert frameless_app(loaded(proxy_headers=True)) is not app  # one per config
    scope = proxied_scope("10.0.0.1", x_forwarded_for=b"203.0.113.7", x_forwarded_proto=b"https")
    coroutine = app(scope, None, None)
    try:
        assert coroutine.cr_code is inner.__code__  # type: ignore[attr-defined]
    finally:
        coroutine.close()  # type: ignore[attr-defined]
    assert scope["client"] == ("203.0.113.7", 0) and scope["scheme"] == "wss"

    untrusted = proxied_scope("198.51.100.9", x_forwarded_for=b"203.0.113.7", x_forwarded_proto=b"https")
    app(untrusted, None, None).close()  # type: ignore[attr-defined]
    assert untrusted["client"] == ("198.51.100.9", 50000) and untrusted["scheme"] == "ws"


def test_without_proxy_headers_the_app_is_used_as_loaded() -> None:
    config = loaded(proxy_headers=False)
    assert frameless_app(config) is config.loaded_app
