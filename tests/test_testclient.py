"""The HTTP side of ``TestClient``: requests it builds, responses it collects, redirects, cookies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from FasterAPI import Faster, RedirectResponse, Request, Response
from FasterAPI.testclient import TestClient, TestResponse
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
