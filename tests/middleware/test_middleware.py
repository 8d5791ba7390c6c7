"""The middleware stack: order, lazy build, function middleware, and what WebSockets skip."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from FasterAPI import BackgroundTasks, Faster, Request, WebSocket
from FasterAPI.middleware import Middleware
from FasterAPI.middleware.base import BaseHTTPMiddleware, CallNext
from FasterAPI.middleware.cors import CORSMiddleware
from FasterAPI.middleware.gzip import GZipMiddleware
from FasterAPI.responses import PlainTextResponse, Response, StreamingResponse
from FasterAPI.sse import EventSourceResponse, ServerSentEvent
from FasterAPI.testclient import TestClient
from FasterAPI.types import ASGIApp, Message, Receive, Scope, Send
from tests.servers import run_uvicorn

PROTOCOL = "FasterAPI.server.protocol:FasterWebSocketProtocol"


class Tag:
    """Appends its name to an ``x-order`` response header: the innermost appends first."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-order", self.name.encode())]
            await send(message)

        await self.app(scope, receive, tagged if scope["type"] == "http" else send)


def test_last_added_middleware_is_outermost_and_constructor_list_first_is_outermost() -> None:
    app = Faster(middleware=[Middleware(Tag, name="listed")])
    app.add_middleware(Tag, name="first-added")
    app.add_middleware(Tag, name="last-added")

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    response = TestClient(app).get("/")
    # Innermost appends first: the constructor's list sits inside everything added later.
    assert response.headers.getlist("x-order") == ["listed", "first-added", "last-added"]


def test_adding_middleware_after_the_first_call_raises() -> None:
    app = Faster()

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    client = TestClient(app)
    assert client.get("/").status_code == 200
    with pytest.raises(RuntimeError, match="after an application has started"):
        app.add_middleware(Tag, name="late")


def test_function_middleware_sees_the_request_and_changes_the_response() -> None:
    app = Faster()

    @app.middleware("http")
    async def timing(request: Request, call_next: CallNext) -> Response:
        body = await request.body()  # read here: the route still gets it
        response = await call_next(request)
        response.headers["x-seen-body"] = str(len(body))
        return response

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, str]:
        return {"got": (await request.body()).decode()}

    response = TestClient(app).post("/echo", content=b"hello")
    assert response.json() == {"got": "hello"}
    assert response.headers["x-seen-body"] == "5"


def test_function_middleware_may_answer_without_calling_the_app() -> None:
    app = Faster()
    calls: list[str] = []

    @app.middleware("http")
    async def gate(request: Request, call_next: CallNext) -> Response:
        if request.headers.get("x-token") != "yes":
            return PlainTextResponse("no", status_code=401)
        return await call_next(request)

    @app.get("/")
    async def index() -> dict[str, bool]:
        calls.append("index")
        return {"ok": True}

    client = TestClient(app)
    assert client.get("/").status_code == 401
    assert calls == []
    assert client.get("/", headers={"x-token": "yes"}).json() == {"ok": True}


def test_an_exception_in_function_middleware_is_answered_by_the_apps_handlers() -> None:
    from FasterAPI import HTTPException

    app = Faster()

    @app.middleware("http")
    async def refuse(request: Request, call_next: CallNext) -> Response:
        raise HTTPException(418, "teapot")

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    response = TestClient(app).get("/")
    assert response.status_code == 418
    assert response.json() == {"detail": "teapot"}


def test_function_middleware_passes_a_stream_on_before_it_ends() -> None:
    """Each chunk reaches the server's send while the handler is still producing the next."""
    asyncio.run(_stream_through_function_middleware())


async def _stream_through_function_middleware() -> None:
    app = Faster()
    release = asyncio.Event()

    @app.middleware("http")
    async def passthrough(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            await release.wait()
            yield b"second"

        return StreamingResponse(chunks())

    received: list[bytes] = []
    first_arrived = asyncio.Event()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            received.append(message["body"])
            first_arrived.set()

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    task = asyncio.create_task(app(_http_scope("/stream"), receive, send))
    await asyncio.wait_for(first_arrived.wait(), 10)
    assert received == [b"first"]  # the handler is parked on `release`: nothing was buffered
    release.set()
    await asyncio.wait_for(task, 10)
    assert received == [b"first", b"second"]


def test_function_middleware_lets_background_tasks_finish() -> None:
    app = Faster()
    done: list[str] = []

    @app.middleware("http")
    async def passthrough(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    @app.get("/")
    async def index(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(done.append, "ran")
        return {"ok": True}

    assert TestClient(app).get("/").json() == {"ok": True}
    assert done == ["ran"]


def test_only_http_function_middleware_exists() -> None:
    with pytest.raises(ValueError, match="'http'"):
        Faster().middleware("websocket")


class SubclassedMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        response = await call_next(request)
        response.headers["x-subclass"] = "1"
        return response


def test_base_http_middleware_subclass() -> None:
    app = Faster()
    app.add_middleware(SubclassedMiddleware)

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    assert TestClient(app).get("/").headers["x-subclass"] == "1"


# -- WebSockets skip HTTP-only middleware -----------------------------------------------------


def test_websocket_scopes_reach_the_route_with_the_servers_own_send() -> None:
    """With CORS, GZip and a function middleware installed, a WebSocket's send is the server's
    send itself: the hub's ASGI outbox writes through no middleware, per message or otherwise."""
    asyncio.run(_websocket_through_http_only_middleware())


async def _websocket_through_http_only_middleware() -> None:
    app = Faster()
    app.add_middleware(GZipMiddleware)
    app.add_middleware(CORSMiddleware, allow_origins=["*"])

    @app.middleware("http")
    async def passthrough(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    seen: dict[str, Any] = {}

    @app.websocket("/ws")
    async def ws_route(websocket: WebSocket) -> None:
        seen["send"] = websocket._send
        seen["receive"] = websocket._receive
        await websocket.accept()
        await websocket.close()

    inbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    sent: list[Message] = []

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        sent.append(message)

    scope = _http_scope("/ws")
    scope["type"] = "websocket"
    scope["scheme"] = "ws"
    scope["subprotocols"] = []
    await app(scope, receive, send)
    assert seen["send"] is send
    assert seen["receive"] is receive
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]


def test_typed_middleware_is_left_out_of_other_chains_and_generic_middleware_is_built_once() -> None:
    built: list[str] = []

    class Generic:
        def __init__(self, app: ASGIApp) -> None:
            built.append("generic")
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await self.app(scope, receive, send)

    app = Faster()
    app.add_middleware(Generic)

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    TestClient(app).get("/")
    assert built == ["generic"]  # one chain serves http, websocket and lifespan

    app = Faster()
    app.add_middleware(Generic)
    app.add_middleware(GZipMiddleware)
    built.clear()
    app.get("/")(index)
    TestClient(app).get("/")
    assert built == ["generic", "generic"]  # the HTTP chain (with GZip) and the others
    assert app._chains is not None
    assert set(app._chains) == {"http", "websocket", "lifespan"}
    assert app._chains["websocket"] is app._chains["lifespan"]


def test_without_middleware_there_is_no_chain() -> None:
    app = Faster()

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    TestClient(app).get("/")
    assert app._chains == {}


def test_middleware_repr_and_unpacking() -> None:
    entry = Middleware(GZipMiddleware, minimum_size=10)
    cls, args, kwargs = entry
    assert (cls, args, kwargs) == (GZipMiddleware, (), {"minimum_size": 10})
    assert repr(entry) == "Middleware(GZipMiddleware, minimum_size=10)"
    with pytest.raises(TypeError):
        Middleware("not callable")


def _http_scope(path: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "extensions": {},
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("ws_option", "sink"), [([], "Outbox"), (["--ws", PROTOCOL], "FasterWebSocketProtocol")])
def test_broadcasts_keep_their_path_with_cors_and_gzip_installed(ws_option: list[str], sink: str) -> None:
    """On our server the hub still writes each broadcast frame itself (frame-once); on plain
    uvicorn through the ASGI outbox, whose send is the server's own (no middleware wraps it)."""
    asyncio.run(_broadcast_through(ws_option, sink))


async def _broadcast_through(ws_option: list[str], sink: str) -> None:
    from websockets.asyncio.client import connect

    with run_uvicorn("tests.apps.middleware_app:app", extra_args=ws_option) as server:
        async with connect(server.ws_url + "/ws/room") as ws:
            assert await asyncio.wait_for(ws.recv(), 30) == f"sink {sink}"
            await ws.send("hello room")
            assert await asyncio.wait_for(ws.recv(), 30) == "hello room"


def test_an_event_stream_behind_function_middleware_ends_quietly_when_the_client_leaves() -> None:
    asyncio.run(_event_stream_through_function_middleware())


async def _event_stream_through_function_middleware() -> None:
    app = Faster()
    closed = asyncio.Event()

    @app.middleware("http")
    async def passthrough(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(raw_data="one")
            await asyncio.Event().wait()
        finally:
            closed.set()

    @app.get("/events")
    async def stream() -> EventSourceResponse:
        return EventSourceResponse(events())

    first = asyncio.Event()
    bodies: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message.get("body", b""))
            first.set()

    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await first.wait()
        return {"type": "http.disconnect"}

    await asyncio.wait_for(app(_http_scope("/events"), receive, send), 30)
    assert closed.is_set()
    assert bodies[0] == b"data: one\n\n"


def test_every_call_goes_through_the_middleware_even_with_a_reused_scope() -> None:
    """Nothing in the scope marks it as having passed the middleware: a harness that calls the
    app twice with one scope dict, or an app that calls itself, gets the middleware each time."""
    asyncio.run(_reused_scope())


async def _reused_scope() -> None:
    app = Faster()
    app.add_middleware(Tag, name="outer")

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    scope = _http_scope("/")
    tags: list[list[bytes]] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            tags.append([v for k, v in message["headers"] if k == b"x-order"])

    for _ in range(2):
        await app(scope, receive, send)
    assert tags == [[b"outer"], [b"outer"]]


def test_an_app_failure_the_middleware_did_not_pass_on_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The middleware answers with its own response while the app's failed: logged, not lost."""

    class Failing:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise RuntimeError("failed mid-response")

    app = Faster()
    app.add_middleware(Failing)

    @app.middleware("http")
    async def replace(request: Request, call_next: CallNext) -> Response:
        await call_next(request)
        return PlainTextResponse("replaced")

    @app.get("/")
    async def index() -> dict[str, bool]:
        return {"ok": True}

    with caplog.at_level(logging.ERROR, logger="fasterapi"):
        assert TestClient(app).get("/").text == "replaced"
    assert any("failed behind middleware" in r.getMessage() for r in caplog.records)
