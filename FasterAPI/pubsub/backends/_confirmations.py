"""Subscriptions sent to a broker and not yet confirmed, and who waits for each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Confirmations"]

log = logging.getLogger("fasterapi.backends")


class Confirmations:
    """``subscribe()`` returns once the broker confirmed the channel, or after ``timeout``.

    A backend registers a waiter before it writes the command (the reply can arrive while the
    write is awaited), confirms each channel when the broker's reply comes in, and releases
    every waiter when its connection is gone: the channel stays wanted and the reconnect
    subscribes it, so nobody should wait for this connection's reply any longer.
    """

    __slots__ = ("_waiters", "command", "timeout")

    def __init__(self, command: str, timeout: float) -> None:
        #: The command's name, for the log line when a confirmation does not come in time.
        self.command = command
        self.timeout = timeout
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}

    def pending(self, raw: bytes) -> bool:
        """Whether someone waits for ``raw``'s confirmation (it was sent a moment ago)."""
        return raw in self._waiters

    async def wait(self, raw: bytes, channel: str, send: Callable[[], Awaitable[None]] | None = None) -> None:
        """Wait for ``raw``'s confirmation, after ``send()`` (which writes the command) if given."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(raw, []).append(waiter)
        try:
            if send is not None:
                await send()
            async with asyncio.timeout(self.timeout):
                await waiter
        except TimeoutError:
            log.debug("%s %r not confirmed within %.1fs", self.command, channel, self.timeout)
        finally:
            waiters = self._waiters.get(raw)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[raw]

    def confirm(self, raw: bytes) -> None:
        """The broker confirmed ``raw``: wake everyone waiting for it."""
        for waiter in self._waiters.pop(raw, ()):
            if not waiter.done():
                waiter.set_result(None)

    def release_all(self) -> None:
        """The connection is gone: wake every waiter (the reconnect subscribes their channels)."""
        for raw in list(self._waiters):
            self.confirm(raw)
