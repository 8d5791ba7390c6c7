"""API keys from a header, the query string and a cookie, on HTTP and on WebSockets."""

from __future__ import annotations

import pytest

from FasterAPI import Depends, Faster, WebSocket
from FasterAPI.security import APIKeyCookie, APIKeyHeader, APIKeyQuery
from FasterAPI.testclient import TestClient, WebSocketDenialResponse

app = Faster()
in_header = APIKeyHeader(name="X-API-Key")
in_query = APIKeyQuery(name="token")
in_cookie = APIKeyCookie(name="session")
optional = APIKeyHeader(name="X-API-Key", auto_error=False)


@app.get("/header")
async def header(key: str = Depends(in_header)) -> str:
    return key


@app.get("/query")
async def query(key: str = Depends(in_query)) -> str:
    return key


@app.get("/cookie")
async def cookie(key: str = Depends(in_cookie)) -> str:
    return key


@app.get("/optional")
async def maybe(key: str | None = Depends(optional)) -> str | None:
    return key


@app.websocket("/ws/query")
async def ws_query(ws: WebSocket, key: str = Depends(in_query)) -> None:
    await ws.accept()
    await ws.send_text(key)
    await ws.close()


@app.websocket("/ws/cookie")
async def ws_cookie(ws: WebSocket, key: str = Depends(in_cookie)) -> None:
    await ws.accept()
    await ws.send_text(key)
    await ws.close()


@pytest.mark.parametrize(
    ("path", "given"),
    [
        ("/header", {"headers": {"x-api-key": "k1"}}),
        ("/query", {"params": {"token": "k1"}}),
        ("/cookie", {"cookies": {"session": "k1"}}),
    ],
)
def test_the_key_where_it_is_expected_or_a_401(path: str, given: dict[str, dict[str, str]]) -> None:
    with TestClient(app) as client:
        assert client.get(path, **given).json() == "k1"  # type: ignore[arg-type]
        missing = client.get(path)
        assert missing.status_code == 401
        assert missing.json() == {"detail": "Not authenticated"}
        assert missing.headers["www-authenticate"] == "APIKey"
        assert client.get(path, **{k: {n: ""} for k, v in given.items() for n in v}).status_code == 401  # type: ignore[arg-type]


def test_auto_error_false_gives_none() -> None:
    with TestClient(app) as client:
        assert client.get("/optional").json() is None
        assert client.get("/optional", headers={"X-API-Key": "k"}).json() == "k"


def test_a_websocket_takes_its_key_from_the_query_or_a_cookie() -> None:
    with TestClient(app) as client:
        with client.websocket_connect("/ws/query?token=q1") as ws:
            assert ws.receive_text() == "q1"
        with client.websocket_connect("/ws/cookie", cookies={"session": "c1"}) as ws:
            assert ws.receive_text() == "c1"
        for path in ("/ws/query", "/ws/cookie"):
            with pytest.raises(WebSocketDenialResponse) as denied:
                with client.websocket_connect(path):
                    pass  # pragma: no cover - refused
            assert denied.value.status_code == 401
            assert denied.value.json() == {"detail": "Not authenticated"}
