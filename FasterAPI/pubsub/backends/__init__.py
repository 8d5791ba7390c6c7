"""Pub/sub backends: the relays that carry room traffic and presence between workers.

Backends are picked by URL scheme from :data:`BACKENDS` and imported lazily, so using the
memory backend never imports redis, and a new backend is one module plus one row here.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from .base import Backend

__all__ = ["BACKENDS", "EXTRAS", "backend_from_url"]

#: URL scheme -> "module:Class" of the backend that serves it.
BACKENDS: dict[str, str] = {
    "memory": "FasterAPI.pubsub.backends.memory:MemoryBackend",
    "redis": "FasterAPI.pubsub.backends.redis:RedisBackend",
    "rediss": "FasterAPI.pubsub.backends.redis:RedisBackend",
    "redis+sentinel": "FasterAPI.pubsub.backends.redis_sentinel:RedisSentinelBackend",
    "redis+cluster": "FasterAPI.pubsub.backends.redis_cluster:RedisClusterBackend",
    "nats": "FasterAPI.pubsub.backends.nats:NatsBackend",
}

#: URL scheme -> the extra that installs its client library (``redis`` unless named here).
EXTRAS: dict[str, str] = {"nats": "nats"}


def backend_from_url(url: str, **options: Any) -> Backend:
    """Build the backend for ``url`` (``memory://``, ``redis://host:6379/0``, ``rediss://...``).

    ``options`` are keyword arguments of the backend's ``from_url``. Raises ValueError for an
    unknown scheme and ImportError when the backend's optional dependency is missing.
    """
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
            f"The {scheme}:// backend needs an optional dependency: "
            f"pip install 'fasterapi-hub[{EXTRAS.get(scheme, 'redis')}]' ({error})"
        ) from error
    backend_class: type[Backend] = getattr(module, class_name)
    return backend_class.from_url(url, **options)
