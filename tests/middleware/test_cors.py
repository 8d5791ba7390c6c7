"""CORSMiddleware: preflights, actual requests, credentials, Vary; and a real browser."""

from __future__ import annotations

import pytest

from FasterAPI import Faster, WebSocket, WebSocketDisconnect
from FasterAPI.middleware.cors import CORSMiddleware
from FasterAPI.responses import PlainTextResponse
from FasterAPI.testclient import TestClient
from FasterAPI.testclient.responses import TestResponse
from tests.browser_script import run_browser_script
from tests.servers import run_uvicorn

ORIGIN = "https://app.example.com"
OTHER = "https://evil.example.net"


def make_client(**options: object) -> TestClient:
    app = Faster()
    app.add_middleware(CORSMiddleware, **options)

    @app.get("/items")
    async def items() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/items")
    async def create() -> dict[str, bool]:
        return {"created": True}

    return TestClient(app)


def preflight(client: TestClient, origin: str, method: str = "POST", headers: str | None = None) -> TestResponse:
    request_headers = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        request_headers["access-control-request-headers"] = headers
    return client.options("/items", headers=request_headers)


def test_preflight_for_an_allowed_origin_lists_what_is_allowed() -> None:
    client = make_client(
        allow_origins=[ORIGIN], allow_methods=["GET", "POST"], allow_headers=["Authorization"], max_age=42
    )
    response = preflight(client, ORIGIN, "POST", "authorization, content-type")
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-methods"] == "GET, POST"
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert response.headers["access-control-max-age"] == "42"
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers


def test_preflight_refuses_an_origin_a_method_or_a_header_and_says_which() -> None:
    client = make_client(allow_origins=[ORIGIN], allow_methods=["GET"], allow_headers=[])
    response = preflight(client, OTHER, "GET")
    assert response.status_code == 400
    assert response.text == "Disallowed CORS origin"
    assert "access-control-allow-origin" not in response.headers
    assert preflight(client, ORIGIN, "DELETE").text == "Disallowed CORS method"
    assert preflight(client, ORIGIN, "GET", "authorization").text == "Disallowed CORS headers"
    # Safelisted headers need no permission.
    assert preflight(client, ORIGIN, "GET", "content-type, accept").status_code == 204


def test_actual_request_from_an_allowed_origin_gets_the_headers_and_others_get_none() -> None:
    client = make_client(allow_origins=[ORIGIN], expose_headers=["X-Total"])
    allowed = client.get("/items", headers={"origin": ORIGIN})
    assert allowed.json() == {"ok": True}
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert allowed.headers["access-control-expose-headers"] == "X-Total"
    assert allowed.headers["vary"] == "Origin"
    refused = client.get("/items", headers={"origin": OTHER})
    assert refused.status_code == 200  # the browser, not the server, withholds it from the page
    assert "access-control-allow-origin" not in refused.headers
    assert refused.headers["vary"] == "Origin"
    # A cache must not hand a same-origin answer to a cross-origin request either.
    assert client.get("/items").headers["vary"] == "Origin"


def test_wildcard_without_credentials_is_a_static_star() -> None:
    client = make_client(allow_origins=["*"])
    response = client.get("/items", headers={"origin": OTHER})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "vary" not in response.headers
    assert "vary" not in client.get("/items").headers


def test_credentials_echo_the_origin_method_and_headers_instead_of_wildcards() -> None:
    client = make_client(allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], allow_credentials=True)
    response = preflight(client, OTHER, "PATCH", "authorization, x-custom")
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == OTHER
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-methods"] == "PATCH"
    assert response.headers["access-control-allow-headers"] == "authorization, x-custom"
    actual = client.get("/items", headers={"origin": OTHER})
    assert actual.headers["access-control-allow-origin"] == OTHER
    assert actual.headers["access-control-allow-credentials"] == "true"
    assert actual.headers["vary"] == "Origin"


def test_allow_origin_regex_matches_the_whole_origin() -> None:
    client = make_client(allow_origin_regex=r"https://[a-z]+\.example\.com")
    assert client.get("/items", headers={"origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN
    sneaky = client.get("/items", headers={"origin": "https://app.example.com.evil.net"})
    assert "access-control-allow-origin" not in sneaky.headers


def test_vary_is_merged_into_the_apps_own() -> None:
    app = Faster()
    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN])

    @app.get("/")
    async def index() -> PlainTextResponse:
        return PlainTextResponse("x", headers={"vary": "Accept-Encoding"})

    response = TestClient(app).get("/", headers={"origin": ORIGIN})
    assert response.headers.getlist("vary") == ["Accept-Encoding, Origin"]


def test_websocket_origins_and_cors_origins_share_one_list() -> None:
    origins = [ORIGIN]
    app = Faster(allowed_origins=origins)
    app.add_middleware(CORSMiddleware, allow_origins=app.allowed_origins)

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    client = TestClient(app)
    assert client.get("/", headers={"origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN
    with client.websocket_connect("/ws", headers={"origin": ORIGIN}) as session:
        assert session.receive_text() == "hi"
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws", headers={"origin": OTHER}) as session:
        session.receive_text()


# -- a real browser ----------------------------------------------------------------------------

@pytest.mark.timeout(180)
@pytest.mark.parametrize("allowed", [True, False], ids=["allowed-origin", "other-origin"])
def test_a_page_on_another_origin_posts_with_authorization_only_when_cors_allows_it(allowed: bool) -> None:
    """The page is on http://localhost:PORT, the API on http://127.0.0.1:PORT: two origins.
    The browser preflights the POST (it carries Authorization) and obeys the answer."""
    regex = r"http://localhost:\d+" if allowed else r"http://elsewhere\.example"
    with run_uvicorn("tests.apps.middleware_app:app", env={"CORS_ORIGIN_REGEX": regex}) as server:
        result = run_browser_script("cors.mjs", f"http://localhost:{server.port}/page", f"{server}/api/echo")
    if allowed:
        assert result == {"ok": True, "status": 200, "body": {"authorization": "Bearer s3cret"}}
    else:
        assert result["ok"] is False
        assert "Failed to fetch" in str(result["error"])

