"""The contract every pub/sub backend fulfils.

A backend relays opaque bytes between the workers of one app on named channels and keeps
presence entries that expire on their own. It knows nothing of rooms, sockets or envelopes:
the hub (``FasterAPI.pubsub.hub``) builds those on top. A new backend (NATS, Postgres) is one
module that subclasses :class:`Backend` and one row in ``FasterAPI.pubsub.BACKENDS``.
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Iterable
from typing import Protocol


def describe_error(error: BaseException | None) -> str:
    """``Type: message`` for an outage log line (redis-py 8's repr is a terse "network:...")."""
    if error is None:
        return "no error"
    return f"{type(error).__name__}: {error}"


def wall_clock() -> str:
    """Local time to the millisecond, for outage log lines (uvicorn's log format has no time)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


class BackendUnavailable(RuntimeError):
    """The backend cannot carry this operation now (not started, or its connection is down)."""


class BackendListener(Protocol):
    """What a backend reports to: the hub implements this.

    Every method is synchronous and is called on the event loop; none of them may block.
    """

    def on_message(self, channel: str, data: bytes) -> None:
        """A message arrived on a channel this worker subscribed to."""

    def on_connection_lost(self, error: BaseException | None) -> None:
        """The relay went down; subscriptions are paused until ``on_connection_restored``."""

    def on_connection_restored(self) -> None:
        """The relay is back and every subscribed channel has been subscribed again.

        Messages published while it was down are lost (pub/sub is at-most-once).
        """


class Backend(abc.ABC):
    """Relays bytes between workers, and keeps presence entries with a time to live.

    Channel and key names given to a backend are logical (``"room:lobby"``); a backend adds
    its own namespace prefix. Subscriptions are idempotent and survive reconnects: the
    backend re-subscribes by itself and then calls ``listener.on_connection_restored()``.
    """

    #: True while the backend can publish and receive.
    available: bool = False

    @abc.abstractmethod
    async def start(self, listener: BackendListener) -> None:
        """Connect (with the backend's retry policy) and start delivering to ``listener``.

        Returns once connected, or once the first attempts failed and retries go on in the
        background (``available`` is then False), so an app can start while its relay is down.
        """

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop listening and close every connection. Safe to call twice."""

    @abc.abstractmethod
    async def publish(self, channel: str, data: bytes) -> None:
        """Send ``data`` to every subscriber of ``channel``, this worker included.

        Raises :class:`BackendUnavailable` at once when the relay is down; never hangs.
        """

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``. Idempotent."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``. Idempotent."""

    # Presence: a set per room of member ids, each entry with its own expiry.

    @abc.abstractmethod
    async def presence_add(self, room: str, members: Iterable[str], ttl: float) -> None:
        """Add (or refresh) members of ``room`` that expire ``ttl`` seconds from now."""

    @abc.abstractmethod
    async def presence_remove(self, room: str, members: Iterable[str]) -> None:
        """Remove members of ``room`` at once."""

    @abc.abstractmethod
    async def presence_members(self, room: str) -> list[str]:
        """The unexpired members of ``room``, in no particular order."""

    @abc.abstractmethod
    async def presence_count(self, room: str) -> int:
        """How many unexpired members ``room`` has."""
