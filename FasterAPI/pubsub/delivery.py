"""One broadcast as every local member needs it, the sinks that take it, and the one overflow policy.

The hub decodes each message once per worker into a :class:`Delivery` and hands that same
object to the :class:`Sink` of every local member. A sink is either the ASGI
:class:`~FasterAPI.pubsub.outbox.Outbox` (any server) or a server's own sink (our frame-once
protocol, ``FasterAPI.server.protocol``), which writes the same framed bytes to every
member's transport. Each encoded form of a delivery (an ASGI message, a frame, a deflated
frame) is built at most once per broadcast, by whoever needs it first: framing stays in the
server, which passes its :data:`Encoder` in.

Both sinks bound what a connection may hold, and :meth:`SinkSettings.overflow` is the one
policy for a full one: close it with 1013 (the default) or drop its oldest broadcast; both
are counted.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..config import Overflow
from ..status import WS_1013_TRY_AGAIN_LATER
from ..types import Message

if TYPE_CHECKING:
    from .hub import HubStats

__all__ = ["SINK_EXTENSION", "Delivery", "Encoder", "ServerSink", "Sink", "SinkSettings", "Transform"]

logger = logging.getLogger("fasterapi.hub")

#: The ASGI scope extension under which a server offers its :class:`ServerSink`.
SINK_EXTENSION = "fasterapi.sink"

#: Builds one encoded form of a payload: ``encoder(payload, binary) -> bytes``. A sink passes
#: the same encoder object for every delivery, so the form is built once and shared.
Encoder = Callable[[bytes, bool], bytes]
#: Builds another delivery from one (a protocol's own framing of it): see :meth:`Delivery.derived`.
Transform = Callable[["Delivery"], "Delivery"]


class Delivery:
    """One broadcast (its payload, whether it is binary, its offset in the room's history or 0),
    each encoded form built at most once.

    ``room`` and ``epoch`` say where it belongs ("" for a direct send, or a room without
    history); ``is_json``: the text payload is a JSON-encoded value (not a ``str`` that was
    sent). A protocol that wraps broadcasts in a frame of its own asks for :meth:`derived`,
    which every member of the worker then shares, as they share :meth:`encoded`.
    """

    __slots__ = (
        "_derived",
        "_derived_others",
        "_encoder",
        "_form",
        "_message",
        "_others",
        "_transform",
        "binary",
        "epoch",
        "is_json",
        "offset",
        "payload",
        "room",
    )

    def __init__(
        self,
        payload: bytes,
        binary: bool,
        offset: int = 0,
        *,
        room: str = "",
        epoch: str = "",
        is_json: bool = False,
    ) -> None:
        self.payload = payload
        self.binary = binary
        self.offset = offset
        self.room = room
        self.epoch = epoch
        self.is_json = is_json
        self._message: Message | None = None
        # Most members use one form (the plain frame): it gets slots of its own, others a dict.
        self._encoder: Encoder | None = None
        self._form = b""
        self._others: dict[Encoder, bytes] | None = None
        # Likewise derived deliveries: one transform in slots (the realtime endpoint's), more in a dict.
        self._transform: Transform | None = None
        self._derived: Delivery | None = None
        self._derived_others: dict[Transform, Delivery] | None = None

    def derived(self, transform: Transform) -> Delivery:
        """``transform(self)``, computed on the first call with that transform only."""
        if transform is self._transform:
            return self._derived  # type: ignore[return-value]
        if self._transform is None:
            self._transform = transform
            made = self._derived = transform(self)
            return made
        others = self._derived_others
        if others is None:
            others = self._derived_others = {}
        found = others.get(transform)
        if found is None:
            found = others[transform] = transform(self)
        return found

    @property
    def message(self) -> Message:
        """The ASGI ``websocket.send`` message (shared: servers do not mutate it)."""
        if self._message is None:
            if self.binary:
                self._message = {"type": "websocket.send", "bytes": self.payload}
            else:
                self._message = {"type": "websocket.send", "text": self.payload.decode("utf-8")}
        return self._message

    def encoded(self, encoder: Encoder) -> bytes:
        """``encoder(payload, binary)``, computed on the first call with that encoder only."""
        if encoder is self._encoder:
            return self._form
        if self._encoder is None:
            self._encoder = encoder
            self._form = encoder(self.payload, self.binary)
            return self._form
        others = self._others
        if others is None:
            others = self._others = {}
        data = others.get(encoder)
        if data is None:
            data = others[encoder] = encoder(self.payload, self.binary)
        return data


class Sink(abc.ABC):
    """Where the hub delivers one connection's broadcasts, within a bound."""

    __slots__ = ()

    @abc.abstractmethod
    def deliver(self, delivery: Delivery) -> None:
        """Send (or queue) ``delivery``; never blocks, never raises."""

    @abc.abstractmethod
    def close(self) -> None:
        """Accept nothing more; forget what is queued (a server sink writes what it already batched)."""

    @property
    @abc.abstractmethod
    def pending(self) -> int:
        """Broadcasts accepted for this connection and not yet handed to its transport."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """Who this connection is, for log lines."""

    @abc.abstractmethod
    def drop_oldest(self) -> None:
        """Forget the oldest queued broadcast (the ``drop_oldest`` policy makes room)."""

    @abc.abstractmethod
    def close_for_overflow(self) -> None:
        """Forget what is queued, close the connection with 1013 and make sure it ends."""


class ServerSink(Sink):
    """A sink a server offers for a connection, under the scope extension :data:`SINK_EXTENSION`."""

    __slots__ = ()

    @abc.abstractmethod
    def attach(self, settings: SinkSettings) -> bool:
        """Serve this connection's broadcasts under ``settings``; False if it cannot (use ASGI)."""


class SinkSettings:
    """A hub's bound per connection, its overflow policy, its counters and its eviction.

    One object that every sink of that hub shares, instead of four references each.
    """

    __slots__ = ("evict", "limit", "policy", "stats", "write_delay")

    def __init__(
        self,
        limit: int,
        policy: Overflow,
        stats: HubStats,
        evict: Callable[[str], Awaitable[None]] | None = None,
        write_delay: float = 0.0,
    ) -> None:
        self.limit = limit
        self.policy = policy
        self.stats = stats
        #: Takes a connection (by id) out of its rooms and presence at once; set by the hub.
        self.evict = evict
        #: Seconds a server sink may hold broadcasts to write them in one call (0: at once).
        #: The ASGI path sends each message as it comes.
        self.write_delay = write_delay

    def overflow(self, sink: Sink) -> bool:
        """``sink`` holds ``limit`` broadcasts and one more came: apply the policy.

        Returns True when the new broadcast may be queued (the oldest was dropped), False
        when the connection was closed instead.
        """
        stats = self.stats
        if self.policy is Overflow.DROP_OLDEST:
            sink.drop_oldest()
            stats.dropped += 1
            return True
        stats.slow_consumer_closes += 1
        stats.dropped += sink.pending + 1
        logger.warning(
            "%s fell %d broadcasts behind; closing it with %d", sink.label, self.limit, WS_1013_TRY_AGAIN_LATER
        )
        sink.close_for_overflow()
        return False
