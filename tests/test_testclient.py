"""The HTTP side of ``TestClient``: requests it builds, responses it collects, redirects, cookies."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from FasterAPI import Faster, RedirectResponse, Request, Response, WebSocket, WebSocketDisconnect
from FasterAPI.testclient import TestClient, TestResponse, WebSocketDenialResponse, WebSocketTestSession
from FasterAPI.types import Message, Receive, Scope, Send

app = Faster()


@app.api_route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def echo(request: Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.url.path,
        "query": request.query_params.multi_items(),
        "headers": request.headers.items(),
        "body": (await request.body()).decode(),
    }


@app.get("/set-cookie")
async def set_cookie(value: str = "1") -> Response:
    response = Response("set")
    response.set_cookie("token", value)
    return response


@app.get("/clear-cookie")
async def clear_cookie() -> Response:
    response = Response("cleared")
    response.delete_cookie("token")
    return response


@app.get("/read-cookie")
async def read_cookie(request: Request) -> dict[str, str]:
    return request.cookies


@app.api_route("/redirect/{code}", methods=["GET", "POST"])
async def redirect(code: int) -> RedirectResponse:
    return RedirectResponse("/echo?from=redirect", status_code=code)


@app.get("/loop")
async def loop() -> RedirectResponse:
    return RedirectResponse("/loop")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(app, headers={"X-Default": "d", "User-Agent": "default-agent"}) as client:
        yield client


def _headers(response: TestResponse) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in response.json()["headers"]:
        found.setdefault(key, []).append(value)
    return found


def test_every_method(client: TestClient) -> None:
    for method in ("get", "post", "put", "patch", "delete", "options"):
        response = getattr(client, method)("/echo")
        assert response.status_code == 200
        assert response.json()["method"] == method.upper()
    head = client.head("/echo")
    assert head.status_code == 200 and head.content == b""


def test_params_and_query_string(client: TestClient) -> None:
    response = client.get("/echo?a=1", params=[("b", "2"), ("b", "3")])
    assert response.json()["query"] == [["a", "1"], ["b", "2"], ["b", "3"]]
    response = client.get("/echo", params={"tags": ["x", "y"], "q": "a b&c"})
    assert response.json()["query"] == [["tags", "x"], ["tags", "y"], ["q", "a b&c"]]
    assert response.url == "http://testserver/echo?tags=x&tags=y&q=a+b%26c"


def test_headers_default_override_and_repeat(client: TestClient) -> None:
    headers = _headers(client.get("/echo"))
    assert headers["x-default"] == ["d"]
    assert headers["user-agent"] == ["default-agent"]
    assert headers["host"] == ["testserver"]

    headers = _headers(client.get("/echo", headers={"user-agent": "mine"}))
    assert headers["user-agent"] == ["mine"]
    assert headers["x-default"] == ["d"]

    headers = _headers(client.get("/echo", headers=[("X-Many", "1"), ("X-Many", "2"), ("Host", "other.test")]))
    assert headers["x-many"] == ["1", "2"]
    assert headers["host"] == ["other.test"]


def test_json_and_content_bodies(client: TestClient) -> None:
    response = client.post("/echo", json={"k": [1, "2"]})
    assert response.json()["body"] == '{"k":[1,"2"]}'
    headers = _headers(response)
    assert headers["content-type"] == ["application/json"]
    assert headers["content-length"] == [str(len('{"k":[1,"2"]}'))]

    response = client.put("/echo", content="text body", headers={"Content-Type": "text/plain"})
    assert response.json()["body"] == "text body"
    assert _headers(response)["content-type"] == ["text/plain"]
    assert client.post("/echo", content=b"\x00\x01").json()["body"] == "\x00\x01"
    assert "content-length" not in _headers(client.post("/echo"))


def test_cookie_jar() -> None:
    client = TestClient(app)
    try:
        assert client.get("/read-cookie").json() == {}
        client.get("/set-cookie?value=abc")
        assert client.cookies == {"token": "abc"}
        assert client.get("/read-cookie").json() == {"token": "abc"}
        assert client.get("/read-cookie", cookies={"extra": "e"}).json() == {"token": "abc", "extra": "e"}
        client.get("/clear-cookie")
        assert client.cookies == {}
        assert client.get("/read-cookie").json() == {}
    finally:
        client.close()


def test_redirects(client: TestClient) -> None:
    response = client.get("/redirect/307")
    assert response.status_code == 200
    assert response.json()["query"] == [["from", "redirect"]]
    assert response.url == "http://testserver/echo?from=redirect"

    response = client.get("/redirect/302", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/echo?from=redirect"

    # 307 keeps the method and body; 303 turns into a GET without one.
    assert client.post("/redirect/307", content=b"data").json()["body"] == "data"
    see_other = client.post("/redirect/303", content=b"data").json()
    assert (see_other["method"], see_other["body"]) == ("GET", "")

    with pytest.raises(RuntimeError, match="Too many redirects"):
        client.get("/loop")


def test_client_level_follow_redirects_off() -> None:
    client = TestClient(app, follow_redirects=False)
    try:
        assert client.get("/redirect/301").status_code == 301
        assert client.get("/redirect/301", follow_redirects=True).status_code == 200
    finally:
        client.close()


def test_response_helpers(client: TestClient) -> None:
    response = client.get("/echo")
    assert response.is_success
    assert "GET" in response.text
    assert repr(response) == "<TestResponse [200]>"
    missing = client.get("/nowhere")
    assert not missing.is_success
    assert missing.json() == {"detail": "Not Found"}


def test_scope_the_app_sees() -> None:
    scopes: list[Scope] = []

    async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return
        scopes.append(scope)
        message = await receive()
        assert message == {"type": "http.request", "body": b"abc", "more_body": False}
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1"), (b"x-a", b"2")]})
        await send({"type": "http.response.body", "body": b"part1-", "more_body": True})
        await send({"type": "http.response.body", "body": b"part2"})

    client = TestClient(raw_app, base_url="http://api.test:8080", client=("1.2.3.4", 99))
    try:
        response = client.post("/a%20b/c?x=1", content=b"abc")
    finally:
        client.close()
    assert response.content == b"part1-part2"
    assert response.headers.getlist("x-a") == ["1", "2"]
    scope = scopes[0]
    assert scope["method"] == "POST"
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == b"/a%20b/c"
    assert scope["query_string"] == b"x=1"
    assert scope["scheme"] == "http"
    assert scope["server"] == ["api.test", 8080]
    assert scope["client"] == ["1.2.3.4", 99]
    assert (b"host", b"api.test:8080") in scope["headers"]


def test_app_errors_reach_the_test() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("from the app")

    async def double_start(scope: Scope, receive: Receive, send: Send) -> None:
        start: Message = {"type": "http.response.start", "status": 200, "headers": []}
        await send(start)
        await send(start)

    for asgi, error, match in (
        (silent, RuntimeError, "without sending a response"),
        (broken, ValueError, "from the app"),
        (double_start, RuntimeError, "sent twice"),
    ):
        client = TestClient(asgi)
        try:
            with pytest.raises(error, match=match):
                client.get("/")
        finally:
            client.close()


def test_close_stops_the_event_loop_thread() -> None:
    before = {t.ident for t in threading.enumerate() if t.name == "testclient-loop"}
    client = TestClient(app)
    client.get("/echo")
    mine = [t for t in threading.enumerate() if t.name == "testclient-loop" and t.ident not in before]
    assert len(mine) == 1
    client.close()
    assert not mine[0].is_alive()


# -- WebSocket sessions: what FastAPI's tests expect of Starlette's TestClient -------------------

ws_app = Faster()


@ws_app.websocket("/handshake")
async def handshake(ws: WebSocket) -> None:
    await ws.accept(subprotocol=ws["subprotocols"][0] if ws["subprotocols"] else None)
    await ws.send_json(
        {
            "headers": ws.headers.items(),
            "query": ws.query_params.multi_items(),
            "cookies": ws.cookies,
            "subprotocols": ws["subprotocols"],
        }
    )
    await ws.close()


@ws_app.websocket("/echo")
async def echo_forever(ws: WebSocket) -> None:
    await ws.accept()
    while True:
        await ws.send_text(await ws.receive_text())


pushing: dict[str, Any] = {"ended": threading.Event()}


@ws_app.websocket("/push")
async def push_only(ws: WebSocket) -> None:
    await ws.accept()
    await ws.join("news")
    try:
        while True:
            await ws.send_text("tick")
            await asyncio.sleep(3600)  # never receives: only the client's leaving ends it
    finally:
        pushing["ended"].set()


def _handshake(session: WebSocketTestSession) -> dict[str, Any]:
    data: dict[str, Any] = session.receive_json()
    data["headers"] = {key: value for key, value in data["headers"]}
    return data


def test_websocket_connect_takes_cookies_params_headers_and_subprotocols() -> None:
    with TestClient(ws_app, cookies={"session": "s1"}, headers={"X-Default": "d"}) as client:
        with client.websocket_connect(
            "/handshake?a=1",
            subprotocols=["chat.v2", "chat.v1"],
            params={"b": ["2", "3"]},
            headers=[("X-Many", "1"), ("X-Default", "mine")],
            cookies={"extra": "e"},
        ) as session:
            data = _handshake(session)
            assert session.accepted_subprotocol == "chat.v2"
    assert data["query"] == [["a", "1"], ["b", "2"], ["b", "3"]]
    assert data["cookies"] == {"session": "s1", "extra": "e"}
    assert data["subprotocols"] == ["chat.v2", "chat.v1"]
    headers = data["headers"]
    assert headers["x-many"] == "1" and headers["x-default"] == "mine"
    assert headers["sec-websocket-protocol"] == "chat.v2, chat.v1"


def test_the_handshake_carries_what_a_browser_sends() -> None:
    with TestClient(ws_app) as client:
        with client.websocket_connect("/handshake") as first:
            one = _handshake(first)["headers"]
        with client.websocket_connect("/handshake", headers={"sec-websocket-protocol": "v9"}) as second:
            two = _handshake(second)
    assert one["user-agent"] == "testclient"
    assert (one["upgrade"], one["connection"], one["sec-websocket-version"]) == ("websocket", "upgrade", "13")
    key = base64.b64decode(one["sec-websocket-key"])
    assert len(key) == 16 and two["headers"]["sec-websocket-key"] != one["sec-websocket-key"]
    assert two["subprotocols"] == ["v9"]  # read from the header, as a server does


def test_leaving_raises_the_handlers_websocket_disconnect_as_fastapis_tests_expect() -> None:
    with TestClient(ws_app) as client:
        with pytest.raises(WebSocketDisconnect) as left:
            with client.websocket_connect("/echo") as session:
                session.send_text("hi")
                assert session.receive_text() == "hi"
        assert left.value.code == 1000
        with pytest.raises(WebSocketDisconnect) as left:
            with client.websocket_connect("/echo") as session:
                session.close(4100, "done")
        assert (left.value.code, left.value.reason) == (4100, "done")


def test_leaving_cancels_a_handler_that_is_not_receiving() -> None:
    pushing["ended"].clear()
    with TestClient(ws_app, timeout=10) as client:
        started = time.monotonic()
        with client.websocket_connect("/push") as session:
            assert session.receive_text() == "tick"
            assert client.portal.call(ws_app.room_size("news")) == 1
        assert pushing["ended"].is_set()  # its finally ran, at once, without an error to the test
        assert time.monotonic() - started < 5
        assert client.portal.call(ws_app.room_size("news")) == 0


def test_an_exception_leaving_the_block_is_not_replaced_by_the_apps() -> None:
    with TestClient(ws_app) as client:
        with pytest.raises(AssertionError) as failed:
            with client.websocket_connect("/echo") as session:
                session.send_text("hi")
                assert session.receive_text() == "not what came back"
    assert "The WebSocket app also raised WebSocketDisconnect(code=1000" in "".join(failed.value.__notes__)


def test_receive_returns_the_close_message_and_typed_receives_raise() -> None:
    with TestClient(ws_app) as client, client.websocket_connect("/handshake") as session:
        session.receive_json()
        assert session.receive() == {"type": "websocket.close", "code": 1000, "reason": ""}
        assert (session.close_code, session.close_reason) == (1000, "")


def test_a_denial_response_is_a_websocket_disconnect() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send_denial_response(Response("gone", status_code=410))

    with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/ws"):
                pass  # pragma: no cover - refused
    assert isinstance(refused.value, WebSocketDenialResponse)
    assert (refused.value.status_code, refused.value.content, refused.value.code) == (410, b"gone", 1006)
