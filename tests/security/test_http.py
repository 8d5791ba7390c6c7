"""HTTPBearer and HTTPBasic on HTTP routes and WebSockets (TestClient, then uvicorn + a real client)."""

from __future__ import annotations

import base64

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from FasterAPI import Depends, Faster, WebSocket, status
from FasterAPI.exceptions import WebSocketDisconnect
from FasterAPI.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from FasterAPI.testclient import TestClient, WebSocketDenialResponse
from tests.servers import run_uvicorn

app = Faster()
bearer = HTTPBearer()
maybe_bearer = HTTPBearer(auto_error=False)
basic = HTTPBasic(realm="shop")
maybe_basic = HTTPBasic(auto_error=False)


@app.get("/bearer")
async def with_bearer(credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> list[str]:
    return [credentials.scheme, credentials.credentials]


@app.get("/maybe-bearer")
async def with_maybe_bearer(credentials: HTTPAuthorizationCredentials | None = Depends(maybe_bearer)) -> str | None:
    return None if credentials is None else credentials.credentials


@app.get("/basic")
async def with_basic(credentials: HTTPBasicCredentials = Depends(basic)) -> list[str]:
    return [credentials.username, credentials.password]


@app.get("/maybe-basic")
async def with_maybe_basic(credentials: HTTPBasicCredentials | None = Depends(maybe_basic)) -> str | None:
    return None if credentials is None else credentials.username


@app.websocket("/ws")
async def ws_bearer(ws: WebSocket, credentials: HTTPAuthorizationCredentials = Depends(bearer)) -> None:
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol="bearer" if "bearer" in offered else None)
    await ws.send_json({"token": credentials.credentials})
    await ws.close()


@app.websocket("/ws/recheck")
async def ws_recheck(ws: WebSocket) -> None:
    """Checks credentials only after accepting (a token re-checked while the socket lives)."""
    await ws.accept()
    await bearer(ws)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_bearer_on_http() -> None:
    with TestClient(app) as client:
        assert client.get("/bearer", headers={"Authorization": "Bearer abc.def"}).json() == ["Bearer", "abc.def"]
        missing = client.get("/bearer")
        assert missing.status_code == 401
        assert missing.json() == {"detail": "Not authenticated"}
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.get("/bearer", headers={"Authorization": "Basic abc"})
        assert wrong.status_code == 401 and wrong.json() == {"detail": "Invalid authentication credentials"}
        assert client.get("/bearer", headers={"Authorization": "Bearer"}).status_code == 401
        # auto_error=False: None instead of a 401.
        assert client.get("/maybe-bearer").json() is None
        assert client.get("/maybe-bearer", headers={"Authorization": "Token x"}).json() is None
        assert client.get("/maybe-bearer", headers={"Authorization": "bearer x"}).json() == "x"


def test_basic_on_http() -> None:
    with TestClient(app) as client:
        assert client.get("/basic", headers={"Authorization": _basic("ann", "p:w")}).json() == ["ann", "p:w"]
        missing = client.get("/basic")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Basic realm="shop"'
        for broken in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
            refused = client.get("/basic", headers={"Authorization": broken})
            assert refused.status_code == 401
            assert refused.json() == {"detail": "Invalid authentication credentials"}
        assert client.get("/maybe-basic").json() is None
        # A malformed header is refused even when the credentials are optional (as FastAPI).
        assert client.get("/maybe-basic", headers={"Authorization": "Basic !!!"}).status_code == 401


def test_bearer_on_a_websocket_from_the_header_or_the_subprotocols() -> None:
    with TestClient(app) as client:
        with client.websocket_connect("/ws", headers={"Authorization": "Bearer from-header"}) as ws:
            assert ws.receive_json() == {"token": "from-header"}
        with client.websocket_connect("/ws", subprotocols=["bearer", "from-protocol"]) as ws:
            assert ws.accepted_subprotocol == "bearer"
            assert ws.receive_json() == {"token": "from-protocol"}
        # Refused before accept(): the handshake gets the 401 itself.
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/ws", subprotocols=["bearer"]):
                pass  # pragma: no cover - refused
        assert denied.value.status_code == 401
        assert denied.value.headers["www-authenticate"] == "Bearer"


def test_a_refusal_after_accept_closes_with_1008() -> None:
    with TestClient(app) as client, client.websocket_connect("/ws/recheck") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == status.WS_1008_POLICY_VIOLATION
    assert closed.value.reason == "Not authenticated"


def test_a_browser_style_token_under_uvicorn() -> None:
    """The real server: the token offered as a subprotocol, and a 401 in place of the handshake."""
    with run_uvicorn("tests.apps.openapi_app:app") as url:
        with connect(f"{url.ws_url}/ws/private", subprotocols=["bearer", "tok-123"], open_timeout=30) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "bearer"
            assert ws.recv(timeout=30) == '{"token":"tok-123"}'
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{url.ws_url}/ws/private", open_timeout=30)
        assert refused.value.response.status_code == 401
        assert refused.value.response.headers["WWW-Authenticate"] == "Bearer"
