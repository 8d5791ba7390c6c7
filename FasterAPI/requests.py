"""The HTTP request, and the connection details it shares with WebSockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .datastructures import URL, Address, FormData, Headers, QueryParams, State, parse_cookies
from .types import Receive, Scope

if TYPE_CHECKING:
    from .applications import Faster


#: Where the request's parsed form lives in its scope (the app closes its files after the response).
FORM_SCOPE_KEY = "fasterapi.form"


class ClientDisconnect(Exception):
    """The client went away while the request body was being read."""


class HTTPConnection(Mapping[str, Any]):
    """What an HTTP request and a WebSocket have in common: URL, headers, client, state.

    A read-only mapping of its ASGI scope, as Starlette's is: ``conn["path"]``, ``dict(conn)``.
    Two connections are equal only if they are the same object (a socket in a list can be
    ``remove()``d, whatever the scopes hold).
    """

    __slots__ = ("_cookies", "_headers", "_query_params", "_url", "scope")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self._headers: Headers | None = None
        self._query_params: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        self._url: URL | None = None

    def __getitem__(self, key: str) -> Any:
        return self.scope[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scope)

    def __len__(self) -> int:
        return len(self.scope)

    # Mapping compares contents; a connection is itself only.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def app(self) -> Faster:
        return self.scope["app"]  # type: ignore[no-any-return]

    @property
    def url(self) -> URL:
        if self._url is None:
            self._url = URL(scope=self.scope)
        return self._url

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(scope=self.scope)
        return self._headers

    @property
    def query_params(self) -> QueryParams:
        if self._query_params is None:
            self._query_params = QueryParams(self.scope.get("query_string", b""))
        return self._query_params

    @property
    def path_params(self) -> dict[str, Any]:
        return self.scope.get("path_params", {})  # type: ignore[no-any-return]

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.get("cookie", ""))
        return self._cookies

    @property
    def client(self) -> Address | None:
        client = self.scope.get("client")
        return None if client is None else Address(client[0], client[1])

    @property
    def state(self) -> State:
        state = self.scope.get("fasterapi.state")
        if state is None:
            state = self.scope["fasterapi.state"] = State(self.scope.get("state"))
        return state


class Request(HTTPConnection):
    """An HTTP request: connection details plus the body."""

    __slots__ = ("_body", "_form", "_receive", "_stream_consumed")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        super().__init__(scope)
        self._receive = receive
        self._body: bytes | None = None
        self._form: FormData | None = None
        self._stream_consumed = False

    @property
    def method(self) -> str:
        return self.scope["method"]  # type: ignore[no-any-return]

    async def stream(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk, as the server hands it over."""
        if self._body is not None:
            yield self._body
            return
        if self._stream_consumed:
            # The server has nothing more to give: another receive() would wait forever.
            raise RuntimeError("The request body was already read with stream()")
        self._stream_consumed = True
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def body(self) -> bytes:
        if self._body is None:
            chunks = [chunk async for chunk in self.stream()]
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        return msgspec.json.decode(await self.body())

    async def form(
        self, *, max_files: int = 1000, max_fields: int = 1000, max_part_size: int = 1024 * 1024
    ) -> FormData:
        """The body parsed as a form (multipart or urlencoded; needs python-multipart), read once.

        A malformed body, or one over the limits, raises HTTPException(400) naming the problem.
        Uploaded files are closed when the response has been sent.
        """
        if self._form is None:
            from .exceptions import HTTPException
            from .formparsers import FormParseError, parse_form

            try:
                self._form = await parse_form(
                    self.headers.get("content-type", ""),
                    self.stream(),
                    max_files=max_files,
                    max_fields=max_fields,
                    max_part_size=max_part_size,
                )
            except FormParseError as error:
                raise HTTPException(400, str(error)) from None
            self.scope[FORM_SCOPE_KEY] = self._form
        return self._form
