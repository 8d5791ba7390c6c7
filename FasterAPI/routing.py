"""Routes, the radix-tree router, and ``APIRouter``.

Lookup walks one tree node per path segment (a dict lookup for static segments), so its cost
grows with the depth of the path, never with the number of routes. Paths without parameters
are answered by a single dict lookup.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import msgspec

from .dependencies import Dependant, Depends
from .types import ASGIApp, Scope

__all__ = ["APIRouter", "HTTPRoute", "Mount", "Router", "WebSocketRoute"]

Handler = TypeVar("Handler", bound=Callable[..., Any])

_PARAM = re.compile(r"^\{([A-Za-z_]\w*)(?::(str|path|int|float))?\}$")


def _parse(path: str) -> tuple[list[str], set[str]]:
    if not path.startswith("/"):
        raise ValueError(f"Route paths must start with '/', got {path!r}")
    segments = path.split("/")[1:]
    names: set[str] = set()
    for index, segment in enumerate(segments):
        if "{" in segment or "}" in segment:
            match = _PARAM.match(segment)
            if match is None:
                raise ValueError(
                    f"Bad path segment {segment!r} in {path!r}: a parameter must fill its segment, "
                    "as in '/items/{item_id}' or '/files/{rest:path}'"
                )
            name, kind = match.groups()
            if name in names:
                raise ValueError(f"Duplicate path parameter {name!r} in {path!r}")
            if kind == "path" and index != len(segments) - 1:
                raise ValueError(f"A ':path' parameter must be the last segment, in {path!r}")
            names.add(name)
    return segments, names


class BaseRoute:
    """A path and the compiled plan for its handler.

    ``tags``, ``responses``, ``summary``, ``description`` (else the handler's docstring),
    ``deprecated``, ``operation_id`` and ``include_in_schema`` only change the OpenAPI and
    AsyncAPI documents.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        name: str | None = None,
        dependencies: Sequence[Depends] = (),
        tags: Sequence[str] = (),
        responses: Mapping[int | str, Any] | None = None,
        summary: str | None = None,
        description: str | None = None,
        deprecated: bool | None = None,
        operation_id: str | None = None,
        include_in_schema: bool = True,
    ) -> None:
        self.path = path
        self.endpoint = endpoint
        self.name: str = name or str(getattr(endpoint, "__name__", path))
        self.segments, names = _parse(path)
        self.dependencies = list(dependencies)
        self.tags = list(tags)
        self.responses: dict[int | str, Any] = dict(responses or {})
        self.summary = summary
        self.description = description
        self.deprecated = deprecated
        self.operation_id = operation_id
        self.include_in_schema = include_in_schema
        self.dependant = Dependant(endpoint, frozenset(names), extra=self.dependencies)

    def schema_options(self) -> dict[str, Any]:
        """The documentation keywords this route was made with (``include_router`` copies them)."""
        return {
            "summary": self.summary,
            "description": self.description,
            "deprecated": self.deprecated,
            "operation_id": self.operation_id,
            "include_in_schema": self.include_in_schema,
        }


class HTTPRoute(BaseRoute):
    """An HTTP route: methods, status code, and response class for plain return values.

    ``response_model`` (else the return annotation) is what the 2xx response documents; when
    given, the return value is also converted to it (``msgspec.convert``, reading attributes),
    so fields it does not declare are left out, as in FastAPI.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Sequence[str] = ("GET",),
        status_code: int | None = None,
        response_class: type | None = None,
        name: str | None = None,
        dependencies: Sequence[Depends] = (),
        tags: Sequence[str] = (),
        responses: Mapping[int | str, Any] | None = None,
        response_model: Any = None,
        response_description: str = "Successful Response",
        **schema_options: Any,
    ) -> None:
        if inspect.isasyncgenfunction(endpoint) or inspect.isgeneratorfunction(endpoint):
            endpoint = _streaming_endpoint(endpoint, path, response_class)
        super().__init__(
            path, endpoint, name=name, dependencies=dependencies, tags=tags, responses=responses, **schema_options
        )
        self.response_model = response_model
        self.response_description = response_description
        self.methods = {m.upper() for m in methods}
        if not self.methods:
            raise ValueError(f"Route {path!r} needs at least one HTTP method")
        # HEAD comes free with GET; a route that names HEAD itself takes over from the implied one.
        self.implicit_head = "GET" in self.methods and "HEAD" not in self.methods
        if self.implicit_head:
            self.methods.add("HEAD")
        self.status_code = status_code
        self.response_class = response_class

    def to_response_model(self, result: Any) -> Any:
        """``result`` as ``response_model`` (a Struct's attributes, a dict's keys...): what it
        does not declare is left out; a value that does not fit is an error (a 500)."""
        return msgspec.convert(result, self.response_model, from_attributes=True)


def _streaming_endpoint(endpoint: Callable[..., Any], path: str, response_class: type | None) -> Callable[..., Any]:
    """A generator handler, as FastAPI's SSE routes are: a handler returning its generator,
    which ``response_class`` (``EventSourceResponse``, ``StreamingResponse``) then streams."""
    from .responses import StreamingResponse
    from .sse import EventSourceResponse

    if response_class is None or not issubclass(response_class, StreamingResponse):
        raise TypeError(
            f"The handler of {path!r} is a generator: declare how to stream what it yields, "
            "e.g. response_class=EventSourceResponse (FasterAPI.sse) or StreamingResponse"
        )
    if issubclass(response_class, EventSourceResponse) and not inspect.isasyncgenfunction(endpoint):
        raise TypeError(
            f"The handler of {path!r} streams server-sent events: make it an 'async def' generator "
            "(a plain generator would block the event loop while it waits for its next event)"
        )

    @functools.wraps(endpoint)
    async def start(**kwargs: Any) -> Any:
        return endpoint(**kwargs)

    return start


def _reads_form_fields(dependant: Dependant) -> bool:
    return bool(dependant.form_fields) or any(_reads_form_fields(sub) for _, sub in dependant.sub)


class WebSocketRoute(BaseRoute):
    """A WebSocket route; ``allowed_origins`` overrides the app's list for this route.

    ``receives`` and ``sends`` name the messages (msgspec Structs, or a union of them) that the
    client sends and that the route sends back, for the AsyncAPI document.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        name: str | None = None,
        dependencies: Sequence[Depends] = (),
        allowed_origins: Sequence[str] | None = None,
        tags: Sequence[str] = (),
        receives: Any = None,
        sends: Any = None,
        **schema_options: Any,
    ) -> None:
        super().__init__(path, endpoint, name=name, dependencies=dependencies, tags=tags, **schema_options)
        self.receives = receives
        self.sends = sends
        if self.dependant.kind != "async":
            raise TypeError(f"WebSocket endpoint {self.name!r} must be an 'async def' function")
        if _reads_form_fields(self.dependant):
            raise TypeError(
                f"WebSocket endpoint {self.name!r} takes Form or File parameters: only HTTP requests have forms"
            )
        self.allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)


class Mount:
    """An ASGI app serving everything under ``path`` (``app.mount("/static", StaticFiles(...))``)."""

    def __init__(self, path: str, app: ASGIApp, *, name: str | None = None) -> None:
        if path == "/":
            path = ""
        if path and (not path.startswith("/") or path.endswith("/")):
            raise ValueError(f"A mount path must start with '/' and not end with '/', got {path!r}")
        if "{" in path:
            raise ValueError(f"A mount path takes no parameters, got {path!r}")
        self.path = path
        self.app = app
        self.name = name

    def child_scope(self, scope: Scope) -> Scope | None:
        """The scope ``app`` sees for a request under this mount, or None if it is not under it."""
        path: str = scope["path"]
        prefix = self.path
        if not path.startswith(prefix):
            return None
        rest = path[len(prefix) :]
        if rest and not rest.startswith("/"):
            return None  # "/staticfoo" is not under "/static"
        child = dict(scope)
        child["path"] = rest
        child["root_path"] = scope.get("root_path", "") + prefix
        return child


_ANY_HTTP = "*"  # a _walk target: any node with an HTTP route (for 405)
_WEBSOCKET = ""  # a _walk target: a node with a WebSocket route
_NO_METHODS: frozenset[str] = frozenset()


def _segment_fits(kind: str, segment: str) -> bool:
    """Whether ``segment`` can fill a ``{name:kind}`` parameter (``str`` takes anything)."""
    if kind == "int":
        return segment.isascii() and segment.isdigit()
    if kind == "float":
        whole, dot, fraction = segment.partition(".")
        if not (whole.isascii() and whole.isdigit()):
            return False
        return not dot or (fraction.isascii() and fraction.isdigit())
    return True


class _Node:
    __slots__ = ("catchall", "head_implicit", "http", "param", "param_kind", "param_name", "static", "ws")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.param_name = ""
        self.param_kind = "str"
        self.catchall: tuple[str, _Node] | None = None
        self.http: dict[str, HTTPRoute] = {}
        self.head_implicit = False
        self.ws: WebSocketRoute | None = None

    def accepts(self, target: str) -> bool:
        if target == _WEBSOCKET:
            return self.ws is not None
        if target == _ANY_HTTP:
            return bool(self.http)
        return target in self.http


class Router:
    """Compiled lookup for HTTP and WebSocket routes.

    A full match wins over a partial one: ``GET /items/new`` reaches ``GET /items/{id}`` even
    when ``/items/new`` exists for POST only; when no route has the method, the path's
    methods come back for a 405. Static segments beat parameters, parameters beat
    ``{rest:path}`` catch-alls, at each level.
    """

    def __init__(self) -> None:
        self.routes: list[BaseRoute] = []
        #: Mounted apps, longest path first (tried when no route takes a request).
        self.mounts: list[Mount] = []
        self._root = _Node()
        # Parameter-free paths: one dict lookup, no tree walk.
        self._static: dict[str, _Node] = {}

    def add(self, route: BaseRoute) -> None:
        # Check everything before changing anything, so a rejected route leaves no trace.
        self._check(route)
        node = self._root
        has_params = False
        for segment in route.segments:
            match = _PARAM.match(segment)
            if match is None:
                node = node.static.setdefault(segment, _Node())
                continue
            has_params = True
            name, kind = match.groups()
            if kind == "path":
                if node.catchall is None:
                    node.catchall = (name, _Node())
                node = node.catchall[1]
                break
            if node.param is None:
                node.param = _Node()
                node.param_name = name
                node.param_kind = kind or "str"
            node = node.param
        if isinstance(route, WebSocketRoute):
            node.ws = route
        elif isinstance(route, HTTPRoute):
            for method in route.methods - {"HEAD"}:
                node.http[method] = route
            if route.implicit_head:
                if "HEAD" not in node.http:
                    node.http["HEAD"] = route
                    node.head_implicit = True
            elif "HEAD" in route.methods:
                node.http["HEAD"] = route
                node.head_implicit = False
        if not has_params:
            self._static["/" + "/".join(route.segments)] = node
        self.routes.append(route)

    def mount(self, mount: Mount) -> None:
        if any(other.path == mount.path for other in self.mounts):
            raise ValueError(f"Something is already mounted at {mount.path or '/'!r}")
        self.mounts.append(mount)
        self.mounts.sort(key=lambda m: len(m.path), reverse=True)

    def match_mount(self, scope: Scope) -> tuple[Mount, Scope] | None:
        """The mount under which ``scope``'s path falls, and the scope its app is called with.

        The mount's own path (``/static``) comes with an empty ``path``: an HTTP app such as
        StaticFiles redirects it to ``/static/``.
        """
        for mount in self.mounts:
            child = mount.child_scope(scope)
            if child is not None:
                return mount, child
        return None

    def _check(self, route: BaseRoute) -> None:
        """Raise ValueError if ``route`` conflicts with the routes already added."""
        node: _Node | None = self._root
        for segment in route.segments:
            assert node is not None
            match = _PARAM.match(segment)
            if match is None:
                node = node.static.get(segment)
            else:
                name, kind = match.groups()
                if kind == "path":
                    taken = node.catchall[0] if node.catchall is not None else name
                    taken_kind = kind
                    node = None if node.catchall is None else node.catchall[1]
                else:
                    taken = node.param_name if node.param is not None else name
                    taken_kind = node.param_kind if node.param is not None else (kind or "str")
                    node = node.param
                if taken != name:
                    raise ValueError(
                        f"Route {route.path!r} names a parameter {name!r} where another route has "
                        f"{taken!r}; use the same name"
                    )
                if taken_kind != (kind or "str"):
                    raise ValueError(
                        f"Route {route.path!r} declares {{{name}:{kind or 'str'}}} where another route has "
                        f"{{{name}:{taken_kind}}}; use the same type"
                    )
            if node is None:
                return
        if node is None:
            return
        if isinstance(route, WebSocketRoute):
            if node.ws is not None:
                raise ValueError(f"A WebSocket route for {route.path!r} already exists")
            return
        assert isinstance(route, HTTPRoute)
        for method in sorted(route.methods):
            if method not in node.http:
                continue
            if method == "HEAD" and (route.implicit_head or node.head_implicit):
                continue
            raise ValueError(f"Route {method} {route.path!r} already exists")

    def _find(self, path: str, target: str) -> tuple[_Node, dict[str, str]] | None:
        node = self._static.get(path)
        if node is not None and node.accepts(target):
            return node, {}
        params: dict[str, str] = {}
        found = self._walk(self._root, path.split("/")[1:], 0, params, target)
        return None if found is None else (found, params)

    def _walk(
        self, node: _Node, segments: list[str], index: int, params: dict[str, str], target: str
    ) -> _Node | None:
        if index == len(segments):
            return node if node.accepts(target) else None
        segment = segments[index]
        child = node.static.get(segment)
        if child is not None:
            found = self._walk(child, segments, index + 1, params, target)
            if found is not None:
                return found
        param = node.param
        if param is not None and segment and _segment_fits(node.param_kind, segment):
            found = self._walk(param, segments, index + 1, params, target)
            if found is not None:
                params[node.param_name] = segment
                return found
        if node.catchall is not None:
            name, leaf = node.catchall
            if leaf.accepts(target):
                params[name] = "/".join(segments[index:])
                return leaf
        return None

    def match_http(
        self, method: str, path: str
    ) -> tuple[HTTPRoute | None, dict[str, str], frozenset[str]]:
        """(route, path params, allowed methods); route is None for 404 (no methods) or 405."""
        node = self._static.get(path)
        if node is not None:
            route = node.http.get(method)
            if route is not None:
                return route, {}, _NO_METHODS
        found = self._find(path, method)
        if found is not None:
            return found[0].http[method], found[1], _NO_METHODS
        found = self._find(path, _ANY_HTTP)
        if found is None:
            return None, {}, _NO_METHODS
        return None, found[1], frozenset(found[0].http)

    def match_websocket(self, path: str) -> tuple[WebSocketRoute | None, dict[str, str]]:
        found = self._find(path, _WEBSOCKET)
        if found is None or found[0].ws is None:
            return None, {}
        return found[0].ws, found[1]


class APIRouter:
    """A group of routes with a common prefix, dependencies and tags, added with ``include_router``.

    ``tags`` and ``responses`` are added to each route's OpenAPI documentation.
    """

    def __init__(
        self,
        prefix: str = "",
        *,
        dependencies: Sequence[Depends] = (),
        tags: Sequence[str] = (),
        responses: Mapping[int | str, Any] | None = None,
    ) -> None:
        _check_prefix(prefix)
        self.prefix = prefix
        self.dependencies = list(dependencies)
        self.tags = list(tags)
        self.responses: dict[int | str, Any] = dict(responses or {})
        self.routes: list[BaseRoute] = []

    def add_route(self, route: BaseRoute) -> None:
        self.routes.append(route)

    def api_route(
        self,
        path: str,
        *,
        methods: Sequence[str] = ("GET",),
        status_code: int | None = None,
        response_class: type | None = None,
        name: str | None = None,
        dependencies: Sequence[Depends] = (),
        tags: Sequence[str] = (),
        responses: Mapping[int | str, Any] | None = None,
        response_model: Any = None,
        response_description: str = "Successful Response",
        summary: str | None = None,
        description: str | None = None,
        deprecated: bool | None = None,
        operation_id: str | None = None,
        include_in_schema: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Register an HTTP handler for ``methods`` on ``path`` (the documentation keywords are
        :class:`HTTPRoute`'s)."""

        def decorator(func: Handler) -> Handler:
            self.add_route(
                HTTPRoute(
                    self.prefix + path,
                    func,
                    methods=methods,
                    status_code=status_code,
                    response_class=response_class,
                    name=name,
                    dependencies=[*self.dependencies, *dependencies],
                    tags=[*self.tags, *tags],
                    responses={**self.responses, **(responses or {})},
                    response_model=response_model,
                    response_description=response_description,
                    summary=summary,
                    description=description,
                    deprecated=deprecated,
                    operation_id=operation_id,
                    include_in_schema=include_in_schema,
                )
            )
            return func

        return decorator

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.api_route(path, methods=("GET",), **options)

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.api_route(path, methods=("POST",), **options)

    def put(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.api_route(path, methods=("PUT",), **options)

    def patch(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.api_route(path, methods=("PATCH",), **options)

    def delete(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.api_route(path, methods=("DELETE",), **options)

    def websocket(
        self,
        path: str,
        name: str | None = None,
        *,
        dependencies: Sequence[Depends] = (),
        allowed_origins: Sequence[str] | None = None,
        receives: Any = None,
        sends: Any = None,
        summary: str | None = None,
        description: str | None = None,
        deprecated: bool | None = None,
        operation_id: str | None = None,
        include_in_schema: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Register a WebSocket handler on ``path``; ``receives``/``sends`` document its messages
        in the AsyncAPI document (see :class:`WebSocketRoute`)."""

        def decorator(func: Handler) -> Handler:
            self.add_route(
                WebSocketRoute(
                    self.prefix + path,
                    func,
                    name=name,
                    dependencies=[*self.dependencies, *dependencies],
                    allowed_origins=allowed_origins,
                    tags=self.tags,
                    receives=receives,
                    sends=sends,
                    summary=summary,
                    description=description,
                    deprecated=deprecated,
                    operation_id=operation_id,
                    include_in_schema=include_in_schema,
                )
            )
            return func

        return decorator

    def include_router(
        self,
        router: APIRouter,
        *,
        prefix: str = "",
        tags: Sequence[str] = (),
        dependencies: Sequence[Depends] = (),
        responses: Mapping[int | str, Any] | None = None,
        include_in_schema: bool = True,
    ) -> None:
        """Add every route of ``router`` under ``prefix`` (after this router's own prefix).

        ``dependencies`` run for each of those routes, after this router's and before
        ``router``'s own (an auth check for a whole router); ``tags`` and ``responses`` are
        added to each route's metadata, as FastAPI does; ``include_in_schema=False`` leaves
        them all out of the documents.
        """
        _check_prefix(prefix)
        dependencies = [*self.dependencies, *dependencies]
        extra = _Including(self.prefix + prefix, dependencies, list(tags), dict(responses or {}), include_in_schema)
        for route in router.routes:
            self.add_route(_included(route, extra))


def _check_prefix(prefix: str) -> None:
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError(f"A prefix must start with '/' and not end with '/', got {prefix!r}")


class _Including(NamedTuple):
    """What ``include_router`` adds to each route it copies."""

    prefix: str
    dependencies: list[Depends]
    tags: list[str]
    responses: dict[int | str, Any]
    include_in_schema: bool


def _included(route: BaseRoute, extra: _Including) -> BaseRoute:
    deps = [*extra.dependencies, *route.dependencies]
    tags = [*extra.tags, *route.tags]
    schema_options = route.schema_options()
    schema_options["include_in_schema"] = route.include_in_schema and extra.include_in_schema
    if isinstance(route, WebSocketRoute):
        origins = None if route.allowed_origins is None else sorted(route.allowed_origins)
        return WebSocketRoute(
            extra.prefix + route.path,
            route.endpoint,
            name=route.name,
            dependencies=deps,
            allowed_origins=origins,
            tags=tags,
            receives=route.receives,
            sends=route.sends,
            **schema_options,
        )
    assert isinstance(route, HTTPRoute)
    return HTTPRoute(
        extra.prefix + route.path,
        route.endpoint,
        methods=sorted(route.methods - {"HEAD"} if route.implicit_head else route.methods),
        status_code=route.status_code,
        response_class=route.response_class,
        name=route.name,
        dependencies=deps,
        tags=tags,
        responses={**extra.responses, **route.responses},
        response_model=route.response_model,
        response_description=route.response_description,
        **schema_options,
    )
