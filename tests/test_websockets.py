"""The WebSocket class through the TestClient: state machine, typed I/O, errors, close codes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from FasterAPI import (
    Depends,
    Faster,
    HTTPException,
    InvalidJSONMessage,
    RequestValidationError,
    UnexpectedFrameType,
    WebSocket,
    WebSocketDisconnect,
    WebSocketException,
    WebSocketRequestValidationError,
    WebSocketState,
)
from FasterAPI.responses import JSONResponse, PlainTextResponse, Response
from FasterAPI.testclient import TestClient, WebSocketDenialResponse
from FasterAPI.types import Receive, Scope, Send
from tests.servers import run_uvicorn


def make_client(app: Faster) -> TestClient:
    return TestClient(app)


def test_accept_consumes_connect_so_first_receive_is_the_clients_message() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        assert ws.client_state is WebSocketState.CONNECTING
        await ws.accept()
        assert ws.client_state is WebSocketState.CONNECTED
        assert ws.application_state is WebSocketState.CONNECTED
        first = await ws.receive_text()
        await ws.send_text(f"first={first}")

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        session.send_text("hello")
        assert session.receive_text() == "first=hello"


def test_subprotocol_and_accept_headers_reach_the_client() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        offered = ws.scope["subprotocols"]
        await ws.accept(subprotocol=offered[-1], headers={"X-Server": "fasterapi"})
        await ws.send_text(",".join(offered))

    with make_client(app) as client:
        with client.websocket_connect("/ws", subprotocols=["chat.v1", "chat.v2"]) as session:
            assert session.accepted_subprotocol == "chat.v2"
            assert (b"x-server", b"fasterapi") in session.extra_headers
            assert session.receive_text() == "chat.v1,chat.v2"


def test_text_bytes_json_round_trip_and_iterators() -> None:
    app = Faster()

    @app.websocket("/text")
    async def text(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws.iter_text():
            await ws.send_text(message.upper())

    @app.websocket("/bytes")
    async def binary(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws.iter_bytes():
            await ws.send_bytes(message[::-1])

    @app.websocket("/json")
    async def json(ws: WebSocket) -> None:
        await ws.accept()
        async for message in ws.iter_json():
            await ws.send_json({"got": message})
        # iter_json ends on disconnect: nothing more may be sent.

    with make_client(app) as client:
        with client.websocket_connect("/text") as session:
            session.send_text("abc")
            session.send_text("déf")
            assert session.receive_text() == "ABC"
            assert session.receive_text() == "DÉF"
        with client.websocket_connect("/bytes") as session:
            session.send_bytes(b"\x00\x01\x02")
            assert session.receive_bytes() == b"\x02\x01\x00"
        with client.websocket_connect("/json") as session:
            session.send_json({"a": [1, 2]})
            assert session.receive_json() == {"got": {"a": [1, 2]}}


def test_receive_json_binary_mode_and_send_json_binary_mode() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        data = await ws.receive_json(mode="binary")
        await ws.send_json(data, mode="binary")

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        session.send_json({"x": 1}, mode="binary")
        assert session.receive_json(mode="binary") == {"x": 1}


def test_raw_receive_returns_the_asgi_message() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        message = await ws.receive()
        await ws.send_json(message)

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        session.send_text("raw")
        assert session.receive_json() == {"type": "websocket.receive", "text": "raw"}


def test_websocket_disconnect_carries_the_clients_code_and_reason() -> None:
    app = Faster()
    seen: list[WebSocketDisconnect] = []

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_text()
        except WebSocketDisconnect as disconnect:
            seen.append(disconnect)
            assert ws.client_state is WebSocketState.DISCONNECTED
            raise

    with make_client(app) as client:
        # The handler let it go: it reaches the test when the session ends, as in Starlette.
        with pytest.raises(WebSocketDisconnect) as raised:
            with client.websocket_connect("/ws") as session:
                session.close(4001, "bye")
    assert len(seen) == 1
    assert raised.value is seen[0]
    assert (seen[0].code, seen[0].reason) == (4001, "bye")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("send_before_accept", ["CONNECTING", "CONNECTED"]),
        ("accept_twice", ["CONNECTED", "CONNECTING"]),
        ("receive_after_disconnect", ["DISCONNECTED", "CONNECTED"]),
        ("send_after_close", ["DISCONNECTED", "CONNECTED"]),
    ],
)
def test_misuse_raises_runtime_error_naming_expected_and_actual_state(body: str, expected: list[str]) -> None:
    app = Faster()
    errors: list[RuntimeError] = []

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        try:
            if body == "send_before_accept":
                await ws.send_text("too early")
            elif body == "accept_twice":
                await ws.accept()
                await ws.accept()
            elif body == "receive_after_disconnect":
                await ws.accept()
                with pytest.raises(WebSocketDisconnect):
                    await ws.receive_text()
                await ws.receive_text()
            elif body == "send_after_close":
                await ws.accept()
                await ws.close()
                await ws.send_text("too late")
        except RuntimeError as error:
            errors.append(error)
            raise

    with make_client(app) as client:
        # The handler's RuntimeError reaches the test: at the handshake, or when the session ends.
        with pytest.raises(RuntimeError) as raised:
            with client.websocket_connect("/ws") as session:
                if body == "receive_after_disconnect":
                    session.close(1000)
                else:
                    with pytest.raises(WebSocketDisconnect):
                        session.receive_text()
    assert errors == [raised.value]
    for word in expected:
        assert word in str(errors[0])


def test_receive_text_on_a_binary_frame_is_a_clear_error_and_closes_1003() -> None:
    app = Faster()
    errors: list[Exception] = []

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_text()
        except UnexpectedFrameType as error:
            errors.append(error)
            raise

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        session.send_bytes(b"\x01\x02\x03")
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_text()
    assert closed.value.code == 1003
    assert "binary frame (3 bytes)" in str(errors[0])
    assert isinstance(errors[0], TypeError)


def test_receive_bytes_on_a_text_frame_is_a_clear_error() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        with pytest.raises(UnexpectedFrameType, match="got a text frame"):
            await ws.receive_bytes()
        await ws.send_text("ok")

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        session.send_text("not bytes")
        assert session.receive_text() == "ok"


def test_malformed_json_raises_a_value_error_naming_the_problem_and_closes_1007() -> None:
    app = Faster()
    errors: list[Exception] = []

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_json()
        except InvalidJSONMessage as error:
            errors.append(error)
            raise

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        session.send_text("{not json")
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_text()
    assert closed.value.code == 1007
    assert isinstance(errors[0], ValueError)
    assert "Malformed JSON" in str(errors[0])


def test_a_json_nesting_bomb_is_malformed_json_not_a_crash() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_json()

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        session.send_text("[" * 100_000)  # deeper than the decoder's recursion limit
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_text()
    assert closed.value.code == 1007


def test_exception_in_handler_closes_1011_without_traceback_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()
        raise KeyError("secret-internal-detail")

    with caplog.at_level(logging.ERROR, logger="fasterapi"):
        with make_client(app) as client:
            # The client sees the 1011 close; the test then gets the handler's exception.
            with pytest.raises(KeyError), client.websocket_connect("/ws") as session:
                session.send_text("boom")
                with pytest.raises(WebSocketDisconnect) as closed:
                    session.receive_text()
    assert closed.value.code == 1011
    assert "secret" not in closed.value.reason
    assert any("secret-internal-detail" in (r.exc_text or "") for r in caplog.records)


def test_websocket_exception_closes_with_its_code() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        raise WebSocketException(4400, "bad request")

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_text()
    assert (closed.value.code, closed.value.reason) == (4400, "bad request")


def test_handler_returning_without_close_closes_1000() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("bye")

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        assert session.receive_text() == "bye"
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_text()
    assert closed.value.code == 1000


def test_close_before_accept_rejects_the_handshake() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.close()

    with make_client(app) as client:
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws"):
                pass  # pragma: no cover - the handshake is refused


def test_unknown_path_is_closed_before_accept_which_servers_answer_with_403() -> None:
    app = Faster()

    with make_client(app) as client:
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/nowhere"):
                pass  # pragma: no cover
    assert not isinstance(refused.value, WebSocketDenialResponse)
    assert refused.value.code == 1000


def test_connection_details() -> None:
    app = Faster()
    app.state.greeting = "hi"

    @app.websocket("/items/{item_id}")
    async def handler(ws: WebSocket, item_id: int) -> None:
        await ws.accept()
        ws.state.seen = True
        await ws.send_json(
            {
                "item_id": item_id,
                "path_params": ws.path_params,
                "url": str(ws.url),
                "path": ws.url.path,
                "q": ws.query_params.getlist("q"),
                "token": ws.headers["X-TOKEN"],
                "multi": ws.headers.getlist("x-multi"),
                "cookie": ws.cookies.get("session"),
                "client": list(ws.client) if ws.client else None,
                "app": ws.app is app,
                "greeting": ws.app.state.greeting,
                "scope_type": ws.scope["type"],
                "state": ws.state.seen,
            }
        )

    client = make_client(app)
    client.headers["x-multi"] = "one"
    with client:
        with client.websocket_connect(
            "/items/7?q=a&q=b", headers={"X-Token": "t", "Cookie": "session=abc; theme=dark"}
        ) as session:
            data = session.receive_json()
    assert data == {
        "item_id": 7,
        "path_params": {"item_id": "7"},
        "url": "ws://testserver/items/7?q=a&q=b",
        "path": "/items/7",
        "q": ["a", "b"],
        "token": "t",
        "multi": ["one"],
        "cookie": "abc",
        "client": ["testclient", 50000],
        "app": True,
        "greeting": "hi",
        "scope_type": "websocket",
        "state": True,
    }


def test_invalid_path_parameter_rejects_the_handshake() -> None:
    app = Faster()

    @app.websocket("/items/{item_id}")
    async def handler(ws: WebSocket, item_id: int) -> None:  # pragma: no cover - never runs
        await ws.accept()

    with make_client(app) as client:
        with pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)):
            with client.websocket_connect("/items/abc"):
                pass  # pragma: no cover


def test_dependencies_in_websocket_handlers_with_cleanup() -> None:
    app = Faster()
    events: list[str] = []

    def get_token(ws: WebSocket) -> str:
        return ws.query_params.get("token", "anonymous")

    async def get_session(token: str = Depends(get_token)) -> Any:
        events.append(f"open {token}")
        yield {"user": token}
        events.append(f"close {token}")

    @app.websocket("/ws")
    async def handler(ws: WebSocket, session: dict[str, str] = Depends(get_session)) -> None:
        await ws.accept()
        await ws.send_json(session)

    with make_client(app) as client, client.websocket_connect("/ws?token=alice") as session:
        assert session.receive_json() == {"user": "alice"}
    assert events == ["open alice", "close alice"]


def test_allowed_origins_rejects_cross_site_handshakes() -> None:
    app = Faster(allowed_origins=["https://good.example"])

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("welcome")

    @app.websocket("/open", allowed_origins=["*"])
    async def open_route(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("anyone")

    with make_client(app) as client:
        with client.websocket_connect("/ws", headers={"Origin": "https://good.example"}) as session:
            assert session.receive_text() == "welcome"
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws", headers={"Origin": "https://evil.example"}):
                pass  # pragma: no cover
        with client.websocket_connect("/open", headers={"Origin": "https://evil.example"}) as session:
            assert session.receive_text() == "anyone"


def test_concurrent_sessions_run_concurrently() -> None:
    """Two sessions talk through the app at once: the app is not driven by scripted lists."""
    app = Faster()
    waiting: list[WebSocket] = []

    @app.websocket("/pair")
    async def pair(ws: WebSocket) -> None:
        await ws.accept()
        waiting.append(ws)
        async for text in ws.iter_text():
            for other in waiting:
                if other is not ws:
                    await other.send_text(text)

    with make_client(app) as client:
        with client.websocket_connect("/pair") as first, client.websocket_connect("/pair") as second:
            second.send_text("ping")  # makes sure both handlers are registered before the real message
            first.receive_text()
            first.send_text("from first")
            assert second.receive_text() == "from first"


def test_lifespan_runs_on_enter_and_exit() -> None:
    events: list[str] = []
    app = Faster(on_startup=[lambda: events.append("up")], on_shutdown=[lambda: events.append("down")])
    with TestClient(app):
        assert events == ["up"]
    assert events == ["up", "down"]


# -- the same behaviour through a real uvicorn server and a real client --------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with run_uvicorn("tests.apps.websocket_cases:app") as base_url:
        yield base_url.ws_url


def _closed_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    return closed.value.rcvd.code if closed.value.rcvd else None


@pytest.mark.timeout(60)
def test_real_server_exception_closes_1011_without_details(server: str) -> None:
    with connect(server + "/crash", origin=Origin("https://app.example")) as ws:
        ws.send("boom")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011
    assert "internal detail" not in closed.value.rcvd.reason


@pytest.mark.timeout(60)
def test_real_server_close_before_accept_is_http_403(server: str) -> None:
    with pytest.raises(InvalidStatus) as rejected:
        connect(server + "/refuse")
    assert rejected.value.response.status_code == 403


@pytest.mark.timeout(60)
def test_real_server_rejects_cross_site_origin_with_403(server: str) -> None:
    with pytest.raises(InvalidStatus) as rejected:
        connect(server + "/json", origin=Origin("https://evil.example"))
    assert rejected.value.response.status_code == 403
    with connect(server + "/json", origin=Origin("https://app.example")) as ws:
        ws.send('{"ok": true}')
        assert ws.recv(timeout=10) == '{"ok":true}'


@pytest.mark.timeout(60)
def test_real_server_malformed_json_closes_that_socket_1007_only(server: str) -> None:
    with connect(server + "/json") as bystander, connect(server + "/json") as offender:
        offender.send("{broken")
        assert _closed_code(offender) == 1007
        bystander.send("[1, 2]")
        assert bystander.recv(timeout=10) == "[1,2]"


@pytest.mark.timeout(60)
def test_real_server_subprotocol_and_headers(server: str) -> None:
    with connect(
        server + "/subprotocol",
        subprotocols=[Subprotocol("v1"), Subprotocol("v2")],
        additional_headers={"X-Token": "secret"},
    ) as ws:
        assert ws.subprotocol == "v2"
        assert ws.response is not None and ws.response.headers["x-served-by"] == "fasterapi"
        assert ws.recv(timeout=10) == "secret"


def test_a_sync_websocket_endpoint_is_refused_at_definition() -> None:
    app = Faster()
    with pytest.raises(TypeError, match="must be an 'async def' function"):

        @app.websocket("/ws")
        def handler(ws: WebSocket) -> None:  # pragma: no cover - never registered
            pass


# -- Starlette's WebSocket surface: a mapping of the scope, denial responses, mode errors ---------


def test_websocket_is_a_read_only_mapping_of_its_scope_and_equal_only_to_itself() -> None:
    app = Faster()
    sockets: list[WebSocket] = []

    @app.websocket("/ws/{name}")
    async def handler(ws: WebSocket, name: str) -> None:
        await ws.accept()
        sockets.append(ws)
        await ws.send_json(
            {
                "subprotocols": ws["subprotocols"],
                "type": ws["type"],
                "path_params": ws["path_params"],
                "same_keys": sorted(dict(ws)) == sorted(ws.scope) and len(ws) == len(ws.scope),
                "has_path": "path" in ws,
                "get": ws.get("no-such-key", "default"),
            }
        )
        with pytest.raises(TypeError):
            ws["type"] = "http"  # type: ignore[index]
        await ws.close()

    with make_client(app) as client:
        with client.websocket_connect("/ws/a", subprotocols=["v1"]) as session:
            data = session.receive_json()
        with client.websocket_connect("/ws/a", subprotocols=["v1"]) as session:
            session.receive_json()
    assert data == {
        "subprotocols": ["v1"],
        "type": "websocket",
        "path_params": {"name": "a"},
        "same_keys": True,
        "has_path": True,
        "get": "default",
    }
    first, second = sockets
    assert first == first and first != second and len({first, second}) == 2
    sockets.remove(second)  # by identity, as the docs page's broadcast list does
    assert sockets == [first]


@pytest.mark.parametrize("method", ["send_json", "receive_json"])
def test_a_bad_json_mode_is_a_runtime_error_as_in_starlette(method: str) -> None:
    app = Faster()
    errors: list[Exception] = []

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        try:
            if method == "send_json":
                await ws.send_json({"a": 1}, mode="xml")  # type: ignore[arg-type]
            else:
                await ws.receive_json(mode="xml")  # type: ignore[arg-type]
        except Exception as error:
            errors.append(error)
        await ws.send_text("done")

    with make_client(app) as client, client.websocket_connect("/ws") as session:
        assert session.receive_text() == "done"
    assert len(errors) == 1
    assert type(errors[0]) is RuntimeError
    assert "'text' or 'binary'" in str(errors[0]) and "'xml'" in str(errors[0])


def test_send_denial_response_refuses_the_handshake_with_any_http_response() -> None:
    app = Faster()
    states: list[WebSocketState] = []

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        response = JSONResponse({"error": "log in first"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await ws.send_denial_response(response)
        states.append(ws.application_state)

    with make_client(app) as client:
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/ws"):
                pass  # pragma: no cover - refused
    assert denied.value.status_code == 401
    assert denied.value.headers["www-authenticate"] == "Bearer"
    assert denied.value.json() == {"error": "log in first"}
    assert states == [WebSocketState.DISCONNECTED]


def test_raw_denial_messages_follow_the_response_state() -> None:
    app = Faster()
    seen: list[str] = []

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send({"type": "websocket.http.response.start", "status": 418, "headers": [(b"x-kind", b"teapot")]})
        seen.append(ws.application_state.name)
        with pytest.raises(RuntimeError, match="RESPONSE"):
            await ws.accept()
        await ws.send({"type": "websocket.http.response.body", "body": b"short ", "more_body": True})
        await ws.send({"type": "websocket.http.response.body", "body": b"and stout"})
        seen.append(ws.application_state.name)

    with make_client(app) as client:
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/ws"):
                pass  # pragma: no cover - refused
    assert (denied.value.status_code, denied.value.text) == (418, "short and stout")
    assert denied.value.headers["x-kind"] == "teapot"
    assert seen == ["RESPONSE", "DISCONNECTED"]


@pytest.mark.parametrize("when", ["without the extension", "after accept"])
def test_send_denial_response_needs_the_extension_and_a_handshake(when: str) -> None:
    errors: list[RuntimeError] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        if when == "without the extension":
            scope["extensions"] = {}
        ws = WebSocket(scope, receive, send)
        if when == "after accept":
            await ws.accept()
        try:
            await ws.send_denial_response(PlainTextResponse("no", status_code=403))
        except RuntimeError as error:
            errors.append(error)
        await ws.close()

    client = TestClient(app)
    try:
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws") as session:
                session.receive_text()
    finally:
        client.close()
    expected = "denial response extension" if when == "without the extension" else "expected CONNECTING"
    assert len(errors) == 1 and expected in str(errors[0])


# -- errors in WebSocket routes: FastAPI's handlers and close codes ----------------------------


def test_exception_handlers_apply_to_websocket_routes_and_may_close_with_their_own_code() -> None:
    class Banned(Exception):
        pass

    app = Faster()
    seen: list[tuple[str, str]] = []

    @app.exception_handler(Banned)
    async def banned(ws: WebSocket, exc: Banned) -> None:
        seen.append((type(ws).__name__, str(exc)))
        await ws.close(code=4003, reason="banned")

    @app.exception_handler(418)
    def teapot(ws: WebSocket, exc: HTTPException) -> Response:  # sync handlers work too
        return PlainTextResponse(f"teapot: {exc.detail}", status_code=418)

    @app.websocket("/after-accept")
    async def after_accept(ws: WebSocket) -> None:
        await ws.accept()
        raise Banned("after accept")

    def check(q: str = "") -> None:
        if q == "banned":
            raise Banned("in a dependency")
        if q == "teapot":
            raise HTTPException(418, "short and stout")

    @app.websocket("/before-accept", dependencies=[Depends(check)])
    async def before_accept(ws: WebSocket) -> None:  # pragma: no cover - never accepted
        await ws.accept()

    with make_client(app) as client:
        with client.websocket_connect("/after-accept") as session:
            with pytest.raises(WebSocketDisconnect) as closed:
                session.receive_text()
        assert (closed.value.code, closed.value.reason) == (4003, "banned")
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/before-accept?q=banned"):
                pass  # pragma: no cover - refused
        assert refused.value.code == 4003
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/before-accept?q=teapot"):
                pass  # pragma: no cover - refused
        assert (denied.value.status_code, denied.value.text) == (418, "teapot: short and stout")
    assert seen == [("WebSocket", "after accept"), ("WebSocket", "in a dependency")]


def test_http_only_handlers_and_a_failing_handler_leave_the_error_unhandled(caplog: pytest.LogCaptureFixture) -> None:
    """As in FastAPI, handlers for Exception and 500 are for HTTP only."""
    app = Faster()
    calls: list[str] = []

    @app.exception_handler(Exception)
    async def everything(request: Any, exc: Exception) -> Response:  # pragma: no cover - HTTP only
        calls.append("Exception")
        return PlainTextResponse("no", status_code=500)

    @app.exception_handler(ValueError)
    async def broken(ws: WebSocket, exc: ValueError) -> None:
        calls.append("ValueError")
        raise RuntimeError("the handler itself failed")

    @app.websocket("/ws/{kind}")
    async def handler(ws: WebSocket, kind: str) -> None:
        await ws.accept()
        raise (KeyError if kind == "key" else ValueError)("boom")

    with caplog.at_level(logging.ERROR, logger="fasterapi"), make_client(app) as client:
        with pytest.raises(KeyError), client.websocket_connect("/ws/key") as session:
            with pytest.raises(WebSocketDisconnect) as closed:
                session.receive_text()
        assert closed.value.code == 1011
        with pytest.raises(RuntimeError, match="the handler itself failed"):
            with client.websocket_connect("/ws/value") as session:
                with pytest.raises(WebSocketDisconnect) as closed:
                    session.receive_text()
        assert closed.value.code == 1011
    assert calls == ["ValueError"]
    assert any("Exception handler" in record.getMessage() for record in caplog.records)


def test_validation_errors_close_with_1008_before_accept_and_have_their_own_handler() -> None:
    app = Faster()

    @app.websocket("/items/{item_id}")
    async def item(ws: WebSocket, item_id: int, q: int | None = None) -> None:  # pragma: no cover
        await ws.accept()

    with make_client(app) as client:
        for url in ("/items/abc", "/items/1?q=bar"):
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect(url):
                    pass  # pragma: no cover - refused
            assert refused.value.code == 1008, url
            assert "int" in refused.value.reason

    @app.exception_handler(RequestValidationError)
    async def http_only(request: Any, exc: RequestValidationError) -> Response:  # pragma: no cover
        return JSONResponse({"detail": exc.errors}, status_code=422)

    @app.exception_handler(WebSocketRequestValidationError)
    async def for_sockets(ws: WebSocket, exc: WebSocketRequestValidationError) -> None:
        await ws.close(code=4422, reason=exc.errors[0]["loc"][-1])

    with make_client(app) as client:
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/items/1?q=bar"):
                pass  # pragma: no cover - refused
    assert (refused.value.code, refused.value.reason) == (4422, "q")


def test_websocket_exception_in_a_dependency_closes_with_its_code_before_accept() -> None:
    app = Faster()

    def token(token: str | None = None) -> str:
        if token is None:
            raise WebSocketException(code=1008, reason="no token")
        return token

    @app.websocket("/ws")
    async def handler(ws: WebSocket, user: str = Depends(token)) -> None:
        await ws.accept()
        await ws.send_text(user)
        await ws.close()

    with make_client(app) as client:
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/ws"):
                pass  # pragma: no cover - refused
        assert (refused.value.code, refused.value.reason) == (1008, "no token")
        with client.websocket_connect("/ws", params={"token": "t"}) as session:
            assert session.receive_text() == "t"


def test_http_exception_before_accept_is_an_http_response_and_an_unhandled_one_a_500() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def handler(ws: WebSocket, boom: bool = False) -> None:
        if boom:
            raise LookupError("before accept")
        raise HTTPException(401, "log in", headers={"WWW-Authenticate": "Bearer"})

    with make_client(app) as client:
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/ws"):
                pass  # pragma: no cover - refused
        assert denied.value.status_code == 401
        assert denied.value.json() == {"detail": "log in"}
        assert denied.value.headers["www-authenticate"] == "Bearer"
        with pytest.raises(LookupError):  # the app answered 500, then the test sees the error
            with client.websocket_connect("/ws?boom=true"):
                pass  # pragma: no cover - refused
    with TestClient(app, raise_server_exceptions=False) as client:
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/ws?boom=true"):
                pass  # pragma: no cover - refused
        assert denied.value.status_code == 500


@pytest.mark.timeout(60)
def test_real_server_unrouted_path_and_pre_accept_validation_are_http_403(server: str) -> None:
    for path in ("/no-such-route", "/typed/abc"):
        with pytest.raises(InvalidStatus) as rejected:
            connect(server + path)
        assert rejected.value.response.status_code == 403, path


@pytest.mark.timeout(60)
def test_real_server_denial_responses(server: str) -> None:
    with pytest.raises(InvalidStatus) as rejected:
        connect(server + "/deny")
    response = rejected.value.response
    assert (response.status_code, response.body) == (503, b"come back later")
    assert response.headers["retry-after"] == "5"
    with pytest.raises(InvalidStatus) as rejected:
        connect(server + "/auth")
    assert (rejected.value.response.status_code, rejected.value.response.body) == (401, b'{"detail":"bad token"}')
    with connect(server + "/auth?token=secret") as ws:
        assert ws.recv(timeout=10) == "welcome"


@pytest.mark.timeout(60)
def test_real_server_exception_handler_closes_with_its_code(server: str) -> None:
    with connect(server + "/handled") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4003, "banned user")
