"""Application-level HTTP behaviour: errors and their handlers, lifespan, state, the Request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from FasterAPI import (
    Faster,
    HTTPException,
    JSONResponse,
    PlainTextResponse,
    Request,
    RequestValidationError,
    Response,
)
from FasterAPI.testclient import TestClient


@pytest.fixture
def app() -> Faster:
    return Faster()


@pytest.fixture
def client(app: Faster) -> Iterator[TestClient]:
    client = TestClient(app)
    yield client
    client.close()


# -- HTTPException and unhandled errors -------------------------------------------------------------


def test_http_exception_detail_and_headers(app: Faster, client: TestClient) -> None:
    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, {"reason": "short"}, headers={"X-Kind": "teapot", "Retry-After": "5"})

    @app.get("/default")
    def default() -> None:
        raise HTTPException(403)

    @app.get("/no-content")
    async def no_content() -> None:
        raise HTTPException(304, headers={"ETag": '"abc"'})

    response = client.get("/teapot")
    assert response.status_code == 418
    assert response.json() == {"detail": {"reason": "short"}}
    assert response.headers["x-kind"] == "teapot"
    assert response.headers["retry-after"] == "5"
    response = client.get("/default")
    assert response.json() == {"detail": "Forbidden"}
    response = client.get("/no-content")
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"abc"'


def test_unhandled_exception_is_500_and_logged(
    app: Faster, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/crash")
    async def crash() -> None:
        raise ZeroDivisionError("oops")

    with caplog.at_level(logging.ERROR, logger="fasterapi"):
        response = client.get("/crash")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    records = [r for r in caplog.records if r.name == "fasterapi"]
    assert len(records) == 1
    assert "GET /crash" in records[0].getMessage()
    assert records[0].exc_info is not None and records[0].exc_info[0] is ZeroDivisionError


# -- custom exception handlers ---------------------------------------------------------------------


class OutOfStock(Exception):
    def __init__(self, item: str) -> None:
        self.item = item


class Backorder(OutOfStock):
    pass


def test_handler_by_class_sync_and_async(app: Faster, client: TestClient) -> None:
    @app.exception_handler(OutOfStock)
    async def out_of_stock(request: Request, error: Exception) -> Response:
        assert isinstance(error, OutOfStock)
        return JSONResponse({"missing": error.item, "path": request.url.path}, status_code=409)

    @app.exception_handler(KeyError)
    def key_error(request: Request, error: Exception) -> Response:
        return PlainTextResponse(f"no key {error}", status_code=400)

    @app.get("/stock/{item}")
    async def stock(item: str) -> None:
        raise OutOfStock(item)

    @app.get("/backorder")
    async def backorder() -> None:
        raise Backorder("widget")  # found through the class hierarchy

    @app.get("/key")
    async def key() -> None:
        raise KeyError("k")

    response = client.get("/stock/apple")
    assert response.status_code == 409
    assert response.json() == {"missing": "apple", "path": "/stock/apple"}
    assert client.get("/backorder").json()["missing"] == "widget"
    response = client.get("/key")
    assert (response.status_code, response.text) == (400, "no key 'k'")


def test_handler_by_status_code(app: Faster, client: TestClient) -> None:
    @app.exception_handler(404)
    async def not_found(request: Request, error: Exception) -> Response:
        return PlainTextResponse(f"nothing at {request.url.path}", status_code=404)

    @app.exception_handler(403)
    def forbidden(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return JSONResponse({"why": error.detail}, status_code=403)

    @app.get("/secret")
    async def secret() -> None:
        raise HTTPException(403, "nope")

    assert client.get("/missing").text == "nothing at /missing"
    response = client.get("/secret")
    assert (response.status_code, response.json()) == (403, {"why": "nope"})


def test_status_code_handler_beats_class_handler(app: Faster, client: TestClient) -> None:
    @app.exception_handler(HTTPException)
    async def any_http(request: Request, error: Exception) -> Response:
        return PlainTextResponse("by class", status_code=400)

    @app.exception_handler(418)
    async def teapot(request: Request, error: Exception) -> Response:
        return PlainTextResponse("by status", status_code=418)

    @app.get("/{code}")
    async def fail(code: int) -> None:
        raise HTTPException(code)

    assert client.get("/418").text == "by status"
    assert client.get("/401").text == "by class"


def test_validation_error_handler(app: Faster, client: TestClient) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return JSONResponse({"problems": len(error.errors)}, status_code=400)

    @app.get("/n")
    async def n(a: int, b: int) -> int:
        return a + b

    response = client.get("/n?a=x")
    assert (response.status_code, response.json()) == (400, {"problems": 2})


def test_catch_all_handlers_take_only_unhandled_errors(app: Faster, client: TestClient) -> None:
    """An ``Exception`` handler (like Starlette's) does not swallow 404s, HTTPExceptions or 422s."""

    @app.exception_handler(Exception)
    async def everything(request: Request, error: Exception) -> Response:
        return PlainTextResponse(f"caught {type(error).__name__}", status_code=500)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("x")

    @app.get("/gone")
    async def gone() -> None:
        raise HTTPException(410)

    @app.get("/typed/{n}")
    async def typed(n: int) -> int:
        return n

    assert client.get("/boom").text == "caught RuntimeError"
    assert client.get("/missing").status_code == 404
    assert client.get("/gone").json() == {"detail": "Gone"}
    assert client.get("/typed/x").status_code == 422


def test_500_handler_takes_unhandled_errors(app: Faster, client: TestClient) -> None:
    @app.exception_handler(500)
    async def server_error(request: Request, error: Exception) -> Response:
        return JSONResponse({"error": type(error).__name__}, status_code=500)

    @app.get("/boom")
    def boom() -> None:
        raise LookupError

    @app.get("/explicit")
    async def explicit() -> None:
        raise HTTPException(500, "explicit")

    assert client.get("/boom").json() == {"error": "LookupError"}
    assert client.get("/explicit").json() == {"error": "HTTPException"}


def test_handlers_given_to_the_constructor() -> None:
    def teapot(request: Request, error: Exception) -> Response:
        return PlainTextResponse("constructor", status_code=418)

    app = Faster(exception_handlers={ValueError: teapot})

    @app.get("/")
    async def index() -> None:
        raise ValueError

    with TestClient(app) as client:
        assert client.get("/").text == "constructor"


def test_failing_exception_handler_is_500_and_logged(
    app: Faster, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.exception_handler(ValueError)
    async def broken(request: Request, error: Exception) -> Response:
        raise RuntimeError("handler bug")

    @app.get("/")
    async def index() -> None:
        raise ValueError

    with caplog.at_level(logging.ERROR, logger="fasterapi"):
        response = client.get("/")
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert "handler" in caplog.text and "RuntimeError: handler bug" in caplog.text


# -- lifespan ---------------------------------------------------------------------------------


def test_lifespan_context_and_state() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Faster) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"db": "connection", "counter": [0]}
        events.append("shutdown")

    app = Faster(lifespan=lifespan)

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        events.append("request")
        request.state.counter[0] += 1
        return {"db": request.state.db, "count": request.state.counter[0]}

    client = TestClient(app)
    assert events == []
    with client:
        assert events == ["startup"]
        assert client.get("/state").json() == {"db": "connection", "count": 1}
        assert client.get("/state").json() == {"db": "connection", "count": 2}
        assert events == ["startup", "request", "request"]
    assert events == ["startup", "request", "request", "shutdown"]


def test_request_state_is_per_request(app: Faster, client: TestClient) -> None:
    @app.get("/set")
    async def setter(request: Request) -> bool:
        had = hasattr(request.state, "mark")
        request.state.mark = True
        return had

    assert client.get("/set").json() is False
    assert client.get("/set").json() is False


def test_on_startup_and_on_shutdown_sync_and_async() -> None:
    events: list[str] = []

    async def async_start() -> None:
        events.append("async start")

    def sync_stop() -> None:
        events.append("sync stop")

    app = Faster(on_startup=[lambda: events.append("sync start"), async_start], on_shutdown=[sync_stop])

    @app.on_event("shutdown")
    async def async_stop() -> None:
        events.append("async stop")

    @app.on_event("startup")
    def decorated_start() -> None:
        events.append("decorated start")

    with pytest.raises(ValueError):
        app.on_event("reboot")

    with TestClient(app):
        assert events == ["sync start", "async start", "decorated start"]
    assert events[3:] == ["sync stop", "async stop"]


def test_startup_failure_is_reported() -> None:
    @asynccontextmanager
    async def lifespan(app: Faster) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    app = Faster(lifespan=lifespan)
    with pytest.raises(RuntimeError, match=r"startup failed.*no database"), TestClient(app):
        pass


def test_app_state(app: Faster, client: TestClient) -> None:
    app.state.config = {"debug": True}

    @app.get("/config")
    async def config(request: Request) -> Any:
        return request.app.state.config

    assert client.get("/config").json() == {"debug": True}
    del app.state.config
    with pytest.raises(AttributeError, match="config"):
        _ = app.state.config


# -- the Request ------------------------------------------------------------------------------


def test_request_headers_are_case_insensitive_and_keep_repeats(app: Faster, client: TestClient) -> None:
    @app.get("/headers")
    async def headers(request: Request) -> dict[str, Any]:
        h = request.headers
        return {
            "first": h["x-multi"],
            "upper": h["X-MULTI"],
            "all": h.getlist("X-Multi"),
            "has": "x-MULTI" in h,
            "missing": h.get("x-none", "default"),
            "keys": [k for k in h if k.startswith("x-")],
        }

    response = client.get("/headers", headers=[("X-Multi", "one"), ("x-multi", "two"), ("X-Other", "3")])
    assert response.json() == {
        "first": "one",
        "upper": "one",
        "all": ["one", "two"],
        "has": True,
        "missing": "default",
        "keys": ["x-multi", "x-other"],
    }


def test_request_query_params_cookies_client_url(app: Faster) -> None:
    @app.get("/info/{name}")
    async def info(request: Request) -> dict[str, Any]:
        return {
            "method": request.method,
            "url": str(request.url),
            "path": request.url.path,
            "query": request.url.query,
            "host": request.url.hostname,
            "port": request.url.port,
            "scheme": request.url.scheme,
            "q_last": request.query_params["q"],
            "q_all": request.query_params.getlist("q"),
            "q_keys": list(request.query_params),
            "cookies": request.cookies,
            "client": [request.client.host, request.client.port] if request.client else None,
            "path_params": request.path_params,
        }

    with TestClient(app, base_url="https://example.org:8443", client=("10.1.2.3", 4567)) as client:
        response = client.get("/info/bob?q=1&q=2&flag=", cookies={"a": "1", "b": "two"})
    assert response.json() == {
        "method": "GET",
        "url": "https://example.org:8443/info/bob?q=1&q=2&flag=",
        "path": "/info/bob",
        "query": "q=1&q=2&flag=",
        "host": "example.org",
        "port": 8443,
        "scheme": "https",
        "q_last": "2",
        "q_all": ["1", "2"],
        "q_keys": ["q", "flag"],
        "cookies": {"a": "1", "b": "two"},
        "client": ["10.1.2.3", 4567],
        "path_params": {"name": "bob"},
    }


def test_request_body_json_and_stream(app: Faster, client: TestClient) -> None:
    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        raw = await request.body()
        again = await request.body()
        return {"raw": raw.decode(), "same": raw == again, "json": await request.json()}

    @app.post("/stream")
    async def stream(request: Request) -> dict[str, Any]:
        chunks = [chunk async for chunk in request.stream()]
        try:
            [chunk async for chunk in request.stream()]
        except RuntimeError as error:
            second = str(error)
        return {"size": sum(len(c) for c in chunks), "second": second}

    response = client.post("/echo", json={"a": [1, 2]})
    assert response.json() == {"raw": '{"a":[1,2]}', "same": True, "json": {"a": [1, 2]}}
    response = client.post("/stream", content=b"x" * 1000)
    assert response.json()["size"] == 1000
    assert "already read" in response.json()["second"]
