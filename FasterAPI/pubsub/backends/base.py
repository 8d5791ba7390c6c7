"""The contracts a backend fulfils: a relay between workers, and a presence store.

A :class:`Backend` relays opaque bytes between the workers of one app on named channels.
It knows nothing of rooms, sockets or envelopes: the hub (``FasterAPI.pubsub.hub``) builds
those on top. A :class:`PresenceStore` keeps, per room, member ids that expire on their own.
A backend usually brings its own store (:attr:`Backend.presence`); one that cannot expire
entries (NATS core) pairs with another store instead.

A new backend is one module with a :class:`Backend` subclass, plus one row in
``FasterAPI.pubsub.backends.BACKENDS``. Reconnecting is ``_reconnect.Supervisor``'s job.
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, Self

from ..errors import BackendUnavailable
from ..history import HistoryRange, Position, Retention

__all__ = [
    "Backend",
    "BackendListener",
    "BackendUnavailable",
    "PresenceStore",
    "describe_error",
    "wall_clock",
    "worker_part",
]


def describe_error(error: BaseException | None) -> str:
    """``Type: message`` for an outage log line (redis-py 8's repr is a terse "network:...")."""
    if error is None:
        return "no error"
    return f"{type(error).__name__}: {error}"


def wall_clock() -> str:
    """Local time to the millisecond, for outage log lines (uvicorn's log format has no time)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


def worker_part(member: str) -> str:
    """The worker a presence member (a connection id, ``"<worker>.<n>"``) belongs to."""
    return member.partition(".")[0]


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


class PresenceStore(abc.ABC):
    """Who is in each room across workers, at a cost that grows with workers, not with rooms.

    Members are connection ids (``"<worker>.<n>"``) that join and leave explicitly, each with
    optional metadata (opaque bytes: JSON, for the realtime endpoint's presence); a member
    counts only while its worker (the part of its id before the dot) keeps up its
    :meth:`heartbeat`, so the members of a worker that died without cleanup stop counting when
    its heartbeat runs out, without a write per room. Reads filter them out (and may sweep
    them away). Raises :class:`BackendUnavailable` at once when its server is down; never hangs.
    """

    @abc.abstractmethod
    async def add(self, room: str, members: Iterable[str], metadata: Mapping[str, bytes] | None = None) -> None:
        """Add members of ``room`` (adding one twice is a no-op).

        ``metadata`` maps some of them to their metadata, which replaces what they had; a
        member added without any keeps what it had (none for a new one).
        """

    @abc.abstractmethod
    async def remove(self, room: str, members: Iterable[str]) -> None:
        """Remove members of ``room`` at once, with their metadata."""

    async def remove_everywhere(self, member: str, rooms: Iterable[str]) -> None:
        """Remove ``member`` from each of ``rooms`` (a closing connection); stores batch it."""
        for room in rooms:
            await self.remove(room, [member])

    @abc.abstractmethod
    async def heartbeat(self, worker: str, ttl: float) -> bool:
        """``worker``'s members count for ``ttl`` more seconds (a worker calls it every ttl/3).

        Returns True when its heartbeat had run out (or was never set): reads may have swept
        its members away, so the worker adds them again.
        """

    @abc.abstractmethod
    async def retire(self, worker: str) -> None:
        """``worker`` stopped: its members stop counting now."""

    @abc.abstractmethod
    async def members(self, room: str) -> list[str]:
        """The members of ``room`` whose worker is alive, in no particular order."""

    @abc.abstractmethod
    async def described(self, room: str) -> dict[str, bytes]:
        """The members of ``room`` whose worker is alive, each with its metadata (``b""``: none)."""

    @abc.abstractmethod
    async def count(self, room: str) -> int:
        """How many members of ``room`` have a worker that is alive."""


class Backend(abc.ABC):
    """Relays bytes between workers on named channels.

    What every backend promises (``tests/pubsub/test_backend_contract.py`` checks each one):

    - **Names.** Channel names given to a backend are logical (``"room:lobby"``); a backend
      adds its own namespace prefix and hands back the logical name.
    - **Start.** :meth:`start` returns once connected, or once the first attempts failed and
      retries go on in the background (``available`` is then False, and the listener has
      been told ``on_connection_lost``), so an app can start while its relay is down.
    - **Publish.** :meth:`publish` reaches every subscriber of the channel, this worker
      included, or raises :class:`BackendUnavailable` at once; it never hangs and is never
      retried (the message may have gone out already). It returns what the relay assigned
      to the message: nothing for plain pub/sub.
    - **Subscribe.** :meth:`subscribe` and :meth:`unsubscribe` are idempotent and never raise
      for a connection problem. While connected, ``subscribe`` returns only once the broker
      confirmed the subscription, so a message published after it returns is received;
      while disconnected it records the channel for the reconnect. After ``unsubscribe``
      returns, nothing more is delivered on that channel, even what was in flight.
    - **Lost and restored.** Subscriptions survive reconnects: the backend re-subscribes
      every wanted channel by itself, and only then calls ``on_connection_restored``.
      ``on_connection_lost`` and ``on_connection_restored`` strictly alternate, starting
      with ``on_connection_lost``; ``available`` is False from the first to the second.
    - **Listener errors.** An exception raised by the listener is logged and counted, and
      delivery goes on.
    - **History** (when :attr:`keeps_history`). ``publish`` with a :class:`Retention` stores
      the message in the room's history and publishes it stamped with its position
      (``envelope.stamp``) in one atomic step, and returns that :class:`Position`: offsets
      start at 1 and grow by exactly 1 per message; the epoch is made when the room has no
      history (new, expired, or lost with the relay's data) and changes only then.
      :meth:`read_history` and :meth:`history_tops` read it back.
    """

    #: True while the backend can publish and receive.
    available: bool = False

    #: The presence store this backend brings, or None when presence must come from elsewhere.
    presence: PresenceStore | None = None

    #: True when this backend keeps room history (``publish`` with a Retention, the reads).
    keeps_history: bool = False

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from a URL of this backend's scheme; ``options`` are keyword arguments."""

    @property
    @abc.abstractmethod
    def subscribed_channels(self) -> set[str]:
        """The logical channels this backend delivers (a copy); the reconnect resubscribes them."""

    @abc.abstractmethod
    async def start(self, listener: BackendListener) -> None:
        """Connect (with the backend's retry policy) and start delivering to ``listener``."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop listening and close every connection. Safe to call twice; bounded in time."""

    @abc.abstractmethod
    async def publish(self, channel: str, data: bytes, retention: Retention | None = None) -> Position | None:
        """Send ``data`` to every subscriber of ``channel``; :class:`BackendUnavailable` when down.

        With ``retention``, also keep it in that room's history; returns its position (else None).
        """

    async def read_history(self, retention: Retention, after: int, limit: int) -> HistoryRange:
        """The room's epoch and top, and up to ``limit`` stored envelopes with an offset above ``after``.

        A room without history gets a new epoch here (top 0), which its next publish keeps.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no room history")

    async def history_tops(self, rooms: Sequence[str]) -> dict[str, Position | None]:
        """The top position of each room's history (None: it has none), in one round trip."""
        raise NotImplementedError(f"{type(self).__name__} keeps no room history")

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``; returns once the broker confirmed it. Idempotent."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``. Idempotent."""
