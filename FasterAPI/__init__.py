"""FasterAPI: a lean ASGI framework with WebSocket rooms that work across workers and hosts.

Every public name is imported on first use, so ``from FasterAPI.pubsub import Publisher``
(a Celery task, a cron script) loads neither the web core nor uvicorn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: The installed version (``importlib.metadata``), read on first use like every public name.
__version__: str

if TYPE_CHECKING:
    from . import status
    from .applications import Faster
    from .background import BackgroundTasks
    from .datastructures import URL, Headers, QueryParams, State, UploadFile
    from .dependencies import Depends, Security
    from .exceptions import (
        HTTPException,
        InvalidJSONMessage,
        RequestValidationError,
        UnexpectedFrameType,
        WebSocketDisconnect,
        WebSocketException,
        WebSocketRequestValidationError,
    )
    from .params import Body, Cookie, File, Form, Header, Path, Query
    from .pubsub.history import History, JoinResult, Position
    from .requests import Request
    from .responses import (
        FileResponse,
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        RedirectResponse,
        Response,
        StreamingResponse,
    )
    from .routing import APIRouter
    from .websockets import WebSocket, WebSocketState


#: Public name -> the module that defines it.
_PUBLIC: dict[str, str] = {
    "Faster": "applications",
    "BackgroundTasks": "background",
    "UploadFile": "datastructures",
    "URL": "datastructures",
    "Headers": "datastructures",
    "QueryParams": "datastructures",
    "State": "datastructures",
    "Depends": "dependencies",
    "Security": "dependencies",
    "HTTPException": "exceptions",
    "InvalidJSONMessage": "exceptions",
    "RequestValidationError": "exceptions",
    "UnexpectedFrameType": "exceptions",
    "WebSocketDisconnect": "exceptions",
    "WebSocketException": "exceptions",
    "WebSocketRequestValidationError": "exceptions",
    "Body": "params",
    "Cookie": "params",
    "File": "params",
    "Form": "params",
    "Header": "params",
    "Path": "params",
    "Query": "params",
    "History": "pubsub.history",
    "JoinResult": "pubsub.history",
    "Position": "pubsub.history",
    "Request": "requests",
    "FileResponse": "responses",
    "HTMLResponse": "responses",
    "JSONResponse": "responses",
    "PlainTextResponse": "responses",
    "RedirectResponse": "responses",
    "Response": "responses",
    "StreamingResponse": "responses",
    "APIRouter": "routing",
    "WebSocket": "websockets",
    "WebSocketState": "websockets",
}

__all__ = [
    "URL",
    "APIRouter",
    "BackgroundTasks",
    "Body",
    "Cookie",
    "Depends",
    "Faster",
    "File",
    "FileResponse",
    "Form",
    "HTMLResponse",
    "HTTPException",
    "Header",
    "Headers",
    "History",
    "InvalidJSONMessage",
    "JSONResponse",
    "JoinResult",
    "Path",
    "PlainTextResponse",
    "Position",
    "Query",
    "QueryParams",
    "RedirectResponse",
    "Request",
    "RequestValidationError",
    "Response",
    "Security",
    "State",
    "StreamingResponse",
    "UnexpectedFrameType",
    "UploadFile",
    "WebSocket",
    "WebSocketDisconnect",
    "WebSocketException",
    "WebSocketRequestValidationError",
    "WebSocketState",
    "status",
]


def __getattr__(name: str) -> Any:
    if name == "status":
        return importlib.import_module(f"{__name__}.status")
    if name == "__version__":
        globals()[name] = version = _version()
        return version
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def _version() -> str:
    """This distribution's version from its installed metadata (pyproject.toml is the one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fasterapi-hub")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC, "status", "__version__"})
