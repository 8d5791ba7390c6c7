"""``BaseHTTPMiddleware``: middleware written as ``async def dispatch(request, call_next)``.

``@app.middleware("http")`` wraps a function in it. ``call_next(request)`` runs the rest of
the app in a task of its own and returns as soon as the response has *started*: its body is
passed on chunk by chunk as the app produces it (a bounded hand-over, one message at a time),
so a streamed response or server-sent events are never buffered by the middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from ..datastructures import MutableHeaders
from ..requests import Request
from ..responses import Response, StreamingResponse
from ..types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BaseHTTPMiddleware", "CallNext", "DispatchFunction"]

logger = logging.getLogger("fasterapi")

CallNext = Callable[[Request], Awaitable[Response]]
DispatchFunction = Callable[[Request, CallNext], Awaitable[Response]]


class BaseHTTPMiddleware:
    """Subclass it and define ``dispatch``, or pass ``dispatch=`` a function. HTTP only."""

    scope_types = frozenset({"http"})

    def __init__(self, app: ASGIApp, dispatch: DispatchFunction | None = None) -> None:
        self.app = app
        self.dispatch_func: DispatchFunction = dispatch if dispatch is not None else self.dispatch

    async def dispatch(self, request: Request, call_next: CallNext) -> Response:
        raise NotImplementedError("Define dispatch() or pass dispatch= a function")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        downstream = _Downstream(self.app, scope, receive, request)
        try:
            try:
                response = await self.dispatch_func(request, downstream.call_next)
            except Exception as error:
                handle_error = getattr(scope.get("app"), "_handle_error", None)
                if handle_error is None:
                    raise
                # As an exception in a route: the app's handlers answer it (HTTPException, 500...).
                response = await handle_error(request, error)
            if not isinstance(response, Response):
                raise TypeError(f"Middleware {self.dispatch_func!r} returned {response!r}, not a Response")
            await response(scope, receive, send)
        finally:
            await downstream.finish()


class _Downstream:
    """The rest of the app, run for one request by ``call_next``."""

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, request: Request) -> None:
        self.app = app
        self.scope = scope
        self.receive = receive
        self.request = request
        self.messages: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
        self.task: asyncio.Task[None] | None = None
        self.body_done = False
        self.replayed = False
        #: Whether the app's end (and any exception of it) was already handed to the middleware.
        self.seen_end = False

    async def call_next(self, request: Request) -> Response:
        if self.task is not None:
            raise RuntimeError("call_next() may be called once per request")
        self.task = asyncio.get_running_loop().create_task(self._run())
        first = await self._next_message()
        if first is None:
            raise RuntimeError("The app returned without sending a response")
        if first["type"] != "http.response.start":
            raise RuntimeError(f"Expected 'http.response.start' from the app, got {first['type']!r}")
        response = StreamingResponse(self._body(), status_code=first["status"])
        response.headers = MutableHeaders(list(first.get("headers", [])))
        return response

    async def _run(self) -> None:
        await self.app(self.scope, self._receive, self.messages.put)

    async def _receive(self) -> Message:
        # The middleware may have read the body already: the app gets it again, then the
        # server's messages (the disconnect).
        body = self.request._body
        if body is not None and not self.replayed:
            self.replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await self.receive()

    async def _next_message(self) -> Message | None:
        """The app's next message, None if it ended without one; its exception is raised."""
        assert self.task is not None
        getter = asyncio.ensure_future(self.messages.get())
        await asyncio.wait((getter, self.task), return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        self.seen_end = True
        self.task.result()  # raises what the app raised, to call_next's caller
        if not self.messages.empty():
            return self.messages.get_nowait()
        return None

    async def _body(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._next_message()
            if message is None:
                # The app stopped early: an event stream whose client left does. End here too.
                return
            if message["type"] != "http.response.body":
                continue
            body: bytes = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                self.body_done = True
                return

    async def finish(self) -> None:
        """After the response: let the app finish (its background tasks run now), or stop it if
        its response was not passed on."""
        task = self.task
        if task is None or self.seen_end:
            return
        if not task.done() and not self.body_done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await task
            except Exception:
                # The response that failed was not passed on (the middleware answered with its
                # own), so nobody else will see this.
                logger.exception("The app failed behind middleware %s", self.scope.get("path"))
