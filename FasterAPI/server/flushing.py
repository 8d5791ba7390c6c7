"""Write coalescing's one timer: every connection's batched frames written at one moment.

:class:`~.protocol.FasterWebSocketProtocol` batches the frames a broadcast hands it; the
loop's flusher writes them at the end of the event-loop iteration, or ``write_delay`` seconds
after a window's first frame.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .loops import per_loop

if TYPE_CHECKING:
    from .protocol import FasterWebSocketProtocol

__all__ = ["Flusher", "flusher_for"]


class Flusher:
    """Writes every connection's batched frames at one moment: the end of this event-loop
    iteration, or ``delay`` seconds after the first frame of a window (write coalescing).

    One flusher (one timer) per loop and delay serves every connection: with thousands of
    busy sockets a timer each would cost a heap push and pop per socket per window.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        self.dirty: list[FasterWebSocketProtocol] = []

    def add(self, connection: FasterWebSocketProtocol) -> None:
        if not self.dirty:
            if self.delay:
                self.loop.call_later(self.delay, self.flush)
            else:
                self.loop.call_soon(self.flush)
        self.dirty.append(connection)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for connection in dirty:
            connection._flush()


#: loop -> write delay -> its flusher (looked up per connection and iteration: no key tuple).
_flushers: dict[asyncio.AbstractEventLoop, dict[float, Flusher]] = {}


def flusher_for(loop: asyncio.AbstractEventLoop, delay: float) -> Flusher:
    by_delay = _flushers.get(loop)
    flusher = None if by_delay is None else by_delay.get(delay)
    return per_loop(_flushers, loop, delay, Flusher) if flusher is None else flusher
