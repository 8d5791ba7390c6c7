"""Delivery of one broadcast to one connection, and the bounded queue behind it.

The hub decodes each message once per worker into a :class:`Delivery`, which builds what a
connection needs lazily and only once for all of them: the ASGI message, or the RFC 6455
frame (plain or deflated) that our server protocol writes straight to each transport.

:class:`Outbox` is the plain ASGI path (any server): each message is sent at once, on the
hub's stack, while the server's send completes without waiting; a send that has to wait for
the transport continues on a task of its own, with a bounded queue behind it, so a client
that stops reading only fills its own queue and never delays the others. When the queue is
full the policy decides: close the socket with 1013 (the default) or drop the oldest queued
message. Both are counted. The frame-once path, ``FasterAPI.server.protocol``, keeps the
same bound and policy on the transport itself.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Protocol

from ..config import Overflow
from ..server.frames import OP_BINARY, OP_TEXT, deflate, frame
from ..types import Message
from ..websockets import WebSocket, WebSocketState

if TYPE_CHECKING:
    from .hub import HubStats

logger = logging.getLogger("fasterapi.hub")

CLOSE_TRY_AGAIN_LATER = 1013
#: How long the ASGI path waits for the 1013 close to be written (it waits behind a full buffer).
CLOSE_WAIT = 5.0


class Delivery:
    """One broadcast as every local member may need it, each form built at most once."""

    __slots__ = ("_deflated", "_frame", "_message", "binary", "payload")

    def __init__(self, payload: bytes, binary: bool) -> None:
        self.payload = payload
        self.binary = binary
        self._message: Message | None = None
        self._frame: bytes | None = None
        self._deflated: dict[int, bytes] | None = None

    @property
    def message(self) -> Message:
        """The ASGI ``websocket.send`` message (shared: servers do not mutate it)."""
        if self._message is None:
            if self.binary:
                self._message = {"type": "websocket.send", "bytes": self.payload}
            else:
                self._message = {"type": "websocket.send", "text": self.payload.decode("utf-8")}
        return self._message

    @property
    def frame(self) -> bytes:
        """The complete unmasked frame."""
        if self._frame is None:
            self._frame = frame(OP_BINARY if self.binary else OP_TEXT, self.payload)
        return self._frame

    def deflated_frame(self, window_bits: int) -> bytes:
        """The frame compressed for permessage-deflate without server context takeover."""
        if self._deflated is None:
            self._deflated = {}
        data = self._deflated.get(window_bits)
        if data is None:
            opcode = OP_BINARY if self.binary else OP_TEXT
            data = self._deflated[window_bits] = frame(
                opcode, deflate(self.payload, window_bits), compressed=True
            )
        return data


class Sink(Protocol):
    """Where the hub delivers a connection's broadcasts: an :class:`Outbox`, or our protocol."""

    def deliver(self, delivery: Delivery) -> None:
        """Send (or queue) ``delivery``; never blocks, never raises."""

    def close(self) -> None:
        """Accept nothing more."""

    @property
    def pending(self) -> int:
        """Broadcasts accepted for this connection and not yet handed to its transport."""


class SinkSettings:
    """A hub's bound per connection, its overflow policy and its counters.

    One object that every connection's sink of that hub shares, instead of three references each.
    """

    __slots__ = ("limit", "policy", "stats")

    def __init__(self, limit: int, policy: Overflow, stats: HubStats) -> None:
        self.limit = limit
        self.policy = policy
        self.stats = stats


class Outbox:
    """Messages waiting to be sent to one WebSocket through ASGI, at most ``settings.limit`` of them."""

    __slots__ = ("_drain_task", "closed", "evict", "queue", "settings", "ws")

    def __init__(
        self, ws: WebSocket, settings: SinkSettings, evict: Callable[[WebSocket], Awaitable[None]] | None = None
    ) -> None:
        self.ws = ws
        self.settings = settings
        #: Called on overflow to take the connection out of its rooms and presence at once.
        self.evict = evict
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
        elif len(queue) >= self.settings.limit:
            if self.settings.policy is Overflow.DROP_OLDEST:
                queue.popleft()
                self.settings.stats.dropped += 1
            else:
                self._overflow_close()
                return
        queue.append(message)
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain(None))

    def _send_now(self, message: Message) -> None:
        """Run the ASGI send on the caller's stack; only one that has to wait gets a task.

        A server's send returns without suspending unless the socket's write buffer is full,
        so an idle connection costs no task (and no objects that live through a fan-out).
        """
        ws = self.ws
        if ws.application_state is not WebSocketState.CONNECTED:
            self.close()
            return
        # The raw ASGI send: the state machine was checked just above, and a hub delivery
        # must not raise into anyone's handler.
        send = ws._send(message)
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
        ws = self.ws
        stats = self.settings.stats
        try:
            if unfinished is not None:
                await unfinished
                stats.delivered += 1
            while not self.closed and self.queue:
                if ws.application_state is not WebSocketState.CONNECTED:
                    self.close()
                    return
                await ws._send(self.queue.popleft())
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
            logger.debug("Delivery to %s stopped: %s", self.ws.id, error)
        elif not isinstance(error, OSError):  # OSError: the client is gone; its handler sees it
            logger.error("Delivery to connection %s failed", self.ws.id, exc_info=error)
        self.close()

    def _overflow_close(self) -> None:
        stats = self.settings.stats
        stats.slow_consumer_closes += 1
        stats.dropped += len(self.queue or ()) + 1
        logger.warning(
            "Connection %s fell %d messages behind; closing it with %d",
            self.ws.id,
            self.settings.limit,
            CLOSE_TRY_AGAIN_LATER,
        )
        self.close()
        asyncio.get_running_loop().create_task(self._close_socket())

    async def _close_socket(self) -> None:
        if self.evict is not None:
            # The hub forgets the connection now: a stuck client is no member and no presence.
            await self.evict(self.ws)
        if self.ws.application_state is WebSocketState.CONNECTED:
            # Through plain ASGI the close frame waits behind the client's full buffer, and
            # the transport cannot be aborted from here; our server protocol aborts it.
            try:
                await asyncio.wait_for(self.ws.close(CLOSE_TRY_AGAIN_LATER, "send queue overflow"), CLOSE_WAIT)
            except Exception:
                pass

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
