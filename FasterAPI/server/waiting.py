"""A queue and an event for one connection, with their storage made only while it is used.

``asyncio.Queue`` allocates four deques up front (its items, getters, putters and the
``join()`` event's waiters) and ``asyncio.Event`` one, about 3.8 KB per WebSocket before a
single message moves. An idle server holds thousands of sockets whose queue is empty with
one waiting receive, and whose write flag is set with nobody waiting, so these keep only
what that state needs and make the rest on demand.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["MessageQueue", "WaitFlag"]


class MessageQueue(Generic[T]):
    """The part of ``asyncio.Queue`` a connection's received messages use: unbounded, FIFO.

    ``put_nowait`` wakes the longest-waiting ``get``, as in asyncio; a cancelled ``get``
    passes its wake-up on, so no message waits while a getter does.
    """

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: collections.deque[T] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        items = self._items
        if items is None:
            items = self._items = collections.deque()
        items.append(item)
        self._wake_next()

    def get_nowait(self) -> T:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None
        return item

    async def get(self) -> T:
        while not self._items:
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            getters = self._getters
            if getters is None:
                getters = self._getters = []
            getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                if getter in getters:
                    getters.remove(getter)
                elif self._items:
                    self._wake_next()  # we were woken, then cancelled: hand the wake-up on
                raise
        return self.get_nowait()

    def _wake_next(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break
        if not getters:
            self._getters = None


class WaitFlag:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait``, with no waiter list while no one waits."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
