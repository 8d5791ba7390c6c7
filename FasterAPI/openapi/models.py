"""The parts of an OpenAPI document that are Python objects: security schemes and error bodies.

Security helpers hold one of the scheme Structs as ``model``; ``scheme_dict`` turns it into the
``components.securitySchemes`` entry. ``HTTPValidationError`` is the body of our 422 answers
(``{"detail": [{"type", "loc", "msg"}]}``) and ``HTTPError`` that of an ``HTTPException``;
their schemas come from msgspec like every other schema.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

__all__ = [
    "APIKey",
    "APIKeyIn",
    "HTTPBase",
    "HTTPBearer",
    "HTTPError",
    "HTTPValidationError",
    "OAuth2",
    "OAuthFlowPassword",
    "OAuthFlows",
    "SecurityScheme",
    "ValidationError",
    "scheme_dict",
]


class APIKeyIn(enum.Enum):
    query = "query"
    header = "header"
    cookie = "cookie"


class APIKey(msgspec.Struct, rename={"in_": "in", "type_": "type"}):
    """An ``apiKey`` scheme: a key named ``name`` in the query, a header or a cookie."""

    in_: APIKeyIn
    name: str
    description: str | None = None
    type_: str = "apiKey"


class HTTPBase(msgspec.Struct, rename={"type_": "type"}):
    """An ``http`` scheme such as ``basic``, read from the ``Authorization`` header."""

    scheme: str
    description: str | None = None
    type_: str = "http"


class HTTPBearer(msgspec.Struct, rename={"type_": "type"}):
    """The ``http`` ``bearer`` scheme, with an optional ``bearerFormat`` hint (``"JWT"``)."""

    scheme: str = "bearer"
    bearerFormat: str | None = None
    description: str | None = None
    type_: str = "http"


class OAuthFlowPassword(msgspec.Struct):
    """OAuth2's password flow: where to get a token, and the scopes on offer."""

    tokenUrl: str
    refreshUrl: str | None = None
    scopes: dict[str, str] = msgspec.field(default_factory=dict)


class OAuthFlows(msgspec.Struct):
    password: OAuthFlowPassword | None = None


class OAuth2(msgspec.Struct, rename={"type_": "type"}):
    flows: OAuthFlows
    description: str | None = None
    type_: str = "oauth2"


SecurityScheme = APIKey | HTTPBase | HTTPBearer | OAuth2


def scheme_dict(model: SecurityScheme) -> dict[str, Any]:
    """The JSON object of a security scheme, for ``components.securitySchemes``."""
    result: dict[str, Any] = _without_none(msgspec.to_builtins(model))
    return result


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    return value


class ValidationError(msgspec.Struct):
    """One problem with a request: where (loc, such as ["query", "limit"]), what kind, and a message."""

    type: str
    loc: list[str | int]
    msg: str


class HTTPValidationError(msgspec.Struct):
    """The body of a 422 answer."""

    detail: list[ValidationError]


class HTTPError(msgspec.Struct):
    """The body of an HTTPException's answer."""

    detail: Any
