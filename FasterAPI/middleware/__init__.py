"""The middleware stack: ``Middleware`` (a class and its options) and how the chains are built.

Middleware is pure ASGI: ``cls(app, **options)`` is an ASGI app wrapping ``app``. As in
Starlette, the first of ``Faster(middleware=[...])`` is the outermost, and each
``app.add_middleware`` goes outside all the others. The stack is built on the app's first
call; adding middleware after that raises.

A middleware class may declare ``scope_types``, the ASGI scope types it acts on (CORS and
GZip: ``{"http"}``). The app builds one chain per scope type and leaves a middleware out of
the chains of the types it does not act on, so a WebSocket handshake (and every broadcast
after it) pays nothing for HTTP-only middleware: not a call, not a frame kept suspended per
open socket. A class that declares nothing is in every chain, as in Starlette; it is built
once per distinct chain (twice when HTTP-only middleware splits the HTTP chain from the others),
so keep state that must be shared on the app (``app.state``), not on the middleware instance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..types import ASGIApp

__all__ = ["SCOPE_TYPES", "Middleware", "build_chains"]

#: The scope types an app is called with.
SCOPE_TYPES = ("http", "websocket", "lifespan")


class Middleware:
    """A middleware class and the arguments it is built with: ``Middleware(CORSMiddleware, allow_origins=[...])``."""

    __slots__ = ("args", "cls", "kwargs")

    def __init__(self, cls: Any, *args: Any, **kwargs: Any) -> None:
        if not callable(cls):
            raise TypeError(f"Middleware needs a class (or factory) taking the app, got {cls!r}")
        self.cls = cls
        self.args = args
        self.kwargs = kwargs

    def __iter__(self) -> Iterator[Any]:
        # Starlette's shape: ``cls, args, kwargs = middleware``.
        return iter((self.cls, self.args, self.kwargs))

    def acts_on(self, scope_type: str) -> bool:
        """Whether this middleware wants scopes of ``scope_type`` (undeclared: every type)."""
        declared = getattr(self.cls, "scope_types", None)
        return declared is None or scope_type in declared

    def build(self, app: ASGIApp) -> ASGIApp:
        built: ASGIApp = self.cls(app, *self.args, **self.kwargs)
        return built

    def __repr__(self) -> str:
        options = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        name = getattr(self.cls, "__name__", repr(self.cls))
        return f"Middleware({', '.join([name, *options])})"


def build_chains(middleware: Sequence[Middleware], app: ASGIApp) -> dict[str, ASGIApp]:
    """For each scope type that some middleware acts on, ``app`` wrapped in those middleware.

    ``middleware[0]`` is the outermost. A scope type no middleware acts on has no chain: the
    caller serves it directly.
    """
    chains: dict[str, ASGIApp] = {}
    # Scope types wanting the same middleware share one chain, so a middleware that declares
    # nothing is built once unless a typed one (CORS, GZip) splits the chains.
    built: dict[tuple[int, ...], ASGIApp] = {}
    for scope_type in SCOPE_TYPES:
        wanted = [m for m in middleware if m.acts_on(scope_type)]
        if not wanted:
            continue
        key = tuple(id(m) for m in wanted)
        chain = built.get(key)
        if chain is None:
            chain = app
            for entry in reversed(wanted):
                chain = entry.build(chain)
            built[key] = chain
        chains[scope_type] = chain
    return chains
