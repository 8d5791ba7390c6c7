"""FasterAPI: a lean ASGI framework with WebSocket rooms that work across workers and hosts."""

from . import status
from .applications import Faster
from .datastructures import URL, Headers, QueryParams, State
from .dependencies import Depends
from .exceptions import (
    HTTPException,
    InvalidJSONMessage,
    RequestValidationError,
    UnexpectedFrameType,
    WebSocketDisconnect,
    WebSocketException,
)
from .params import Body, Cookie, Header, Path, Query
from .requests import Request
from .responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from .routing import APIRouter
from .websockets import WebSocket, WebSocketState

__version__ = "0.1.0"

__all__ = [
    "URL",
    "APIRouter",
    "Body",
    "Cookie",
    "Depends",
    "Faster",
    "HTMLResponse",
    "HTTPException",
    "Header",
    "Headers",
    "InvalidJSONMessage",
    "JSONResponse",
    "Path",
    "PlainTextResponse",
    "Query",
    "QueryParams",
    "RedirectResponse",
    "Request",
    "RequestValidationError",
    "Response",
    "State",
    "StreamingResponse",
    "UnexpectedFrameType",
    "WebSocket",
    "WebSocketDisconnect",
    "WebSocketException",
    "WebSocketState",
    "status",
]
