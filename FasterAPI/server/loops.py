"""One object per event loop and key, shared by every connection on that loop.

The write flusher (:mod:`.protocol`) and the keepalive wheel (:mod:`.keepalive`) each run
one timer for thousands of connections; tests start and stop many loops in one process, so
the entries of closed loops are dropped as new loops arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

__all__ = ["per_loop"]

K = TypeVar("K")
V = TypeVar("V")

#: Loops kept before the closed ones are looked for.
KEPT_LOOPS = 8


def per_loop(
    registry: dict[asyncio.AbstractEventLoop, dict[K, V]],
    loop: asyncio.AbstractEventLoop,
    key: K,
    make: Callable[[asyncio.AbstractEventLoop, K], V],
) -> V:
    """``registry[loop][key]``, made by ``make(loop, key)`` the first time."""
    by_key = registry.get(loop)
    if by_key is None:
        if len(registry) > KEPT_LOOPS:
            for old in [old for old in registry if old.is_closed()]:
                del registry[old]
        by_key = registry[loop] = {}
    value = by_key.get(key)
    if value is None:
        value = by_key[key] = make(loop, key)
    return value
