"""Rooms and broadcast across workers: the hub, its backends, and a standalone publisher.

Backends are picked by URL scheme from :data:`BACKENDS` and imported lazily, so using the
memory backend never imports redis, and a new backend is one module plus one row here.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from .backends.base import Backend, BackendListener, BackendUnavailable
from .envelope import InvalidEnvelope, InvalidRoomName, PayloadTooLarge, validate_room

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendListener",
    "BackendUnavailable",
    "InvalidEnvelope",
    "InvalidRoomName",
    "PayloadTooLarge",
    "Publisher",
    "backend_from_url",
    "validate_room",
]

#: URL scheme -> "module:Class" of the backend that serves it.
BACKENDS: dict[str, str] = {
    "memory": "FasterAPI.pubsub.backends.memory:MemoryBackend",
    "redis": "FasterAPI.pubsub.backends.redis:RedisBackend",
    "rediss": "FasterAPI.pubsub.backends.redis:RedisBackend",
}


def backend_from_url(url: str, **options: Any) -> Backend:
    """Build the backend for ``url`` (``memory://``, ``redis://host:6379/0``, ``rediss://...``)."""
    scheme = urlsplit(url).scheme.lower()
    target = BACKENDS.get(scheme)
    if target is None:
        supported = ", ".join(f"{s}://" for s in sorted(BACKENDS))
        raise ValueError(f"Unsupported backend URL {url!r}: the scheme must be one of {supported}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"The {scheme}:// backend needs an optional dependency: pip install 'fasterapi-hub[redis]' ({error})"
        ) from error
    backend_class: type[Backend] = getattr(module, class_name)
    return backend_class.from_url(url, **options)  # type: ignore[attr-defined,no-any-return]


def __getattr__(name: str) -> Any:
    # Publisher pulls in the hub's encoding; import it only when asked for.
    if name == "Publisher":
        from .publisher import Publisher

        return Publisher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
