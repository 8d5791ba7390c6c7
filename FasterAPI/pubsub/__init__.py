"""Rooms and broadcast across workers: the hub, its backends, and a standalone publisher.

Importing this package is light: it pulls in neither the web core nor uvicorn, so a Celery
task or a cron script can ``from FasterAPI.pubsub import Publisher``. Backends are picked by
URL scheme (``FasterAPI.pubsub.backends.BACKENDS``) and imported lazily, so using the memory
backend never imports redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backends import BACKENDS, backend_from_url
from .backends.base import Backend, BackendListener, PresenceStore
from .envelope import validate_room
from .errors import (
    BackendUnavailable,
    InvalidEnvelope,
    InvalidRoomName,
    PayloadTooLarge,
    PubSubError,
    TooManyRooms,
)
from .history import Gap, History, JoinResult, Position

if TYPE_CHECKING:
    from .publisher import Publisher

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendListener",
    "BackendUnavailable",
    "Gap",
    "History",
    "InvalidEnvelope",
    "InvalidRoomName",
    "JoinResult",
    "PayloadTooLarge",
    "Position",
    "PresenceStore",
    "PubSubError",
    "Publisher",
    "TooManyRooms",
    "backend_from_url",
    "validate_room",
]


def __getattr__(name: str) -> Any:
    # Publisher pulls in the hub's settings; import it only when asked for.
    if name == "Publisher":
        from .publisher import Publisher

        return Publisher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
