"""A queue and an event for one connection, with their storage made only while it is used.

``asyncio.Queue`` allocates four deques up front (its items, getters, putters and the
``join()`` event's waiters) and ``asyncio.Event`` one, about 3.8 KB per WebSocket before a
single message moves. An idle server holds thousands of sockets whose queue is empty with
one waiting receive, and whose write flag is set with nobody waiting, so these keep only
what that state needs and make the rest on demand. For the same reason a waiting
``MessageQueue.get()`` is a small object, not a suspended coroutine frame.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

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

    def get(self, then: Callable[[Any], None] | None = None, owner: Any = None) -> Take[T]:
        """The next item, once there is one; ``then(owner)`` runs just after it is taken.

        Awaitable and a coroutine (``asyncio.create_task`` takes it). ``then`` and ``owner``
        let a caller act on each take without a coroutine frame of its own (a shared function
        and its object; a bound method would be one more allocation per get).
        """
        return Take(self, then, owner)

    def _wake_next(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break
        if not getters:
            self._getters = None


class Take(Generic[T]):
    """A pending ``MessageQueue.get()``: a coroutine written as an object, ~64 bytes.

    An ``async def get`` keeps its frame suspended while it waits, plus the frame of whoever
    wraps it (a few hundred bytes per idle socket). This is what such a coroutine would do,
    step by step: each ``send`` takes an item if there is one (finishing with it, as
    ``StopIteration``), else yields a future for ``put_nowait`` to complete. A cancellation
    (``throw``) or ``close`` while waiting withdraws the future, and if a put had already
    chosen it, hands that wake-up on to the next getter, so no message waits while a getter
    does, as in ``asyncio.Queue``.
    """

    __slots__ = ("_getter", "_owner", "_queue", "_then")

    def __init__(self, queue: MessageQueue[T], then: Callable[[Any], None] | None, owner: Any) -> None:
        self._queue = queue
        self._then = then
        self._owner = owner
        self._getter: asyncio.Future[None] | None = None

    def __await__(self) -> Generator[Any, None, T]:
        return self  # type: ignore[return-value]

    def __next__(self) -> asyncio.Future[None]:
        return self.send(None)

    def send(self, value: None) -> asyncio.Future[None]:
        self._getter = None
        queue = self._queue
        if queue._items:
            item = queue.get_nowait()
            if self._then is not None:
                self._then(self._owner)
            raise StopIteration(item)
        getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        getters = queue._getters
        if getters is None:
            getters = queue._getters = []
        getters.append(getter)
        self._getter = getter
        getter._asyncio_future_blocking = True  # as Future.__await__ does: the Task waits on it
        return getter

    def throw(
        self,
        error: type[BaseException] | BaseException,
        value: BaseException | object = None,
        traceback: TracebackType | None = None,
    ) -> asyncio.Future[None]:
        self._withdraw()
        if isinstance(error, BaseException):
            raise error
        raise error() if value is None else value  # type: ignore[misc]

    def close(self) -> None:
        self._withdraw()

    def _withdraw(self) -> None:
        getter, self._getter = self._getter, None
        if getter is None:
            return
        getter.cancel()
        queue = self._queue
        getters = queue._getters
        if getters is not None and getter in getters:
            getters.remove(getter)
        elif queue._items:
            queue._wake_next()  # we were woken, then stopped: hand the wake-up on


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
