"""``Depends`` for HTTP handlers: plain, async, generators, caching, nesting, errors."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest

from FasterAPI import APIRouter, Depends, Faster, Header, HTTPException, Query, Request, WebSocket
from FasterAPI.dependencies import Dependant
from FasterAPI.testclient import TestClient


@pytest.fixture
def app() -> Faster:
    return Faster()


@pytest.fixture
def client(app: Faster) -> Iterator[TestClient]:
    client = TestClient(app)
    yield client
    client.close()


def test_plain_and_async_dependencies(app: Faster, client: TestClient) -> None:
    threads: list[str] = []

    def sync_dep() -> str:
        threads.append(threading.current_thread().name)
        return "sync"

    @app.get("/")
    async def handler(a: str = Depends(sync_dep), b: Annotated[str, Depends(_async_dep)] = "unused") -> list[str]:
        return [a, b]

    # The async dependency ran on the event loop; the sync one in a worker thread.
    assert client.get("/").json() == ["sync", "async"]
    assert len(threads) == 1 and threads[0] != "testclient-loop"


async def _async_dep() -> str:
    return "async" if threading.current_thread().name == "testclient-loop" else "wrong thread"


def test_generator_dependencies_clean_up(app: Faster, client: TestClient) -> None:
    events: list[str] = []

    def sync_gen() -> Iterator[str]:
        events.append("sync enter")
        yield "s"
        events.append("sync exit")

    async def async_gen() -> AsyncIterator[str]:
        events.append("async enter")
        yield "a"
        events.append("async exit")

    @app.get("/")
    async def handler(s: str = Depends(sync_gen), a: str = Depends(async_gen)) -> str:
        events.append("handler")
        return s + a

    assert client.get("/").json() == "sa"
    # Cleanup runs in reverse order, after the handler.
    assert events == ["sync enter", "async enter", "handler", "async exit", "sync exit"]


def test_generator_dependency_sees_the_handler_exception(app: Faster, client: TestClient) -> None:
    seen: list[BaseException] = []

    async def session() -> AsyncIterator[str]:
        try:
            yield "db"
        except Exception as error:
            seen.append(error)
            raise
        finally:
            seen.append(KeyboardInterrupt("finally ran"))  # a marker that cleanup happened

    def sync_session() -> Iterator[str]:
        try:
            yield "db"
        except HTTPException as error:
            seen.append(error)
            raise

    @app.get("/boom")
    async def boom(db: str = Depends(session)) -> None:
        raise ValueError("handler failed")

    @app.get("/http")
    async def http_error(db: str = Depends(sync_session)) -> None:
        raise HTTPException(409, "conflict")

    response = client.get("/boom")
    assert response.status_code == 500
    assert isinstance(seen[0], ValueError) and str(seen[0]) == "handler failed"
    assert isinstance(seen[1], KeyboardInterrupt)

    seen.clear()
    response = client.get("/http")
    assert response.status_code == 409
    assert response.json() == {"detail": "conflict"}
    assert isinstance(seen[0], HTTPException) and seen[0].status_code == 409


def test_generator_dependency_may_translate_the_exception(app: Faster, client: TestClient) -> None:
    async def translate() -> AsyncIterator[None]:
        try:
            yield
        except KeyError as error:
            raise HTTPException(404, f"no such key: {error.args[0]}") from error

    @app.get("/lookup")
    async def lookup(_: None = Depends(translate)) -> None:
        raise KeyError("k1")

    response = client.get("/lookup")
    assert response.status_code == 404
    assert response.json() == {"detail": "no such key: k1"}


def test_generator_dependency_that_swallows_the_exception_gives_500(
    app: Faster, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    def swallow() -> Iterator[None]:
        try:
            yield
        except Exception:
            pass

    @app.get("/swallowed")
    def swallowed(_: None = Depends(swallow)) -> str:
        raise ValueError("lost")

    with caplog.at_level(logging.ERROR, logger="fasterapi"):
        response = client.get("/swallowed")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert "swallowed an exception" in caplog.text


def test_dependencies_are_cached_per_request(app: Faster, client: TestClient) -> None:
    calls: list[str] = []

    async def counter() -> int:
        calls.append("counter")
        return len(calls)

    async def uses_counter(value: int = Depends(counter)) -> int:
        return value

    @app.get("/cached")
    async def cached(a: int = Depends(counter), b: int = Depends(uses_counter)) -> list[int]:
        return [a, b]

    @app.get("/uncached")
    async def uncached(
        a: int = Depends(counter), b: int = Depends(counter, use_cache=False)
    ) -> list[int]:
        return [a, b]

    assert client.get("/cached").json() == [1, 1]
    assert calls == ["counter"]
    # A new request calls it again: the cache lives for one request only.
    assert client.get("/cached").json() == [2, 2]
    calls.clear()
    assert client.get("/uncached").json() == [1, 2]
    assert calls == ["counter", "counter"]


def test_cached_generator_dependency_cleans_up_once(app: Faster, client: TestClient) -> None:
    events: list[str] = []

    async def resource() -> AsyncIterator[str]:
        events.append("open")
        yield "r"
        events.append("close")

    async def user(r: str = Depends(resource)) -> str:
        return r + "-user"

    @app.get("/")
    async def handler(r: str = Depends(resource), u: str = Depends(user)) -> str:
        return r + u

    assert client.get("/").json() == "rr-user"
    assert events == ["open", "close"]


def test_nested_dependencies_take_request_params(app: Faster, client: TestClient) -> None:
    def pagination(page: int = 1, size: Annotated[int, Query(alias="per-page")] = 10) -> dict[str, int]:
        return {"page": page, "size": size}

    async def token(authorization: str = Header()) -> str:
        if not authorization.startswith("Bearer "):
            raise HTTPException(401, "bad token", headers={"WWW-Authenticate": "Bearer"})
        return authorization.removeprefix("Bearer ")

    async def listing(paging: dict[str, int] = Depends(pagination), who: str = Depends(token)) -> dict[str, Any]:
        return {**paging, "who": who}

    @app.get("/items/{kind}")
    async def items(kind: str, listing: dict[str, Any] = Depends(listing)) -> dict[str, Any]:
        return {"kind": kind, **listing}

    response = client.get("/items/books?page=3&per-page=5", headers={"Authorization": "Bearer ada"})
    assert response.json() == {"kind": "books", "page": 3, "size": 5, "who": "ada"}

    response = client.get("/items/books", headers={"Authorization": "Basic x"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"

    response = client.get("/items/books?page=x")
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", "page"], ["header", "authorization"]]


def test_dependency_sees_path_params_and_request(app: Faster, client: TestClient) -> None:
    def owner(user_id: int, request: Request) -> str:
        return f"{request.method}:{user_id + 1}"

    @app.get("/users/{user_id}")
    async def handler(who: str = Depends(owner)) -> str:
        return who

    assert client.get("/users/41").json() == "GET:42"
    assert client.get("/users/x").json()["detail"][0]["loc"] == ["path", "user_id"]


class Common:
    def __init__(self, q: str = "", limit: int = 5) -> None:
        self.q = q
        self.limit = limit


class Checker:
    def __init__(self, word: str) -> None:
        self.word = word

    async def __call__(self, q: str = "") -> bool:
        return self.word in q


def test_class_and_callable_instance_dependencies(app: Faster, client: TestClient) -> None:
    @app.get("/class")
    async def with_class(common: Common = Depends(), explicit: Annotated[Common, Depends(Common)] = None) -> Any:  # type: ignore[assignment]
        return [common.q, common.limit, explicit.limit]

    @app.get("/callable")
    async def with_callable(found: bool = Depends(Checker("bar"))) -> bool:
        return found

    assert client.get("/class?q=x&limit=7").json() == ["x", 7, 7]
    assert client.get("/class?limit=nope").status_code == 422
    assert client.get("/callable?q=foobar").json() is True
    assert client.get("/callable?q=foo").json() is False


def test_router_and_route_dependencies_run_without_injecting(app: Faster, client: TestClient) -> None:
    calls: list[str] = []

    async def verify_key(x_key: str = Header()) -> None:
        if x_key != "secret":
            raise HTTPException(403, "forbidden")
        calls.append("verified")

    def audit() -> Iterator[None]:
        calls.append("audit start")
        yield
        calls.append("audit end")

    router = APIRouter(prefix="/admin", dependencies=[Depends(verify_key)])

    @router.get("/panel", dependencies=[Depends(audit)])
    async def panel() -> str:
        calls.append("panel")
        return "ok"

    app.include_router(router)
    assert client.get("/admin/panel").status_code == 422
    assert client.get("/admin/panel", headers={"x-key": "wrong"}).status_code == 403
    assert calls == []
    assert client.get("/admin/panel", headers={"x-key": "secret"}).json() == "ok"
    assert calls == ["verified", "audit start", "panel", "audit end"]


def test_dependency_errors_skip_the_handler(app: Faster, client: TestClient) -> None:
    ran: list[str] = []

    def needs_int(n: int) -> int:
        return n

    @app.get("/")
    async def handler(n: int = Depends(needs_int)) -> int:
        ran.append("handler")
        return n

    assert client.get("/?n=x").status_code == 422
    assert ran == []


def test_unresolvable_annotation_is_a_clear_error(app: Faster) -> None:
    class Local:
        pass

    with pytest.raises(TypeError, match=r"Cannot resolve the annotations of .*handler.*'Local'"):

        @app.get("/")
        async def handler(x: Local = Depends()) -> None:
            return None


def test_dependencies_list_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="needs a callable"):
        Dependant(lambda: None, extra=[Depends()])


def test_dependant_plan_flags() -> None:
    async def trivial() -> None:
        return None

    def gen() -> Iterator[None]:
        yield

    def with_gen(x: None = Depends(gen)) -> None:
        return None

    plan = Dependant(trivial)
    assert plan.trivial and plan.kind == "async" and not plan.needs_stack
    nested = Dependant(with_gen)
    assert nested.needs_stack and not nested.trivial and nested.kind == "sync"


# -- app.dependency_overrides ---------------------------------------------------------------------


def real_user(authorization: str = Header()) -> str:
    raise AssertionError("the real dependency must not run while overridden")


async def fake_user() -> str:
    return "test-user"


def settings() -> dict[str, str]:
    return {"mode": "production"}


def test_dependency_overrides_replace_a_dependency_on_http_routes() -> None:
    app = Faster()
    calls: list[str] = []

    def audit() -> None:
        calls.append("real audit")

    @app.get("/me", dependencies=[Depends(audit)])
    async def me(
        user: Annotated[str, Depends(real_user)], config: dict[str, str] = Depends(settings)
    ) -> dict[str, Any]:
        return {"user": user, "mode": config["mode"]}

    client = TestClient(app)
    assert client.get("/me").status_code == 422  # the real one wants its header
    assert calls == ["real audit"]
    calls.clear()
    app.dependency_overrides[real_user] = fake_user
    app.dependency_overrides[audit] = lambda: calls.append("fake audit")
    assert client.get("/me").json() == {"user": "test-user", "mode": "production"}
    assert calls == ["fake audit"]
    app.dependency_overrides[settings] = lambda: {"mode": "test"}
    assert client.get("/me").json() == {"user": "test-user", "mode": "test"}
    app.dependency_overrides.clear()
    assert client.get("/me", headers={"authorization": "x"}).status_code == 500  # the real one again


def test_an_override_has_its_own_parameters_and_sub_dependencies() -> None:
    app = Faster()
    router = APIRouter(prefix="/api")

    def token_user(token: str = Query()) -> str:
        return f"token:{token}"

    @router.get("/me")
    async def me(user: str = Depends(real_user)) -> dict[str, str]:
        return {"user": user}

    app.include_router(router)
    app.dependency_overrides[real_user] = token_user
    client = TestClient(app)
    assert client.get("/api/me", params={"token": "abc"}).json() == {"user": "token:abc"}
    missing = client.get("/api/me")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "token"]


def test_dependency_overrides_apply_to_websocket_routes() -> None:
    app = Faster()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: str = Depends(real_user)) -> None:
        await websocket.accept()
        await websocket.send_text(user)
        await websocket.close()

    app.dependency_overrides[real_user] = fake_user
    with TestClient(app).websocket_connect("/ws") as session:
        assert session.receive_text() == "test-user"
