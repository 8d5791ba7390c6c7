"""The radix-tree router, route registration, and routing behaviour of an app."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from FasterAPI import APIRouter, Depends, Faster, Header, HTTPException, Request, WebSocket, WebSocketDisconnect
from FasterAPI.routing import HTTPRoute, Router, WebSocketRoute
from FasterAPI.testclient import TestClient, WebSocketDenialResponse


def _endpoint() -> None:
    return None


async def _socket_endpoint() -> None:
    return None


def _route(path: str, methods: tuple[str, ...] = ("GET",)) -> HTTPRoute:
    return HTTPRoute(path, _endpoint, methods=methods)


@pytest.fixture
def count_walks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts tree nodes visited (calls of ``Router._walk``) during a lookup."""
    calls = [0]
    original = Router._walk

    def counting(self: Router, *args: Any) -> Any:
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(Router, "_walk", counting)
    yield calls


# -- Router: matching ---------------------------------------------------------------------------


def test_static_and_param_routes() -> None:
    router = Router()
    index, items, item, sub = _route("/"), _route("/items"), _route("/items/{item_id}"), _route("/items/{item_id}/sub")
    for route in (index, items, item, sub):
        router.add(route)
    assert router.match_http("GET", "/") == (index, {}, frozenset())
    assert router.match_http("GET", "/items") == (items, {}, frozenset())
    assert router.match_http("GET", "/items/42") == (item, {"item_id": "42"}, frozenset())
    assert router.match_http("GET", "/items/42/sub") == (sub, {"item_id": "42"}, frozenset())
    assert router.match_http("GET", "/items/42/other") == (None, {}, frozenset())
    assert router.match_http("GET", "/nothing") == (None, {}, frozenset())
    # An empty segment does not fill a parameter.
    assert router.match_http("GET", "/items/")[0] is None


def test_static_beats_param_and_param_beats_catchall() -> None:
    router = Router()
    catchall, param, static = _route("/files/{rest:path}"), _route("/files/{name}"), _route("/files/readme")
    for route in (catchall, param, static):
        router.add(route)
    assert router.match_http("GET", "/files/readme")[0] is static
    assert router.match_http("GET", "/files/other") == (param, {"name": "other"}, frozenset())
    assert router.match_http("GET", "/files/a/b/c") == (catchall, {"rest": "a/b/c"}, frozenset())
    # Both the static and the parameter branch dead-end: the catch-all still takes it.
    assert router.match_http("GET", "/files/readme/extra") == (catchall, {"rest": "readme/extra"}, frozenset())
    assert router.match_http("GET", "/files/") == (catchall, {"rest": ""}, frozenset())


def test_backtracks_from_a_static_branch_that_dead_ends() -> None:
    router = Router()
    deep_static, param_then_static = _route("/a/b/c"), _route("/a/{x}/d")
    router.add(deep_static)
    router.add(param_then_static)
    assert router.match_http("GET", "/a/b/d") == (param_then_static, {"x": "b"}, frozenset())
    assert router.match_http("GET", "/a/b/c")[0] is deep_static


def test_full_match_beats_partial_match() -> None:
    """GET /items/new reaches /items/{id} though /items/new exists for POST only."""
    router = Router()
    create, read = _route("/items/new", ("POST",)), _route("/items/{item_id}")
    router.add(create)
    router.add(read)
    assert router.match_http("GET", "/items/new") == (read, {"item_id": "new"}, frozenset())
    assert router.match_http("POST", "/items/new")[0] is create
    route, _, allowed = router.match_http("PUT", "/items/new")
    assert route is None
    assert allowed == {"POST"}


def test_405_lists_methods_with_implicit_head() -> None:
    router = Router()
    router.add(_route("/things", ("GET", "POST")))
    route, _, allowed = router.match_http("DELETE", "/things")
    assert route is None
    assert allowed == {"GET", "HEAD", "POST"}


def test_head_is_implied_by_get_and_explicit_head_takes_over() -> None:
    router = Router()
    getter, header = _route("/x"), _route("/x", ("HEAD",))
    router.add(getter)
    assert router.match_http("HEAD", "/x")[0] is getter
    router.add(header)
    assert router.match_http("HEAD", "/x")[0] is header
    assert router.match_http("GET", "/x")[0] is getter
    with pytest.raises(ValueError, match="already exists"):
        router.add(_route("/x", ("HEAD",)))


def test_typed_path_segments() -> None:
    router = Router()
    by_int, by_float = _route("/n/{value:int}"), _route("/f/{value:float}")
    router.add(by_int)
    router.add(by_float)
    assert router.match_http("GET", "/n/123") == (by_int, {"value": "123"}, frozenset())
    assert router.match_http("GET", "/n/12a")[0] is None
    assert router.match_http("GET", "/n/-1")[0] is None
    assert router.match_http("GET", "/n/\u0663")[0] is None  # an Arabic-Indic digit is not [0-9]
    assert router.match_http("GET", "/f/1.5")[1] == {"value": "1.5"}
    assert router.match_http("GET", "/f/2")[1] == {"value": "2"}
    assert router.match_http("GET", "/f/1.")[0] is None
    assert router.match_http("GET", "/f/x")[0] is None


def test_websocket_and_http_share_paths_without_shadowing() -> None:
    router = Router()
    socket_route = WebSocketRoute("/live/feed", _socket_endpoint)
    http_route = _route("/live/{name}")
    router.add(socket_route)
    router.add(http_route)
    assert router.match_websocket("/live/feed") == (socket_route, {})
    assert router.match_http("GET", "/live/feed") == (http_route, {"name": "feed"}, frozenset())
    assert router.match_websocket("/live/other") == (None, {})
    with pytest.raises(ValueError, match="WebSocket route"):
        router.add(WebSocketRoute("/live/feed", _socket_endpoint))


# -- Router: registration errors --------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "items",
        "/items/{id",
        "/items/id}",
        "/items/x{id}",
        "/items/{id}x",
        "/items/{1id}",
        "/items/{id:uuid}",
        "/items/{}",
        "/files/{rest:path}/more",
        "/a/{x}/b/{x}",
    ],
)
def test_bad_path_syntax(path: str) -> None:
    with pytest.raises(ValueError):
        _route(path)


def test_conflicting_parameter_names() -> None:
    router = Router()
    router.add(_route("/users/{user_id}"))
    with pytest.raises(ValueError, match=r"'id'.*'user_id'"):
        router.add(_route("/users/{id}/posts"))
    router.add(_route("/files/{rest:path}"))
    with pytest.raises(ValueError, match="same name"):
        router.add(_route("/files/{other:path}"))
    router.add(_route("/n/{v:int}"))
    with pytest.raises(ValueError, match="same type"):
        router.add(_route("/n/{v}/x"))


def test_rejected_route_leaves_no_trace() -> None:
    router = Router()
    router.add(_route("/a/{x}", ("POST",)))
    with pytest.raises(ValueError, match="already exists"):
        router.add(_route("/a/{x}", ("GET", "POST")))
    # The GET of the rejected route was not half-registered.
    assert router.match_http("GET", "/a/1")[0] is None
    with pytest.raises(ValueError):
        router.add(_route("/b/{y}/{z}/{y}"))
    with pytest.raises(ValueError):
        router.add(_route("/a/{x}/{q}/{x}"))
    # The conflicting-name check ran before any node was created.
    router.add(_route("/a/{x}/{other}"))
    assert len(router.routes) == 2


def test_duplicate_route() -> None:
    router = Router()
    router.add(_route("/dup"))
    with pytest.raises(ValueError, match="GET '/dup' already exists"):
        router.add(_route("/dup"))
    router.add(_route("/dup", ("POST",)))  # another method on the same path is fine


# -- Router: cost independent of the number of routes ---------------------------------------------


@functools.cache
def _big_router(n: int) -> Router:
    router = Router()
    for i in range(n):
        router.add(_route(f"/r{i}/items/{{item_id}}"))
        if i % 10 == 0:
            router.add(_route(f"/static/{i}/page"))
    router.add(_route("/users/{user_id}/posts/{post_id}"))
    router.add(_route("/users/me/posts/{post_id}"))
    router.add(_route("/files/{rest:path}"))
    return router


def test_ten_thousand_routes_still_match() -> None:
    router = _big_router(10_000)
    for i in (0, 1, 4_999, 9_999):
        route, params, _ = router.match_http("GET", f"/r{i}/items/abc")
        assert route is not None and route.path == f"/r{i}/items/{{item_id}}"
        assert params == {"item_id": "abc"}
    route, params, _ = router.match_http("GET", "/users/me/posts/7")
    assert route is not None and route.path == "/users/me/posts/{post_id}"
    assert params == {"post_id": "7"}
    route, params, _ = router.match_http("GET", "/users/5/posts/7")
    assert route is not None and params == {"user_id": "5", "post_id": "7"}
    assert router.match_http("GET", "/static/9990/page")[0] is not None
    assert router.match_http("GET", "/static/9991/page")[0] is None
    assert router.match_http("GET", "/r10000/items/1")[0] is None
    assert router.match_http("GET", "/files/x/y")[1] == {"rest": "x/y"}


def test_lookup_visits_the_same_nodes_with_10_or_10000_routes(count_walks: list[int]) -> None:
    small, big = _big_router(10), _big_router(10_000)
    paths = ["/r5/items/1", "/users/me/posts/7", "/users/5/posts/7", "/files/a/b", "/r5/nope/1", "/zzz"]
    for path in paths:
        count_walks[0] = 0
        small_result = small.match_http("GET", path)
        small_visits = count_walks[0]
        count_walks[0] = 0
        big_result = big.match_http("GET", path)
        assert count_walks[0] == small_visits, path
        assert (small_result[0] is None) == (big_result[0] is None)
        # A walk visits at most one node per segment per branch tried, never per route.
        assert small_visits <= 3 * (path.count("/") + 1)


def test_static_paths_are_one_dict_lookup(count_walks: list[int]) -> None:
    router = _big_router(10_000)
    assert router.match_http("GET", "/static/9990/page")[0] is not None
    assert count_walks[0] == 0


# -- Router: properties -----------------------------------------------------------------------

_STATIC_WORDS = ["a", "b", "items"]
_segment_kind = st.sampled_from(["static", "static", "param"])


@st.composite
def _route_shapes(draw: st.DrawFn) -> list[str]:
    """A set of route paths; parameter names depend on depth, so names never conflict.

    New shapes often grow from a prefix of an earlier one, so siblings (static, parameter
    and catch-all side by side under one node) are common.
    """
    shapes: set[str] = set()
    for _ in range(draw(st.integers(1, 12))):
        parts: list[str] = []
        if shapes and draw(st.booleans()):
            base = [p for p in draw(st.sampled_from(sorted(shapes))).split("/")[1:] if p != "{rest:path}"]
            parts = base[: draw(st.integers(0, len(base)))]
        for _ in range(draw(st.integers(0 if parts else 1, 2))):
            if draw(_segment_kind) == "static":
                parts.append(draw(st.sampled_from(_STATIC_WORDS)))
            else:
                parts.append(f"{{p{len(parts)}}}")
        if draw(st.integers(0, 3)) == 0:
            parts.append("{rest:path}")
        shapes.add("/" + "/".join(parts))
    return sorted(shapes)


# An explicit alphabet (ASCII, Latin-1, CJK, an emoji, a NUL, a space, '%', '.') keeps
# hypothesis from building its Unicode tables, which costs a second on a fresh checkout.
_ALPHABET = "abxyz019-._~ %:;?#&=+\x00\u00e9\u00ff\u6f22\U0001f600"
_value = st.one_of(
    st.sampled_from(_STATIC_WORDS),
    st.text(_ALPHABET, min_size=1, max_size=6),
)


def _reference(routes: list[HTTPRoute], path: str) -> tuple[HTTPRoute | None, dict[str, str]]:
    """Brute force: of the routes whose pattern matches, the most specific one.

    Specificity compares segment by segment: static before parameter before catch-all.
    """
    best: tuple[tuple[int, ...], HTTPRoute, dict[str, str]] | None = None
    for route in routes:
        pattern, ranks = "", []
        for segment in route.segments:
            if segment == "{rest:path}":
                pattern += "/(?P<rest>.*)"
                ranks.append(2)
            elif segment.startswith("{"):
                pattern += f"/(?P<{segment[1:-1]}>[^/]+)"
                ranks.append(1)
            else:
                pattern += "/" + re.escape(segment)
                ranks.append(0)
        match = re.fullmatch(pattern, path, flags=re.DOTALL)
        if match is not None and (best is None or tuple(ranks) < best[0]):
            best = (tuple(ranks), route, match.groupdict())
    return (None, {}) if best is None else (best[1], best[2])


def _fill(path: str, draw: Callable[[Any], Any]) -> str:
    parts = []
    for segment in path.split("/")[1:]:
        if segment == "{rest:path}":
            parts.append("/".join(draw(st.lists(_value, max_size=3))))
        elif segment.startswith("{"):
            parts.append(draw(_value))
        else:
            parts.append(segment)
    return "/" + "/".join(parts)


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes=_route_shapes(), data=st.data())
def test_property_registered_paths_match_their_route(shapes: list[str], data: st.DataObject) -> None:
    router = Router()
    routes = [_route(shape) for shape in shapes]
    for route in routes:
        router.add(route)
    for route in routes:
        path = _fill(route.path, data.draw)
        found, params, allowed = router.match_http("GET", path)
        expected, expected_params = _reference(routes, path)
        # A value may collide with a more specific route (``{p1}`` = "items"); the router must
        # then pick that one, and it is never "no route" for a registered shape.
        assert found is not None, (path, route.path)
        assert found is expected, (path, found.path, expected and expected.path)
        assert params == expected_params
        assert allowed == frozenset()
        if expected is route:
            assert set(params) == {s.strip("{}").split(":")[0] for s in route.segments if s.startswith("{")}


_any_path = st.one_of(
    st.text(_ALPHABET + "/", max_size=30).map(lambda s: "/" + s),
    st.lists(_value, max_size=5).map(lambda parts: "/" + "/".join(parts)),
)


@settings(max_examples=150, deadline=None, database=None)
@given(shapes=_route_shapes(), data=st.data())
def test_property_any_path_agrees_with_brute_force(shapes: list[str], data: st.DataObject) -> None:
    router = Router()
    routes = [_route(shape) for shape in shapes]
    for route in routes:
        router.add(route)
    if data.draw(st.booleans()):
        path = data.draw(_any_path)
    else:
        # A near miss: a registered shape, filled, then cut short or made longer.
        path = _fill(data.draw(st.sampled_from(shapes)), data.draw)
        if data.draw(st.booleans()):
            path = path.rsplit("/", 1)[0] or "/"
        else:
            path += "/" + "/".join(data.draw(st.lists(_value, min_size=1, max_size=2)))
    found, params, _ = router.match_http("GET", path)
    expected, expected_params = _reference(routes, path)
    assert found is expected, (path, found and found.path, expected and expected.path)
    assert params == (expected_params if expected is not None else {})
    assert router.match_http("POST", path)[0] is None  # all routes are GET-only: 405 or 404


# -- app-level routing ------------------------------------------------------------------------


@pytest.fixture
def app() -> Faster:
    return Faster()


def _client(app: Faster, **options: Any) -> TestClient:
    return TestClient(app, **options)


def test_method_decorators(app: Faster) -> None:
    for method in ("get", "post", "put", "patch", "delete"):

        def handler(request: Request) -> dict[str, str]:
            return {"method": request.method}

        getattr(app, method)("/thing")(handler)

    @app.api_route("/multi", methods=["GET", "post"])
    async def multi(request: Request) -> str:
        return request.method

    with _client(app) as client:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            response = client.request(method, "/thing")
            assert response.status_code == 200
            assert response.json() == {"method": method}
        assert client.get("/multi").json() == "GET"
        assert client.post("/multi").json() == "POST"
        response = client.put("/multi")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD, POST"


def test_404_and_405(app: Faster) -> None:
    @app.get("/only-get")
    async def only_get() -> str:
        return "x"

    with _client(app) as client:
        response = client.get("/missing")
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}
        response = client.post("/only-get")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert response.json() == {"detail": "Method Not Allowed"}


def test_head_on_get_route(app: Faster) -> None:
    calls = []

    @app.get("/page")
    async def page() -> dict[str, str]:
        calls.append(1)
        return {"hello": "world"}

    with _client(app) as client:
        response = client.head("/page")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(b'{"hello":"world"}'))
    assert calls == [1]


def test_trailing_slash_redirects(app: Faster) -> None:
    @app.get("/no-slash")
    async def no_slash(q: str = "") -> str:
        return "no-slash" + q

    @app.get("/with-slash/")
    async def with_slash() -> str:
        return "with-slash"

    client = _client(app, follow_redirects=False)
    try:
        response = client.get("/no-slash/?q=1")
        assert response.status_code == 307
        assert response.headers["location"] == "http://testserver/no-slash?q=1"
        response = client.get("/with-slash")
        assert response.status_code == 307
        assert response.headers["location"] == "http://testserver/with-slash/"
        assert client.get("/unknown/").status_code == 404
        assert client.get("/no-slash/", follow_redirects=True).json() == "no-slash"
        # POST keeps its method through a 307.
        assert client.post("/no-slash/").status_code == 307
    finally:
        client.close()


def test_trailing_slash_redirect_when_host_contains_the_path(app: Faster) -> None:
    @app.get("/api")
    async def api() -> str:
        return "api"

    client = _client(app, base_url="http://api.example.com", follow_redirects=False)
    try:
        response = client.get("/api/")
        assert response.headers["location"] == "http://api.example.com/api"
    finally:
        client.close()


def test_trailing_slash_redirect_keeps_encoding(app: Faster) -> None:
    @app.get("/docs/{name}")
    async def doc(name: str) -> str:
        return name

    client = _client(app, follow_redirects=False)
    try:
        response = client.get("/docs/a%20b%3Fc/")
        assert response.status_code == 307
        assert response.headers["location"] == "http://testserver/docs/a%20b%3Fc"
        assert client.get("/docs/a%20b%3Fc/", follow_redirects=True).json() == "a b?c"
    finally:
        client.close()


def test_typed_path_param_and_422(app: Faster) -> None:
    @app.get("/items/{item_id}")
    async def read(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    with _client(app) as client:
        assert client.get("/items/5").json() == {"item_id": 5}
        response = client.get("/items/abc")
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert detail[0]["loc"] == ["path", "item_id"]
        assert detail[0]["type"] == "int_parsing"
        assert "abc" in detail[0]["msg"]


def test_path_converters_in_app(app: Faster) -> None:
    @app.get("/files/{rest:path}")
    async def files(rest: str) -> str:
        return rest

    @app.get("/n/{number:int}")
    async def number(number: int) -> int:
        return number * 2

    with _client(app) as client:
        assert client.get("/files/a/b/c.txt").json() == "a/b/c.txt"
        assert client.get("/n/21").json() == 42
        assert client.get("/n/abc").status_code == 404


def test_status_code_on_decorator(app: Faster) -> None:
    @app.post("/created", status_code=201)
    async def created() -> dict[str, bool]:
        return {"ok": True}

    with _client(app) as client:
        response = client.post("/created")
    assert response.status_code == 201
    assert response.json() == {"ok": True}


def test_include_router_prefixes_and_nesting(app: Faster) -> None:
    inner = APIRouter(prefix="/inner")

    @inner.get("/leaf/{leaf_id}")
    async def leaf(leaf_id: int) -> dict[str, int]:
        return {"leaf": leaf_id}

    @inner.get("/")
    async def inner_root() -> str:
        return "inner-root"

    outer = APIRouter(prefix="/outer")

    @outer.get("/here")
    async def here() -> str:
        return "here"

    outer.include_router(inner, prefix="/v1")
    app.include_router(outer, prefix="/api")

    with _client(app) as client:
        assert client.get("/api/outer/here").json() == "here"
        assert client.get("/api/outer/v1/inner/leaf/3").json() == {"leaf": 3}
        assert client.get("/api/outer/v1/inner/").json() == "inner-root"
        assert client.get("/outer/here").status_code == 404
        assert client.get("/inner/leaf/3").status_code == 404
    assert sorted(r.path for r in app.routes if r.include_in_schema) == [
        "/api/outer/here",
        "/api/outer/v1/inner/",
        "/api/outer/v1/inner/leaf/{leaf_id}",
    ]


def test_router_dependencies_combine(app: Faster) -> None:
    seen: list[str] = []

    def mark(label: str) -> Callable[[], None]:
        def dependency() -> None:
            seen.append(label)

        dependency.__name__ = f"mark_{label}"
        return dependency

    inner = APIRouter(prefix="/in", dependencies=[Depends(mark("inner"))])

    @inner.get("/x", dependencies=[Depends(mark("route"))])
    async def x() -> str:
        return "x"

    outer = APIRouter(prefix="/out", dependencies=[Depends(mark("outer"))])
    outer.include_router(inner)
    app.include_router(outer)

    with _client(app) as client:
        assert client.get("/out/in/x").json() == "x"
    assert seen == ["outer", "inner", "route"]


def test_app_level_dependencies() -> None:
    seen: list[str] = []

    def record(request: Request) -> None:
        seen.append(request.url.path)

    app = Faster(dependencies=[Depends(record)])

    @app.get("/a")
    async def a() -> str:
        return "a"

    router = APIRouter()

    @router.get("/b")
    async def b() -> str:
        return "b"

    app.include_router(router)
    with _client(app) as client:
        client.get("/a")
        client.get("/b")
    assert seen == ["/a", "/b"]


def test_bad_prefix() -> None:
    with pytest.raises(ValueError):
        APIRouter(prefix="api")
    with pytest.raises(ValueError):
        APIRouter(prefix="/api/")


def test_include_router_keeps_explicit_head_and_methods(app: Faster) -> None:
    router = APIRouter()

    @router.api_route("/h", methods=["HEAD"])
    async def only_head() -> None:
        return None

    @router.api_route("/gp", methods=["GET", "PUT"])
    async def get_put(request: Request) -> str:
        return request.method

    app.include_router(router, prefix="/p")
    with _client(app) as client:
        assert client.head("/p/h").status_code == 200
        assert client.get("/p/h").status_code == 405
        assert client.put("/p/gp").json() == "PUT"
        assert client.head("/p/gp").status_code == 200


def test_include_router_takes_prefix_tags_dependencies_and_responses(app: Faster) -> None:
    """FastAPI's per-router auth: dependencies given to include_router run for each route of
    that router, HTTP and WebSocket, after the app's and before the router's own."""
    seen: list[str] = []

    def mark(label: str) -> Callable[[], None]:
        def dependency() -> None:
            seen.append(label)

        dependency.__name__ = f"mark_{label}"
        return dependency

    app.dependencies.append(Depends(mark("app")))
    router = APIRouter(
        prefix="/items", tags=["items"], dependencies=[Depends(mark("router"))], responses={404: {"d": "nf"}}
    )

    @router.get("/", tags=["list"], responses={200: {"d": "ok"}})
    async def items() -> str:
        return "items"

    @router.websocket("/ws")
    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("socket")
        await ws.close()

    app.include_router(
        router, prefix="/v1", tags=["v1"], dependencies=[Depends(mark("include"))], responses={418: {"d": "tea"}}
    )
    with _client(app) as client:
        assert client.get("/v1/items/").json() == "items"
        assert seen == ["app", "include", "router"]
        seen.clear()
        with client.websocket_connect("/v1/items/ws") as session:
            assert session.receive_text() == "socket"
        assert seen == ["app", "include", "router"]
    by_path = {route.path: route for route in app.routes}
    assert by_path["/v1/items/"].tags == ["v1", "items", "list"]
    assert by_path["/v1/items/"].responses == {418: {"d": "tea"}, 404: {"d": "nf"}, 200: {"d": "ok"}}
    assert by_path["/v1/items/ws"].tags == ["v1", "items"]


def test_include_router_dependency_refuses_a_websocket_like_fastapi(app: Faster) -> None:
    """An HTTPException from a router's dependency refuses the handshake with its status."""

    def token(x_token: str = Header()) -> None:
        if x_token != "secret":
            raise HTTPException(400, "X-Token header invalid")

    router = APIRouter()

    @router.websocket("/ws")
    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("in")
        await ws.close()

    app.include_router(router, prefix="/admin", dependencies=[Depends(token)])
    with _client(app) as client:
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/admin/ws", headers={"X-Token": "wrong"}):
                pass  # pragma: no cover - refused
        assert denied.value.status_code == 400
        assert denied.value.json() == {"detail": "X-Token header invalid"}
        with pytest.raises(WebSocketDisconnect) as invalid:  # no header at all: a validation error
            with client.websocket_connect("/admin/ws"):
                pass  # pragma: no cover - refused
        assert invalid.value.code == 1008
        with client.websocket_connect("/admin/ws", headers={"X-Token": "secret"}) as session:
            assert session.receive_text() == "in"


def test_include_router_checks_its_prefix(app: Faster) -> None:
    with pytest.raises(ValueError, match="prefix"):
        app.include_router(APIRouter(), prefix="admin")
    with pytest.raises(ValueError, match="prefix"):
        app.include_router(APIRouter(), prefix="/admin/")
