"""Exceptions an application raises or handles."""

from __future__ import annotations

import http
from collections.abc import Mapping, Sequence
from typing import Any

from .status import WS_1000_NORMAL_CLOSURE


class HTTPException(Exception):
    """Ends the request with ``status_code``; ``detail`` becomes the JSON body."""

    def __init__(
        self,
        status_code: int,
        detail: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if detail is None:
            try:
                detail = http.HTTPStatus(status_code).phrase
            except ValueError:  # a status the standard library does not name, such as 499
                detail = f"HTTP {status_code}"
        self.status_code = status_code
        self.detail = detail
        self.headers = dict(headers) if headers else None
        super().__init__(status_code, detail)

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"


class RequestValidationError(Exception):
    """Parameters or body did not validate; answered with 422 and one entry per error."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        self.errors = list(errors)
        super().__init__(self.errors)


class WebSocketRequestValidationError(RequestValidationError):
    """A WebSocket's parameters did not validate: the socket closes with 1008 (policy violation).

    As in FastAPI, a handler registered for :class:`RequestValidationError` (an HTTP 422) does
    not take it; register one for this class to answer it yourself.
    """


class WebSocketException(Exception):
    """Raised in a WebSocket handler to close the socket with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or ""
        super().__init__(code, self.reason)


class WebSocketDisconnect(Exception):
    """The peer closed the connection (or it was lost) with ``code`` and ``reason``."""

    def __init__(self, code: int = WS_1000_NORMAL_CLOSURE, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or ""
        super().__init__(code, self.reason)

    def __repr__(self) -> str:
        return f"WebSocketDisconnect(code={self.code!r}, reason={self.reason!r})"


class UnexpectedFrameType(TypeError):
    """A text frame arrived where binary data was expected, or the reverse.

    An unhandled one closes the socket with 1003 (unsupported data).
    """


class InvalidJSONMessage(ValueError):
    """A WebSocket message that should hold JSON does not.

    An unhandled one closes the socket with 1007 (invalid frame payload data).
    """
