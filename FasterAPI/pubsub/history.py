"""Room history: positions, the settings, and the worker-side cursor that keeps a room in order.

With history on, every broadcast to a room is stored by the relay in the room's history
and stamped with its :class:`Position` (an offset that grows by exactly one per message, and
the epoch of the history it belongs to) in the same atomic step as its publication. Each
worker follows every room it serves with a :class:`RoomCursor`: the last offset it delivered.
A message beyond the next offset means some were lost on the way (a subscriber that dropped,
a reconnect): the worker reads the missing range from the history and delivers it first; a
message at or below the last offset is a duplicate and is dropped. A range the history no
longer holds, or a history that was lost (a new epoch), is a :class:`Gap`, reported to the app.

A joining connection that names the last position it saw (``join(room, since=...)``) gets
every message after it, in order and exactly once, before any live message of that room
(:class:`Joiner`), or ``recovered=False`` when the history no longer covers it.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .delivery import Delivery, Sink
from .envelope import KIND_TEXT, Envelope

__all__ = [
    "Gap",
    "History",
    "HistoryRange",
    "JoinResult",
    "Joiner",
    "Position",
    "Retention",
    "RetentionPolicy",
    "RoomCursor",
    "sent_data",
]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message stands in its room's history: ``offset`` (1, 2, 3...) within ``epoch``.

    The epoch changes when the room's history was lost (the relay restarted empty, its keys
    expired or were evicted); offsets of different epochs are not comparable.
    """

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class JoinResult:
    """What ``ws.join`` found.

    ``recovered``: every message after ``since`` was (or will be, before any newer one)
    delivered to this connection. ``position``: the room's top when the connection joined, or
    None for a room without history.
    """

    recovered: bool
    position: Position | None


@dataclass(frozen=True)
class History:
    """Keep the last ``size`` messages of each room for ``ttl`` seconds after its last message.

    ``rooms`` overrides the setting per room-name pattern (``fnmatch``: ``{"chat:*": History(...)}``,
    ``None`` to keep no history for those rooms); the first pattern that matches wins.
    """

    size: int = 1000
    ttl: float = 300.0
    rooms: Mapping[str, History | None] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"History size must be a positive int, got {self.size!r}")
        if not self.ttl > 0:
            raise ValueError(f"History ttl must be positive (seconds), got {self.ttl!r}")
        for pattern, override in (self.rooms or {}).items():
            if override is not None and override.rooms:
                raise ValueError(f"The History for pattern {pattern!r} must not have patterns of its own")

    def for_room(self, room: str) -> History | None:
        """The history setting of ``room``: an override whose pattern matches, else this one."""
        for pattern, override in (self.rooms or {}).items():
            if fnmatch.fnmatchcase(room, pattern):
                return override
        return self


@dataclass(frozen=True, slots=True)
class Retention:
    """What a relay keeps of one room's messages: the last ``size``, for ``ttl`` seconds."""

    room: str
    size: int
    ttl: float


class RetentionPolicy:
    """What the relay keeps of each room under ``history`` (None: nothing), resolved per room."""

    #: Room names are unbounded, the patterns are not: the cache is dropped when it gets big.
    CACHE_SIZE = 10_000

    def __init__(self, history: History | None) -> None:
        self.history = history
        self._cache: dict[str, Retention | None] = {}

    @classmethod
    def from_settings(cls, history: History | None, size: int, ttl: float) -> RetentionPolicy:
        """``history``, else ``History(size, ttl)`` when ``size`` (from the environment) is set."""
        if history is None and size:
            history = History(size, ttl)
        return cls(history)

    def __call__(self, room: str) -> Retention | None:
        history = self.history
        if history is None:
            return None
        if history.rooms is None:
            return Retention(room, history.size, history.ttl)
        if room in self._cache:
            return self._cache[room]
        setting = history.for_room(room)
        retention = None if setting is None else Retention(room, setting.size, setting.ttl)
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        self._cache[room] = retention
        return retention


@dataclass(frozen=True, slots=True)
class HistoryRange:
    """A read of one room's history: its epoch, its top offset, and stamped envelopes after a point.

    ``entries`` are the stored envelopes with an offset above the one asked for, oldest first,
    as many as asked for at most; they are contiguous and end at ``top`` when complete.
    """

    epoch: str
    top: int
    entries: list[bytes]


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages of ``room`` this worker could not deliver: offsets ``first`` to ``last``.

    ``epoch_changed``: the room's history was lost; then ``last`` is 0 (how many were lost is
    unknown) and ``first`` is the first offset of the old epoch that was not delivered.
    """

    room: str
    first: int
    last: int
    epoch_changed: bool


class CursorState(enum.Enum):
    """Where a worker stands with one room."""

    STARTING = "starting"  #: subscribed; waiting for the room's top (messages wait in order)
    LIVE = "live"  #: delivering as messages come
    REPAIRING = "repairing"  #: reading a missing range; newer messages wait in order
    STALLED = "stalled"  #: the relay went down mid-repair; the reconnect resumes it


class RoomCursor:
    """One served room, as a worker follows it: epoch, last offset delivered, waiting messages."""

    __slots__ = ("epoch", "joiners", "last", "state", "waiting")

    def __init__(self) -> None:
        self.epoch = ""
        self.last = 0
        self.state = CursorState.STARTING
        #: Messages that arrived while starting or repairing, in arrival order.
        self.waiting: list[Envelope] = []
        #: Resuming connections whose replay went past the cursor (it was repairing).
        self.joiners: list[Joiner] = []

    @property
    def position(self) -> Position | None:
        """The last position delivered, once the room's top is known."""
        return None if self.state is CursorState.STARTING or not self.epoch else Position(self.last, self.epoch)


class Joiner(Sink):
    """A connection's sink in a room it joined with ``since``, until its replay is behind it.

    While its history is read it holds what the room delivers; :meth:`replay` then writes the
    history read and what arrived meanwhile above it, and afterwards passes on only messages
    above ``threshold`` (the top it replayed to). Once the worker's cursor is past that point
    the hub puts the connection's own sink back in the room.
    """

    __slots__ = ("buffer", "connection_id", "reading", "sink", "threshold")

    def __init__(self, connection_id: str, sink: Sink) -> None:
        self.connection_id = connection_id
        self.sink = sink
        self.reading = True
        self.threshold = 0
        self.buffer: list[Delivery] = []

    def deliver(self, delivery: Delivery) -> None:
        if self.reading:
            self.buffer.append(delivery)
        elif delivery.offset == 0 or delivery.offset > self.threshold:
            self.sink.deliver(delivery)

    def replay(self, entries: list[Envelope], top: int) -> None:
        """Write ``entries`` (read from history, up to ``top``), then what waited above ``top``."""
        for envelope in entries:
            if envelope.exclude != self.connection_id:
                self.sink.deliver(delivery_of(envelope))
        self.reading = False
        self.threshold = top
        buffered, self.buffer = self.buffer, []
        for delivery in buffered:
            self.deliver(delivery)

    def close(self) -> None:
        self.buffer = []
        self.sink.close()

    @property
    def pending(self) -> int:
        return len(self.buffer) + self.sink.pending

    @property
    def label(self) -> str:
        return self.sink.label

    def drop_oldest(self) -> None:
        self.sink.drop_oldest()

    def close_for_overflow(self) -> None:
        self.sink.close_for_overflow()


def delivery_of(envelope: Envelope) -> Delivery:
    """The delivery of a (decoded) broadcast envelope."""
    return Delivery(
        envelope.payload,
        envelope.kind != KIND_TEXT,
        envelope.offset,
        room=envelope.room,
        epoch=envelope.epoch,
        is_json=envelope.is_json,
    )


def covers(since: Position, found: HistoryRange, entries: list[Envelope]) -> bool:
    """True when ``entries`` hold every message after ``since`` up to ``found.top``."""
    if since.epoch != found.epoch or since.offset > found.top:
        return False
    expected = list(range(since.offset + 1, found.top + 1))
    return [envelope.offset for envelope in entries] == expected


def sent_data(envelope: Envelope) -> Any:
    """A stored message as it was sent: bytes, str, or the value that was sent as JSON."""
    if envelope.kind != KIND_TEXT:
        return envelope.payload
    if envelope.is_json:
        return msgspec.json.decode(envelope.payload)
    return envelope.payload.decode("utf-8")
