"""Authentication helpers as in ``fastapi.security``, for ``Depends`` on HTTP and WebSocket routes.

Each is a callable instance: ``Depends(HTTPBearer())`` hands the handler the credentials, or
answers 401 (``auto_error=False``: ``None``, for optional authentication). On a WebSocket the
401 refuses the handshake; once the socket is accepted it closes with 1008 (policy violation).
Each also appears in the OpenAPI document as a security scheme, so ``/docs`` can authorize.
"""

from .api_key import APIKeyCookie, APIKeyHeader, APIKeyQuery
from .base import SecurityBase
from .http import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from .oauth2 import OAuth2PasswordBearer, OAuth2PasswordRequestForm, OAuth2PasswordRequestFormStrict, SecurityScopes

__all__ = [
    "APIKeyCookie",
    "APIKeyHeader",
    "APIKeyQuery",
    "HTTPAuthorizationCredentials",
    "HTTPBasic",
    "HTTPBasicCredentials",
    "HTTPBearer",
    "OAuth2PasswordBearer",
    "OAuth2PasswordRequestForm",
    "OAuth2PasswordRequestFormStrict",
    "SecurityBase",
    "SecurityScopes",
]
