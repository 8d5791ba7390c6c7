"""The ASGI sink: a connection's broadcasts through the app's ``send``, on any server.

Each message is sent at once, on the hub's stack, while the server's send completes without
waiting; a send that has to wait for the transport continues on a task of its own, with a
bounded queue behind it, so a client that stops reading only fills its own queue and never
delays the others. A full queue is :meth:`SinkSettings.overflow`'s to decide.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, Protocol

from ..status import WS_1013_TRY_AGAIN_LATER
from ..types import Message, Send, WebSocketState
from .delivery import Delivery, Sink, SinkSettings

__all__ = ["AsgiConnection", "Outbox"]

logger = logging.getLogger("fasterapi.hub")

class AsgiConnection(Protocol):
    """What an :class:`Outbox` needs of its connection (``FasterAPI.WebSocket`` provides it)."""

    @property
    def id(self) -> str:
        """The connection's id, for eviction and log lines."""

    @property
    def application_state(self) -> WebSocketState:
        """The app's side of the connection: messages may be sent while it is CONNECTED."""

    async def close(self, code: int = ..., reason: str | None = ...) -> None:
        """Close the connection through the state machine."""


class Outbox(Sink):
    """Messages waiting to be sent to one WebSocket through ASGI, at most ``settings.limit`` of them.

    ``send`` is the connection's raw ASGI send: the outbox checks the app's state itself,
    and a hub delivery must not raise into anyone's handler.
    """

    __slots__ = ("_drain_task", "closed", "connection", "queue", "send", "settings")

    def __init__(self, connection: AsgiConnection, send: Send, settings: SinkSettings) -> None:
        self.connection = connection
        self.send = send
        self.settings = settings
        #: Made on the first message and dropped once drained: an empty deque is 760 bytes,
        #: and most sockets are idle between broadcasts.
        self.queue: collections.deque[Message] | None = None
        self.closed = False
        self._drain_task: asyncio.Task[None] | None = None

    def deliver(self, delivery: Delivery) -> None:
        self.put(delivery.message)

    @property
    def pending(self) -> int:
        return len(self.queue or ())

    @property
    def label(self) -> str:
        return f"Connection {self.connection.id}"

    def put(self, message: Message) -> None:
        """Send or queue ``message``; never blocks, never raises."""
        if self.closed:
            return
        queue = self.queue
        if queue is None:
            if self._drain_task is None:
                self._send_now(message)
                return
            queue = self.queue = collections.deque()
        elif len(queue) >= self.settings.limit and not self.settings.overflow(self):
            return
        queue.append(message)
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain(None))

    def _send_now(self, message: Message) -> None:
        """Run the ASGI send on the caller's stack; only one that has to wait gets a task.

        A server's send returns without suspending unless the socket's write buffer is full,
        so an idle connection costs no task (and no objects that live through a fan-out).
        """
        if self.connection.application_state is not WebSocketState.CONNECTED:
            self.close()
            return
        send = self.send(message)
        unfinished: Awaitable[None] = send
        if isinstance(send, Coroutine):  # any other awaitable is awaited on the task
            try:
                waiting_on = send.send(None)
            except StopIteration:
                self.settings.stats.delivered += 1
                return
            except Exception as error:
                self._stopped_by(error)
                return
            unfinished = _Resume(send, waiting_on)
        # It waits for the transport: finish it on a task, and queue what comes meanwhile.
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(unfinished))

    async def _drain(self, unfinished: Awaitable[None] | None) -> None:
        connection = self.connection
        stats = self.settings.stats
        try:
            if unfinished is not None:
                await unfinished
                stats.delivered += 1
            while not self.closed and self.queue:
                if connection.application_state is not WebSocketState.CONNECTED:
                    self.close()
                    return
                await self.send(self.queue.popleft())
                stats.delivered += 1
        except Exception as error:
            self._stopped_by(error)
        finally:
            self._drain_task = None
            if not self.queue:
                self.queue = None

    def _stopped_by(self, error: Exception) -> None:
        if isinstance(error, RuntimeError):
            # The server closed the socket itself (keepalive timeout) between our check and
            # the send: a disconnect like any other, not a failure worth a traceback.
            logger.debug("Delivery to %s stopped: %s", self.connection.id, error)
        elif not isinstance(error, OSError):  # OSError: the client is gone; its handler sees it
            logger.error("Delivery to connection %s failed", self.connection.id, exc_info=error)
        self.close()

    def drop_oldest(self) -> None:
        if self.queue:
            self.queue.popleft()

    def close_for_overflow(self) -> None:
        self.close()
        asyncio.get_running_loop().create_task(self._close_socket())

    async def _close_socket(self) -> None:
        evict = self.settings.evict
        if evict is not None:
            # The hub forgets the connection now: a stuck client is no member and no presence.
            await evict(self.connection.id)
        if self.connection.application_state is WebSocketState.CONNECTED:
            # Through plain ASGI the close frame waits behind the client's full buffer, and
            # the transport cannot be aborted from here (our server protocol aborts it). No
            # deadline: a timed-out send is never written, so a client that reads again
            # late would never learn why it was closed; one that never reads is ended by the
            # server's keepalive ping timeout, which also ends this wait.
            with contextlib.suppress(Exception):
                await self.connection.close(WS_1013_TRY_AGAIN_LATER, "send queue overflow")

    def close(self) -> None:
        """Stop accepting messages and forget the queued ones."""
        self.closed = True
        self.queue = None
        task = self._drain_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            self._drain_task = None


class _Resume:
    """Awaiting this finishes a coroutine that was started outside any task.

    ``coroutine`` was stepped by hand and suspended on ``waiting_on`` (what it yielded, a
    future); a task awaiting this waits for that, then steps the coroutine as the task
    would have, passing in whatever the task is sent or thrown (a cancellation).
    """

    __slots__ = ("coroutine", "waiting_on")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coroutine = coroutine
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, value = self.coroutine, self.waiting_on
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:
                try:
                    value = coroutine.throw(error)
                except StopIteration:
                    return
            else:
                try:
                    value = coroutine.send(sent)
                except StopIteration:
                    return
