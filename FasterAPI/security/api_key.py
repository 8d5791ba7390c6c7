"""API keys from a header, the query string or a cookie (on a WebSocket as on HTTP)."""

from __future__ import annotations

from ..openapi.models import APIKey, APIKeyIn
from ..requests import HTTPConnection
from .base import SecurityBase, refusal

__all__ = ["APIKeyCookie", "APIKeyHeader", "APIKeyQuery"]


class _APIKeyBase(SecurityBase):
    where: APIKeyIn

    def __init__(
        self, *, name: str, scheme_name: str | None = None, description: str | None = None, auto_error: bool = True
    ) -> None:
        self.model = APIKey(in_=self.where, name=name, description=description)
        self.name = name
        self.scheme_name = scheme_name or type(self).__name__
        self.auto_error = auto_error

    def _found(self, conn: HTTPConnection, key: str | None) -> str | None:
        if not key:
            if self.auto_error:
                raise refusal(conn, "Not authenticated", {"WWW-Authenticate": "APIKey"})
            return None
        return key


class APIKeyHeader(_APIKeyBase):
    """The key in the header ``name``; a 401 when it is missing (``None`` with ``auto_error=False``)."""

    where = APIKeyIn.header

    async def __call__(self, conn: HTTPConnection) -> str | None:
        return self._found(conn, conn.headers.get(self.name.lower()))


class APIKeyQuery(_APIKeyBase):
    """The key in the query parameter ``name`` (a WebSocket URL's ``?token=...``)."""

    where = APIKeyIn.query

    async def __call__(self, conn: HTTPConnection) -> str | None:
        return self._found(conn, conn.query_params.get(self.name))


class APIKeyCookie(_APIKeyBase):
    """The key in the cookie ``name`` (which a browser also sends with a WebSocket handshake)."""

    where = APIKeyIn.cookie

    async def __call__(self, conn: HTTPConnection) -> str | None:
        return self._found(conn, conn.cookies.get(self.name))
