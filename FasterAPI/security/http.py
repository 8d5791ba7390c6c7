"""``HTTPBearer`` and ``HTTPBasic``: credentials from the ``Authorization`` header."""

from __future__ import annotations

import base64
import binascii

import msgspec

from ..openapi.models import HTTPBase
from ..openapi.models import HTTPBearer as HTTPBearerModel
from ..requests import HTTPConnection
from .base import SecurityBase, refusal
from .utils import bearer_token, get_authorization_scheme_param

__all__ = ["HTTPAuthorizationCredentials", "HTTPBasic", "HTTPBasicCredentials", "HTTPBearer"]


class HTTPAuthorizationCredentials(msgspec.Struct, frozen=True):
    """``Authorization: <scheme> <credentials>``, split."""

    scheme: str
    credentials: str


class HTTPBasicCredentials(msgspec.Struct, frozen=True):
    """The user name and password of HTTP Basic authentication."""

    username: str
    password: str


class HTTPBearer(SecurityBase):
    """``Authorization: Bearer <token>`` (on a WebSocket, also the ``bearer`` subprotocol pair).

    Gives :class:`HTTPAuthorizationCredentials`; a missing or non-bearer header is a 401
    (``None`` with ``auto_error=False``).
    """

    def __init__(
        self,
        *,
        bearerFormat: str | None = None,
        scheme_name: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        self.model = HTTPBearerModel(bearerFormat=bearerFormat, description=description)
        self.scheme_name = scheme_name or type(self).__name__
        self.auto_error = auto_error

    async def __call__(self, conn: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        scheme, token = bearer_token(conn)
        if not (scheme and token):
            if self.auto_error:
                raise refusal(conn, "Not authenticated", {"WWW-Authenticate": "Bearer"})
            return None
        if scheme.lower() != "bearer":
            if self.auto_error:
                raise refusal(conn, "Invalid authentication credentials", {"WWW-Authenticate": "Bearer"})
            return None
        return HTTPAuthorizationCredentials(scheme=scheme, credentials=token)


class HTTPBasic(SecurityBase):
    """``Authorization: Basic <base64 of user:password>``; gives :class:`HTTPBasicCredentials`.

    A missing header is a 401 with ``WWW-Authenticate: Basic`` (so a browser asks), or
    ``None`` with ``auto_error=False``; a malformed one is always a 401.
    """

    def __init__(
        self,
        *,
        scheme_name: str | None = None,
        realm: str | None = None,
        description: str | None = None,
        auto_error: bool = True,
    ) -> None:
        self.model = HTTPBase(scheme="basic", description=description)
        self.scheme_name = scheme_name or type(self).__name__
        self.realm = realm
        self.auto_error = auto_error

    async def __call__(self, conn: HTTPConnection) -> HTTPBasicCredentials | None:
        challenge = {"WWW-Authenticate": f'Basic realm="{self.realm}"' if self.realm else "Basic"}
        scheme, param = get_authorization_scheme_param(conn.headers.get("authorization"))
        if not scheme or scheme.lower() != "basic":
            if self.auto_error:
                raise refusal(conn, "Not authenticated", challenge)
            return None
        try:
            decoded = base64.b64decode(param, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise refusal(conn, "Invalid authentication credentials", challenge) from None
        username, separator, password = decoded.partition(":")
        if not separator:
            raise refusal(conn, "Invalid authentication credentials", challenge)
        return HTTPBasicCredentials(username=username, password=password)
