"""OAuth2: the password-flow bearer token, the form its token URL reads, and the scopes a
``Security`` dependency asks for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from ..openapi.models import OAuth2, OAuthFlowPassword, OAuthFlows
from ..params import Form
from ..requests import HTTPConnection
from .base import SecurityBase, refusal
from .utils import bearer_token

__all__ = ["OAuth2PasswordBearer", "OAuth2PasswordRequestForm", "OAuth2PasswordRequestFormStrict", "SecurityScopes"]

GrantType = Annotated[str, msgspec.Meta(pattern="^password$")]


class SecurityScopes:
    """The OAuth2 scopes asked for by every ``Security(...)`` from the route down to the
    dependency that declares an argument of this type."""

    __slots__ = ("scopes",)

    def __init__(self, scopes: list[str] | None = None) -> None:
        self.scopes: list[str] = list(scopes or [])

    @property
    def scope_str(self) -> str:
        """The scopes separated by spaces, as in a token's ``scope`` claim or ``WWW-Authenticate``."""
        return " ".join(self.scopes)

    def __repr__(self) -> str:
        return f"SecurityScopes({self.scopes!r})"


class OAuth2PasswordBearer(SecurityBase):
    """The bearer token of OAuth2's password flow (issued at ``tokenUrl``); gives the token string.

    Read like :class:`~FasterAPI.security.HTTPBearer`; a 401 when absent (``None`` with
    ``auto_error=False``). Checking the token, and its scopes, is the application's job.
    """

    def __init__(
        self,
        tokenUrl: str,
        scheme_name: str | None = None,
        scopes: Mapping[str, str] | None = None,
        description: str | None = None,
        auto_error: bool = True,
        refreshUrl: str | None = None,
    ) -> None:
        flow = OAuthFlowPassword(tokenUrl=tokenUrl, refreshUrl=refreshUrl, scopes=dict(scopes or {}))
        self.model = OAuth2(flows=OAuthFlows(password=flow), description=description)
        self.scheme_name = scheme_name or type(self).__name__
        self.auto_error = auto_error

    async def __call__(self, conn: HTTPConnection) -> str | None:
        scheme, token = bearer_token(conn)
        if not token or scheme.lower() != "bearer":
            if self.auto_error:
                raise refusal(conn, "Not authenticated", {"WWW-Authenticate": "Bearer"})
            return None
        return token


class OAuth2PasswordRequestForm:
    """The form of OAuth2's password flow, for the token URL: ``form: OAuth2PasswordRequestForm
    = Depends()`` (a urlencoded body, as Swagger UI's *Authorize* sends it; needs the ``forms``
    extra). ``scopes`` is the ``scope`` field split on spaces. ``grant_type``, when sent, must be
    ``password``; :class:`OAuth2PasswordRequestFormStrict` requires it.
    """

    def __init__(
        self,
        *,
        grant_type: Annotated[GrantType | None, Form()] = None,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form()] = None,
    ) -> None:
        self.grant_type = grant_type
        self.username = username
        self.password = password
        self.scopes = scope.split()
        self.client_id = client_id
        self.client_secret = client_secret


class OAuth2PasswordRequestFormStrict(OAuth2PasswordRequestForm):
    """:class:`OAuth2PasswordRequestForm` whose ``grant_type`` is required (the spec says it must be sent)."""

    def __init__(
        self,
        *,
        grant_type: Annotated[GrantType, Form()],
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form()] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )
