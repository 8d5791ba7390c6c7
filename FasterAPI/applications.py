"""``Faster``: the ASGI application, its routes, lifespan and exception handling."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import msgspec

from . import status
from .asyncapi.utils import AsyncAPISource, get_asyncapi
from .background import BACKGROUND_SCOPE_KEY
from .config import HubConfig
from .datastructures import URL, State
from .dependencies import Depends
from .exceptions import (
    HTTPException,
    InvalidJSONMessage,
    RequestValidationError,
    UnexpectedFrameType,
    WebSocketDisconnect,
    WebSocketException,
)
from .middleware import Middleware, build_chains
from .middleware.base import BaseHTTPMiddleware, DispatchFunction
from .openapi.routes import DocsSettings, documentation_routes
from .openapi.utils import get_openapi
from .pubsub.envelope import Identified
from .pubsub.history import History, Position
from .pubsub.hub import Hub
from .realtime import Realtime
from .realtime import frames as realtime_frames
from .requests import FORM_SCOPE_KEY, Request
from .responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from .routing import APIRouter, BaseRoute, Handler, Mount, Router, WebSocketRoute
from .types import RAISE_EXCEPTIONS_EXTENSION, ASGIApp, Receive, Scope, Send
from .websockets import DENIAL_EXTENSION, WebSocket, WebSocketState

if TYPE_CHECKING:
    from .pubsub.backends.base import Backend

logger = logging.getLogger("fasterapi")

Lifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]
#: ``handler(request, exc)`` for HTTP, ``handler(websocket, exc)`` for a WebSocket route; sync or async.
ExceptionHandler = Callable[[Any, Any], Any]

_json_encode = msgspec.json.Encoder().encode
_JSON_TYPE = (b"content-type", b"application/json")


class Faster(APIRouter):
    """The application: ``app = Faster()``, then ``@app.get``, ``@app.websocket``...

    ``backend`` picks the pub/sub relay for rooms and broadcast: ``"memory://"`` (one
    process, the default), ``"redis://host:6379/0"``, or a backend object. When it is not
    given, the ``FASTERAPI_BACKEND`` environment variable decides. ``history`` keeps each
    room's recent messages so that a Redis blip or a client reconnect loses nothing
    (``History(size=1000, ttl=300)``; ``FASTERAPI_HISTORY_SIZE`` / ``_TTL`` when not given).
    """

    def __init__(
        self,
        *,
        lifespan: Lifespan | None = None,
        on_startup: Sequence[Callable[[], Any]] = (),
        on_shutdown: Sequence[Callable[[], Any]] = (),
        exception_handlers: Mapping[int | type[Exception], ExceptionHandler] | None = None,
        dependencies: Sequence[Depends] = (),
        backend: str | Backend | None = None,
        history: History | None = None,
        allowed_origins: Sequence[str] | None = None,
        title: str = "FasterAPI",
        version: str = "0.1.0",
        summary: str | None = None,
        description: str = "",
        openapi_url: str | None = "/openapi.json",
        docs_url: str | None = "/docs",
        redoc_url: str | None = "/redoc",
        asyncapi_url: str | None = "/asyncapi.json",
        asyncapi_docs_url: str | None = "/asyncapi",
        openapi_tags: Sequence[Mapping[str, Any]] | None = None,
        servers: Sequence[Mapping[str, Any]] | None = None,
        swagger_ui_parameters: Mapping[str, Any] | None = None,
        middleware: Sequence[Middleware] = (),
        **hub_options: Any,
    ) -> None:
        _check_hub_options(hub_options)
        super().__init__(dependencies=dependencies)
        self.docs = DocsSettings(
            title=title,
            version=version,
            summary=summary,
            description=description,
            openapi_url=openapi_url,
            docs_url=docs_url,
            redoc_url=redoc_url,
            asyncapi_url=asyncapi_url,
            asyncapi_docs_url=asyncapi_docs_url,
            openapi_tags=openapi_tags,
            servers=servers,
            swagger_ui_parameters=swagger_ui_parameters,
        )
        #: The OpenAPI and AsyncAPI documents, built on first request (FastAPI's attribute name).
        self.openapi_schema: dict[str, Any] | None = None
        self.asyncapi_schema: dict[str, Any] | None = None
        #: What adds channels to the AsyncAPI document besides the WebSocket routes.
        self.asyncapi_sources: list[AsyncAPISource] = []
        self.router = Router()
        self.state = State()
        self.lifespan_context = lifespan
        self.on_startup = list(on_startup)
        self.on_shutdown = list(on_shutdown)
        self.exception_handlers: dict[int | type[Exception], ExceptionHandler] = dict(exception_handlers or {})
        self.allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)
        self._backend_option = backend
        self._hub_options = {"history": history, **hub_options}
        self._hub: Hub | None = None
        #: WebSocket connections being served by this process right now.
        self.open_websockets = 0
        #: The middleware, outermost first (``add_middleware`` inserts at the front).
        self.user_middleware: list[Middleware] = list(middleware)
        for entry in self.user_middleware:
            if not isinstance(entry, Middleware):
                raise TypeError(f"Faster(middleware=[...]) takes Middleware(cls, **options) entries, got {entry!r}")
        #: Per scope type, the app wrapped in its middleware; built on the first call.
        self._chains: dict[str, ASGIApp] | None = None
        #: ``{dependency: replacement}``, consulted for every HTTP and WebSocket route (tests).
        self.dependency_overrides: dict[Callable[..., Any], Callable[..., Any]] = {}
        for route in documentation_routes(self):
            self.add_route(route)

    # -- routes --------------------------------------------------------------------------

    def add_route(self, route: BaseRoute) -> None:
        self.router.add(route)

    @property
    def routes(self) -> list[BaseRoute]:
        return self.router.routes

    @routes.setter
    def routes(self, value: list[BaseRoute]) -> None:
        # APIRouter.__init__ assigns an empty list; the Router owns the real one.
        pass

    def exception_handler(self, key: int | type[Exception]) -> Callable[[Handler], Handler]:
        """Register a handler for an exception class or an HTTP status code."""

        def decorator(func: Handler) -> Handler:
            self.exception_handlers[key] = func
            return func

        return decorator

    def on_event(self, event: str) -> Callable[[Handler], Handler]:
        """``@app.on_event("startup")`` / ``("shutdown")``."""
        if event not in ("startup", "shutdown"):
            raise ValueError(f"Unknown event {event!r}; expected 'startup' or 'shutdown'")

        def decorator(func: Handler) -> Handler:
            (self.on_startup if event == "startup" else self.on_shutdown).append(func)
            return func

        return decorator

    # -- documentation -------------------------------------------------------------------

    @property
    def title(self) -> str:
        """``Faster(title=)``, read as in FastAPI (``get_openapi(title=app.title, ...)``)."""
        return self.docs.title

    @property
    def version(self) -> str:
        return self.docs.version

    @property
    def description(self) -> str:
        return self.docs.description

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the HTTP routes (built once; assign ``app.openapi`` to
        customise it, as in FastAPI)."""
        if self.openapi_schema is None:
            self.openapi_schema = get_openapi(
                title=self.docs.title,
                version=self.docs.version,
                summary=self.docs.summary,
                description=self.docs.description,
                routes=self.routes,
                tags=self.docs.openapi_tags,
                servers=self.docs.servers,
            )
        return self.openapi_schema

    def asyncapi(self) -> dict[str, Any]:
        """The AsyncAPI 3.0 document of the WebSocket routes and ``asyncapi_sources`` (built once)."""
        if self.asyncapi_schema is None:
            self.asyncapi_schema = get_asyncapi(
                title=self.docs.title,
                version=self.docs.version,
                description=self.docs.description,
                routes=self.routes,
                sources=self.asyncapi_sources,
            )
        return self.asyncapi_schema

    def mount(self, path: str, app: ASGIApp, name: str | None = None) -> None:
        """Serve every request under ``path`` with ``app`` (StaticFiles, another ASGI app).

        The mounted app sees the rest of the path in ``scope["path"]`` and ``path`` added to
        ``scope["root_path"]``; ``path`` itself redirects to ``path + "/"``. Routes win over mounts.
        """
        self.router.mount(Mount(path, app, name=name))

    # -- middleware ----------------------------------------------------------------------

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        """Wrap the app in ``middleware_class(app, *args, **kwargs)``, outside those added before.

        Only before the app has served anything: the stack is built on the first call.
        """
        if self._chains is not None:
            raise RuntimeError("Cannot add middleware after an application has started")
        self.user_middleware.insert(0, Middleware(middleware_class, *args, **kwargs))

    def middleware(self, middleware_type: str) -> Callable[[DispatchFunction], DispatchFunction]:
        """``@app.middleware("http")`` on ``async def f(request, call_next)``: a function middleware."""
        if middleware_type != "http":
            raise ValueError(f"Only 'http' function middleware is supported, got {middleware_type!r}")

        def decorator(func: DispatchFunction) -> DispatchFunction:
            self.add_middleware(BaseHTTPMiddleware, dispatch=func)
            return func

        return decorator

    def _build_middleware(self) -> dict[str, ASGIApp]:
        self._chains = build_chains(self.user_middleware, functools.partial(self.__call__, _routed=True))
        return self._chains

    # -- the hub -------------------------------------------------------------------------

    @property
    def hub(self) -> Hub:
        """The rooms and broadcast hub (created on first use, started with the lifespan)."""
        if self._hub is None:
            self._hub = Hub(self._backend_option, **self._hub_options)
        return self._hub

    async def broadcast(self, room: str, data: Any, *, exclude: Identified | str | None = None) -> Position | None:
        """Send ``data`` to every member of ``room`` on every worker sharing the backend.

        ``str`` goes out as a text frame, ``bytes`` as binary, anything else as JSON text.
        Returns the message's :class:`Position` in the room's history (None without history).
        """
        return await self.hub.broadcast(room, data, exclude=exclude)

    async def send_to(self, connection_id: str, data: Any) -> None:
        """Send ``data`` to one connection (``ws.id``), whichever worker holds it."""
        await self.hub.send_to(connection_id, data)

    async def room_size(self, room: str) -> int:
        """How many connections are in ``room`` across the cluster."""
        return await self.hub.room_size(room)

    async def room_members(self, room: str) -> list[str]:
        """The connection ids in ``room`` across the cluster."""
        return await self.hub.room_members(room)

    async def room_history(
        self, room: str, since: Position | None = None, limit: int = 100
    ) -> list[tuple[Position, Any]]:
        """The retained ``(Position, data)`` of ``room`` after ``since`` (else the newest ``limit``).

        ``data`` is as it was sent: str, bytes, or the JSON value. Needs history on for the room.
        """
        return await self.hub.room_history(room, since, limit)

    async def presence(self, room: str) -> dict[str, Any]:
        """``{connection id: metadata}`` of ``room`` across the cluster.

        The metadata is what the room's realtime guard returned for that connection (None for
        a member joined without one, e.g. by ``ws.join``).
        """
        return await self.hub.presence_of(room)

    async def kick(self, connection_id: str, room: str, reason: str = "") -> None:
        """Take a realtime connection out of ``room``, on whichever worker holds it.

        It receives no more of the room from then on, then ``left`` with ``reason``; the
        client does not rejoin by itself.
        """
        await self.hub.send_control(realtime_frames.kick(room, reason), target=connection_id)

    def realtime(self, path: str, *, ping_interval: float = 10.0) -> Realtime:
        """A realtime endpoint at ``path`` (one WebSocket for every room) and its browser client
        at ``path + "/client.js"``; declare its rooms with ``@rt.room(pattern)``."""
        return Realtime(self, path, ping_interval=ping_interval)

    def on_room_gap(self, func: Handler) -> Handler:
        """Call ``func(room, gap)`` (sync or async) when messages of a room could not be recovered.

        The room's history no longer held them (``gap.first`` to ``gap.last``), or was lost
        altogether (``gap.epoch_changed``): this worker's members of ``room`` missed them.
        """
        self.hub.gap_hooks.append(func)
        return func

    def on_backend_reconnect(self, func: Handler) -> Handler:
        """Call ``func`` (sync or async) in each worker after its backend reconnects.

        Pub/sub is at-most-once: messages published during the outage were missed, so this
        is where an app resyncs its clients.
        """
        self.hub.reconnect_hooks.append(func)
        return func

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send, *, _routed: bool = False) -> None:
        scope["app"] = self
        if not _routed:
            # From the server: through the middleware chain for this scope type, if there is
            # one. The chain ends in this method again, with ``_routed`` (a partial: no frame).
            chains = self._chains
            if chains is None:
                chains = self._build_middleware()
            if chains:
                chain = chains.get(scope["type"])
                if chain is not None:
                    await chain(scope, receive, send)
                    return
        kind = scope["type"]
        if kind != "websocket":
            if kind == "http":
                await self._handle_http(scope, receive, send)
            elif kind == "lifespan":
                await self._handle_lifespan(scope, receive, send)
            else:
                raise RuntimeError(f"Unsupported ASGI scope type {kind!r}")
            return
        # A WebSocket is served in this frame rather than in a helper's: a coroutine frame
        # stays suspended for the whole life of each open socket, so every frame between the
        # server and the endpoint is memory per idle connection.
        hub = self.hub
        ws = WebSocket(scope, receive, send, hub=hub)
        route, params = self.router.match_websocket(scope["path"])
        if route is None and self.router.mounts and await self._serve_mount(scope, receive, send):
            return
        if route is None:
            # As Starlette: a close before accept, which the server answers with HTTP 403.
            await _quiet_close(ws, status.WS_1000_NORMAL_CLOSURE)
            return
        origins = route.allowed_origins if route.allowed_origins is not None else self.allowed_origins
        if origins is not None and not _origin_allowed(ws, origins):
            logger.warning("Rejected WebSocket %s from origin %r", scope["path"], ws.headers.get("origin"))
            await _quiet_close(ws, status.WS_1000_NORMAL_CLOSURE)
            return
        scope["path_params"] = params
        self.open_websockets += 1
        dependant = route.dependant
        unhandled: Exception | None = None
        try:
            # Likewise the endpoint is awaited right here, without an exit stack it does not need.
            if dependant.needs_stack:
                async with AsyncExitStack() as stack:
                    await dependant.call(**await dependant.arguments(ws, params, stack))
            else:
                await dependant.call(**await dependant.arguments(ws, params, None))
        except Exception as error:
            unhandled = await self._websocket_error(ws, route, error)
        finally:
            self.open_websockets -= 1
            if ws.id in hub.connections:
                await hub.discard(ws.id)
        if ws.application_state is not WebSocketState.DISCONNECTED:
            # Returned without closing: close normally (before accept, the server answers 403).
            await _quiet_close(ws, status.WS_1000_NORMAL_CLOSURE)
        if unhandled is not None and RAISE_EXCEPTIONS_EXTENSION in scope.get("extensions", ()):
            raise unhandled

    async def _handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, params, allowed = self.router.match_http(scope["method"], scope["path"])
        if route is None and not allowed and self.router.mounts and await self._serve_mount(scope, receive, send):
            return
        request = Request(scope, receive)
        try:
            if route is None:
                raise self._no_route(scope, allowed, request)
            scope["path_params"] = params
            dependant = route.dependant
            if dependant.needs_stack:
                completed = False
                async with AsyncExitStack() as stack:
                    result = await dependant.call_with(request, params, stack)
                    completed = True
                if not completed:
                    raise RuntimeError(
                        f"A dependency with yield swallowed an exception from {route.path!r}; "
                        "re-raise it (or raise an HTTPException) after handling it"
                    )
            elif dependant.trivial and dependant.kind == "async":
                result = await dependant.call()
            else:
                result = await dependant.call_with(request, params, None)
        except Exception as error:
            response = await self._handle_error(request, error)
            await response(scope, receive, send)
            return
        if isinstance(result, Response):
            await result(scope, receive, send)
        elif route.response_class is not None:
            if route.response_model is not None:
                result = route.to_response_model(result)
            await route.response_class(result, status_code=route.status_code or 200)(scope, receive, send)
        else:
            if route.response_model is not None:
                result = route.to_response_model(result)
            body = _json_encode(result)
            await send(
                {
                    "type": "http.response.start",
                    "status": route.status_code or 200,
                    "headers": [_JSON_TYPE, (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
        if dependant.after_response:
            await _after_response(scope)

    async def _serve_mount(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Hand ``scope`` to the mounted app it falls under; False if there is none."""
        mounted = self.router.match_mount(scope)
        if mounted is None:
            return False
        mount, child = mounted
        if not child["path"]:
            if scope["type"] == "http":
                # "/static" -> "/static/", so the mounted app's relative links resolve under it.
                url = URL(scope=scope)
                target = f"{url.scheme}://{url.netloc}{url.path}/" + (f"?{url.query}" if url.query else "")
                await RedirectResponse(target)(scope, receive, send)
                return True
            child["path"] = "/"
        await mount.app(child, receive, send)
        return True

    def _no_route(self, scope: Scope, allowed: frozenset[str], request: Request) -> Exception:
        """The exception that answers a request no route took: 405, a slash redirect, or 404."""
        if allowed:
            return HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))})
        path: str = scope["path"]
        if path != "/":
            other = path[:-1] if path.endswith("/") else path + "/"
            route, _, other_allowed = self.router.match_http(scope["method"], other)
            if route is not None or other_allowed:
                from urllib.parse import quote

                target = quote(scope.get("root_path", "") + other, safe="/:@!$&()*+,;=")
                location = f"{request.url.scheme}://{request.url.netloc}{target}"
                query: bytes = scope.get("query_string", b"")
                if query:
                    location += "?" + query.decode("latin-1")
                return _Redirect(location)
        return HTTPException(404)

    async def _handle_error(self, request: Request, error: Exception) -> Response:
        if isinstance(error, _Redirect):
            return RedirectResponse(error.url)
        handler = self._find_handler(error)
        if handler is not None:
            try:
                result = handler(request, error)
                if inspect.isawaitable(result):
                    result = await result
                if not isinstance(result, Response):
                    raise TypeError(f"Exception handler {handler!r} returned {result!r}, not a Response")
            except Exception:
                logger.exception(
                    "Exception handler %r failed on %s %s", handler, request.method, request.url.path
                )
                return PlainTextResponse("Internal Server Error", status_code=500)
            return result
        if isinstance(error, HTTPException):
            if error.status_code in (204, 304):
                return Response(status_code=error.status_code, headers=error.headers)
            return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
        if isinstance(error, RequestValidationError):
            return JSONResponse({"detail": error.errors}, status_code=422)
        logger.exception("Exception in %s %s", request.method, request.url.path)
        return PlainTextResponse("Internal Server Error", status_code=500)

    def _find_handler(self, error: Exception) -> ExceptionHandler | None:
        """The user's handler for ``error``: by status code, then by class, then ``500``.

        ``HTTPException`` and ``RequestValidationError`` have built-in answers, so a handler
        for a base class above them (``Exception``) does not take them; ``500`` and
        ``Exception`` handlers see the unhandled errors only.
        """
        handlers = self.exception_handlers
        if not handlers:
            return None
        if isinstance(error, HTTPException):
            by_status = handlers.get(error.status_code)
            if by_status is not None:
                return by_status
        for cls in type(error).__mro__:
            found = handlers.get(cls)
            if found is not None:
                return found
            if cls is HTTPException or cls is RequestValidationError:
                return None
        return handlers.get(500)

    def _find_websocket_handler(self, error: Exception) -> ExceptionHandler | None:
        """The user's handler for ``error`` in a WebSocket route: by status, then by class.

        As in FastAPI: handlers for ``Exception`` and ``500`` are for HTTP only, and the classes
        with a built-in answer (``HTTPException``, ``WebSocketException``, validation errors)
        stop the search, so a handler for a base class above them does not take them.
        """
        handlers = self.exception_handlers
        if not handlers:
            return None
        if isinstance(error, HTTPException):
            by_status = handlers.get(error.status_code)
            if by_status is not None:
                return by_status
        for cls in type(error).__mro__:
            if cls is RequestValidationError or cls is Exception:
                return None
            found = handlers.get(cls)
            if found is not None:
                return found
            if cls is HTTPException or cls is WebSocketException:
                return None
        return None

    async def _websocket_error(self, ws: WebSocket, route: WebSocketRoute, error: Exception) -> Exception | None:
        """Answer an exception from a WebSocket route; returns it if nothing handled it.

        A user's handler runs as ``handler(websocket, exc)``: it may close the socket with its
        own code, or return a Response to refuse the handshake with it. Otherwise
        ``WebSocketException`` closes with its code, a validation error with 1008, a wrong
        frame type with 1003, malformed JSON with 1007, and an ``HTTPException`` before
        accept() refuses the handshake with its status. What is left is unhandled: logged and
        closed with 1011 (a handshake: HTTP 500), or for ``WebSocketDisconnect`` (the client
        left while the handler waited) nothing at all.
        """
        handler = self._find_websocket_handler(error)
        if handler is not None:
            try:
                result = handler(ws, error)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    if not isinstance(result, Response) or ws.application_state is not WebSocketState.CONNECTING:
                        raise RuntimeError(
                            f"Exception handler {handler!r} returned {result!r} for a WebSocket: it may return "
                            "a Response only before accept() (it is sent instead of the handshake)"
                        )
                    await ws.send_denial_response(result)
            except Exception as failure:
                logger.exception("Exception handler %r failed on WebSocket %s", handler, route.path)
                await _end_handshake_or_close(ws, status.WS_1011_INTERNAL_ERROR, "")
                return failure
            return None
        if isinstance(error, WebSocketDisconnect):
            return error
        if isinstance(error, WebSocketException):
            code, reason = error.code, error.reason
        elif isinstance(error, RequestValidationError):
            code, reason = status.WS_1008_POLICY_VIOLATION, _short(str(error.errors))
            logger.info("WebSocket %s rejected: %s", route.path, error.errors)
        elif isinstance(error, UnexpectedFrameType):
            code, reason = status.WS_1003_UNSUPPORTED_DATA, _short(str(error))
            logger.info("WebSocket %s closed: %s", route.path, error)
        elif isinstance(error, InvalidJSONMessage):
            code, reason = status.WS_1007_INVALID_FRAME_PAYLOAD_DATA, _short(str(error))
            logger.info("WebSocket %s closed: %s", route.path, error)
        elif isinstance(error, HTTPException) and ws.application_state is WebSocketState.CONNECTING:
            logger.info("WebSocket %s refused: %s", route.path, error)
            if DENIAL_EXTENSION in ws.scope.get("extensions", ()):
                await _quiet_denial(ws, _http_exception_response(error))
            else:
                await _quiet_close(ws, status.WS_1008_POLICY_VIOLATION, _short(str(error.detail)))
            return None
        else:
            logger.exception("Exception in WebSocket handler %s", route.path)
            await _end_handshake_or_close(ws, status.WS_1011_INTERNAL_ERROR, "")
            return error
        if ws.application_state is WebSocketState.CONNECTING or ws.application_state is WebSocketState.CONNECTED:
            # Before accept() the server turns the close into an HTTP 403; the code is for the TestClient.
            await _quiet_close(ws, code, reason)
        return None

    async def _handle_lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        await receive()
        try:
            async with self._lifespan() as state:
                if state:
                    if "state" not in scope:
                        raise RuntimeError("The server does not support lifespan state")
                    scope["state"].update(state)
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()
        except BaseException as error:
            logger.exception("Lifespan %s failed", "shutdown" if started else "startup")
            kind = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{kind}.failed", "message": f"{type(error).__name__}: {error}"})
            raise
        else:
            await send({"type": "lifespan.shutdown.complete"})

    @contextlib.asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[Mapping[str, Any] | None]:
        """Hub first in and last out, around the user's startup/shutdown and lifespan."""
        await self.hub.start()
        try:
            for func in self.on_startup:
                result = func()
                if inspect.isawaitable(result):
                    await result
            if self.lifespan_context is None:
                yield None
            else:
                async with self.lifespan_context(self) as state:
                    yield state
            for func in self.on_shutdown:
                result = func()
                if inspect.isawaitable(result):
                    await result
        finally:
            await self.hub.stop()


#: What ``Faster(**hub_options)`` may hold besides its named arguments: the hub settings.
HUB_OPTIONS = frozenset({f.name for f in fields(HubConfig)} - {"backend"} | {"presence"})


def _check_hub_options(options: Mapping[str, Any]) -> None:
    """Refuse unknown keywords now: the hub is built on first use, which may be never (a
    TestClient without ``with``), and a ported keyword we do not take must not be dropped silently."""
    unknown = sorted(set(options) - HUB_OPTIONS)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise TypeError(
            f"Faster() got unexpected keyword argument(s) {names}; besides its named arguments it "
            f"takes the hub settings {', '.join(sorted(HUB_OPTIONS))}"
        )


class _Redirect(Exception):
    def __init__(self, url: str) -> None:
        self.url = url


async def _after_response(scope: Scope) -> None:
    """Once the response is out: close the request's uploaded files, run its BackgroundTasks
    (each failure is logged)."""
    form = scope.get(FORM_SCOPE_KEY)
    if form is not None:
        await form.close()
    background = scope.get(BACKGROUND_SCOPE_KEY)
    if background is not None:
        await background()


def _origin_allowed(ws: WebSocket, origins: frozenset[str]) -> bool:
    if "*" in origins:
        return True
    origin = ws.headers.get("origin")
    # Non-browser clients send no Origin; cross-site protection is about browsers.
    return origin is None or origin in origins


def _short(reason: str) -> str:
    # A close reason must fit a control frame: 123 bytes of UTF-8.
    encoded = reason.encode()[:123]
    return encoded.decode("utf-8", "ignore")


def _http_exception_response(error: HTTPException) -> Response:
    if error.status_code in (status.HTTP_204_NO_CONTENT, status.HTTP_304_NOT_MODIFIED):
        return Response(status_code=error.status_code, headers=error.headers)
    return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)


async def _end_handshake_or_close(ws: WebSocket, code: int, reason: str) -> None:
    """After a failure: an HTTP 500 in place of the handshake where the server can send one,
    else a close with ``code`` (before accept() the server answers it with 403)."""
    if ws.application_state is WebSocketState.CONNECTING and DENIAL_EXTENSION in ws.scope.get("extensions", ()):
        await _quiet_denial(ws, PlainTextResponse("Internal Server Error", status_code=500))
    elif ws.application_state is WebSocketState.CONNECTING or ws.application_state is WebSocketState.CONNECTED:
        await _quiet_close(ws, code, reason)


async def _quiet_denial(ws: WebSocket, response: Response) -> None:
    try:
        await ws.send_denial_response(response)
    except (RuntimeError, OSError):
        pass  # the peer is gone


async def _quiet_close(ws: WebSocket, code: int, reason: str = "") -> None:
    try:
        await ws.close(code, reason)
    except (RuntimeError, OSError, WebSocketDisconnect):
        # The peer is already gone; there is nobody left to tell.
        pass

