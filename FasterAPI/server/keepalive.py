"""Keepalive pings for every connection of a worker on one timer.

uvicorn keeps a timer per connection for its next ping (and another for the pong deadline):
with uvloop each is ~540 bytes that an idle socket holds for its whole life, and a heap push
and pop per ping. Here a connection is an entry in a bucket of the second it is due, and one
timer per loop walks the due buckets. Due times are rounded up to the wheel's tick (1 s for
uvicorn's default 20 s interval): a ping or a deadline is at most one tick late, never early.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Protocol

from .loops import per_loop

__all__ = ["KeepaliveWheel", "wheel_for"]

logger = logging.getLogger("fasterapi.server")

#: The finest and the coarsest tick: a tenth of the shortest delay, within these bounds.
MIN_TICK = 0.01
MAX_TICK = 1.0


class Pinged(Protocol):
    """What the wheel needs of a connection: a place for its bucket, and what to do when due."""

    _keepalive_at: int | None

    def keepalive_due(self) -> None: ...


class KeepaliveWheel:
    """Connections due at some time, in one bucket per tick; one timer runs the due buckets."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float) -> None:
        self.loop = loop
        self.tick = tick
        self.buckets: dict[int, set[Pinged]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def schedule(self, connection: Pinged, delay: float) -> None:
        """Call ``connection.keepalive_due()`` in ``delay`` seconds (replacing any earlier call)."""
        self.discard(connection)
        number = math.ceil((self.loop.time() + delay) / self.tick)
        bucket = self.buckets.get(number)
        if bucket is None:
            bucket = self.buckets[number] = set()
        bucket.add(connection)
        connection._keepalive_at = number
        if self._timer is None:
            self._timer = self.loop.call_at(number * self.tick, self._run)

    def discard(self, connection: Pinged) -> None:
        """Forget ``connection`` (closed, or no longer kept alive)."""
        number = connection._keepalive_at
        if number is None:
            return
        connection._keepalive_at = None
        bucket = self.buckets.get(number)
        if bucket is not None:
            bucket.discard(connection)
            if not bucket:
                del self.buckets[number]

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self.buckets.values())

    def _run(self) -> None:
        self._timer = None
        now = self.loop.time()
        for number in sorted(self.buckets):
            if number * self.tick > now:
                break
            for connection in self.buckets.pop(number):
                connection._keepalive_at = None
                try:
                    connection.keepalive_due()
                except Exception:  # one connection's failure must not stop everyone's pings
                    logger.exception("Keepalive of a connection failed")
        if self.buckets:
            self._timer = self.loop.call_at(min(self.buckets) * self.tick, self._run)


#: loop -> tick -> its wheel.
_wheels: dict[asyncio.AbstractEventLoop, dict[float, KeepaliveWheel]] = {}


def wheel_for(loop: asyncio.AbstractEventLoop, *delays: float | None) -> KeepaliveWheel:
    """The loop's wheel with a tick fine enough for ``delays`` (a tenth of the shortest)."""
    shortest = min((delay for delay in delays if delay), default=MAX_TICK * 10)
    tick = min(MAX_TICK, max(MIN_TICK, shortest / 10))
    return per_loop(_wheels, loop, tick, KeepaliveWheel)
