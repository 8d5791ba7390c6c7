"""Headers, query parameters, URL, state, forms and uploaded files, shared by requests and WebSockets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from http.cookies import SimpleCookie
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from .types import RawHeaders, Scope


class Address(NamedTuple):
    """The client's host and port."""

    host: str
    port: int


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive HTTP headers that keep repeated headers.

    ``headers["x"]`` gives the first value; ``headers.getlist("x")`` gives all of them.
    """

    __slots__ = ("_list",)

    def __init__(self, raw: RawHeaders | None = None, *, scope: Scope | None = None) -> None:
        if scope is not None:
            raw = scope["headers"]
        self._list: RawHeaders = list(raw) if raw else []

    @property
    def raw(self) -> RawHeaders:
        return self._list

    def getlist(self, key: str) -> list[str]:
        name = key.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self._list if k.lower() == name]

    def __getitem__(self, key: str) -> str:
        name = key.lower().encode("latin-1")
        for k, v in self._list:
            if k.lower() == name:
                return v.decode("latin-1")
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        name = key.lower().encode("latin-1")
        return any(k.lower() == name for k, _ in self._list)

    def __iter__(self) -> Iterator[str]:
        seen: dict[str, None] = {}
        for k, _ in self._list:
            seen.setdefault(k.decode("latin-1").lower(), None)
        return iter(seen)

    def __len__(self) -> int:
        return len(set(k.lower() for k, _ in self._list))

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Every header, repeats included, names lower-cased."""
        return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in self._list]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and sorted(self.items()) == sorted(other.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


class MutableHeaders(Headers):
    """Headers a response builds; ``append`` keeps repeats (Set-Cookie), assignment replaces."""

    def __setitem__(self, key: str, value: str) -> None:
        name = key.lower().encode("latin-1")
        self._list = [(k, v) for k, v in self._list if k.lower() != name]
        self._list.append((name, value.encode("latin-1")))

    def __delitem__(self, key: str) -> None:
        name = key.lower().encode("latin-1")
        self._list = [(k, v) for k, v in self._list if k.lower() != name]

    def append(self, key: str, value: str) -> None:
        self._list.append((key.lower().encode("latin-1"), value.encode("latin-1")))

    def setdefault(self, key: str, value: str) -> str:
        if key in self:
            return self[key]
        self.append(key, value)
        return value

    def update(self, other: Mapping[str, str]) -> None:
        for key, value in other.items():
            self[key] = value


class QueryParams(Mapping[str, str]):
    """Query string parameters; repeated keys kept (``getlist``), ``[key]`` gives the last."""

    __slots__ = ("_dict", "_list")

    def __init__(self, query: str | bytes | list[tuple[str, str]] = "") -> None:
        if isinstance(query, bytes):
            query = query.decode("latin-1")
        if isinstance(query, str):
            self._list = parse_qsl(query, keep_blank_values=True)
        else:
            self._list = list(query)
        self._dict = dict(self._list)

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self._list if k == key]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._list)

    def __getitem__(self, key: str) -> str:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __repr__(self) -> str:
        return f"QueryParams({self._list!r})"


class URL:
    """The request URL, rebuilt from the ASGI scope."""

    __slots__ = ("_url",)

    def __init__(self, url: str = "", *, scope: Scope | None = None) -> None:
        if scope is not None:
            scheme = scope.get("scheme", "http")
            server = scope.get("server")
            path = scope.get("root_path", "") + scope["path"]
            query = scope.get("query_string", b"").decode("latin-1")
            host = None
            for k, v in scope["headers"]:
                if k == b"host":
                    host = v.decode("latin-1")
                    break
            if host is None and server is not None:
                name, port = server
                default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
                host = name if port == default else f"{name}:{port}"
            url = f"{scheme}://{host or 'testserver'}{path}"
            if query:
                url += "?" + query
        self._url = url

    @property
    def scheme(self) -> str:
        return urlsplit(self._url).scheme

    @property
    def netloc(self) -> str:
        return urlsplit(self._url).netloc

    @property
    def hostname(self) -> str | None:
        return urlsplit(self._url).hostname

    @property
    def port(self) -> int | None:
        return urlsplit(self._url).port

    @property
    def path(self) -> str:
        return urlsplit(self._url).path

    @property
    def query(self) -> str:
        return urlsplit(self._url).query

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"URL({self._url!r})"

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(self._url)


class State:
    """An attribute bag: ``app.state.db = ...``, ``request.state.user = ...``."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_state", dict(initial or {}))

    def __setattr__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def __getattr__(self, key: str) -> Any:
        try:
            # Through __dict__: copy/pickle probe attributes before __init__ has run.
            return self.__dict__["_state"][key]
        except KeyError:
            raise AttributeError(f"'State' object has no attribute {key!r}") from None

    def __delattr__(self, key: str) -> None:
        del self._state[key]


def parse_cookies(header: str) -> dict[str, str]:
    """Cookie header to a dict; malformed pairs are skipped rather than failing the request."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        key, sep, value = chunk.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = SimpleCookie(f"x={value}")["x"].value if value else value
        cookies[key] = value
    return cookies


class UploadFile:
    """An uploaded file: ``filename``, ``content_type``, ``size``, ``headers``, and async
    ``read``/``write``/``seek``/``close`` over a spooled temporary file (in memory up to 1 MB,
    then on disk, where the calls run in a worker thread)."""

    __slots__ = ("file", "filename", "headers", "size")

    def __init__(
        self,
        file: BinaryIO,
        *,
        size: int | None = None,
        filename: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        self.file = file
        self.size = size
        self.filename = filename
        self.headers = headers if headers is not None else Headers()

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @property
    def _in_memory(self) -> bool:
        # A SpooledTemporaryFile that has not rolled over to disk yet: no thread needed.
        rolled = getattr(self.file, "_rolled", True)
        return not rolled

    async def write(self, data: bytes) -> None:
        if self.size is not None:
            self.size += len(data)
        if self._in_memory:
            self.file.write(data)
        else:
            await asyncio.to_thread(self.file.write, data)

    async def read(self, size: int = -1) -> bytes:
        if self._in_memory:
            return self.file.read(size)
        return await asyncio.to_thread(self.file.read, size)

    async def seek(self, offset: int) -> None:
        if self._in_memory:
            self.file.seek(offset)
        else:
            await asyncio.to_thread(self.file.seek, offset)

    async def close(self) -> None:
        if self._in_memory:
            self.file.close()
        else:
            await asyncio.to_thread(self.file.close)

    def __repr__(self) -> str:
        return f"UploadFile(filename={self.filename!r}, size={self.size!r}, content_type={self.content_type!r})"


class FormData(Mapping[str, "str | UploadFile"]):
    """A parsed form: fields and files, repeated names kept (``getlist``); ``[key]`` gives the last."""

    __slots__ = ("_dict", "_list")

    def __init__(self, items: list[tuple[str, str | UploadFile]] | None = None) -> None:
        self._list = list(items or [])
        self._dict = dict(self._list)

    def getlist(self, key: str) -> list[str | UploadFile]:
        return [v for k, v in self._list if k == key]

    def multi_items(self) -> list[tuple[str, str | UploadFile]]:
        return list(self._list)

    def __getitem__(self, key: str) -> str | UploadFile:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    async def close(self) -> None:
        """Close every uploaded file (the app does it once the response is sent)."""
        for _, value in self._list:
            if isinstance(value, UploadFile):
                await value.close()

    def __repr__(self) -> str:
        return f"FormData({self._list!r})"
