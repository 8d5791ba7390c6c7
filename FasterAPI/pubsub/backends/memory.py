"""An in-process backend: one worker, no network. For tests, development and single-worker apps."""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self
from urllib.parse import urlsplit

from ..envelope import stamp
from ..history import HistoryRange, Position, Retention
from .base import Backend, BackendListener, BackendUnavailable, PresenceStore, worker_part

__all__ = ["MemoryBackend", "MemoryPresence"]

log = logging.getLogger("fasterapi.backends.memory")


class MemoryPresence(PresenceStore):
    """Presence in dicts, worker heartbeats on the monotonic clock; for one process only.

    ``check`` raises :class:`BackendUnavailable` when the owning backend is not started.
    """

    def __init__(self, check: Callable[[], None]) -> None:
        self._check = check
        #: room -> {member: its metadata (b"": none)}
        self._rooms: dict[str, dict[str, bytes]] = {}
        #: worker -> when its heartbeat runs out, on time.monotonic()
        self._workers: dict[str, float] = {}

    def clear(self) -> None:
        """Forget everything (the backend stopped)."""
        self._rooms.clear()
        self._workers.clear()

    def _live(self, room: str) -> dict[str, bytes]:
        """The room's members whose worker is alive, with metadata; the others are swept away."""
        members = self._rooms.get(room)
        if not members:
            return {}
        now = time.monotonic()
        for member in [m for m in members if self._workers.get(worker_part(m), 0.0) <= now]:
            del members[member]
        if not members:
            del self._rooms[room]
        return dict(members)

    async def add(self, room: str, members: Iterable[str], metadata: Mapping[str, bytes] | None = None) -> None:
        self._check()
        entries = set(members)
        if entries:
            stored = self._rooms.setdefault(room, {})
            for member in entries:
                stored.setdefault(member, b"")
            for member, value in (metadata or {}).items():
                if member in entries:
                    stored[member] = value

    async def remove(self, room: str, members: Iterable[str]) -> None:
        self._check()
        entries = self._rooms.get(room)
        if entries is None:
            return
        for member in members:
            entries.pop(member, None)
        if not entries:
            del self._rooms[room]

    async def remove_everywhere(self, member: str, rooms: Iterable[str]) -> None:
        self._check()
        for room in rooms:
            entries = self._rooms.get(room)
            if entries is not None:
                entries.pop(member, None)
                if not entries:
                    del self._rooms[room]

    async def heartbeat(self, worker: str, ttl: float) -> bool:
        self._check()
        now = time.monotonic()
        lapsed = self._workers.get(worker, 0.0) <= now
        self._workers[worker] = now + ttl
        return lapsed

    async def retire(self, worker: str) -> None:
        self._check()
        self._workers.pop(worker, None)

    async def members(self, room: str) -> list[str]:
        self._check()
        return list(self._live(room))

    async def described(self, room: str) -> dict[str, bytes]:
        self._check()
        return self._live(room)

    async def count(self, room: str) -> int:
        self._check()
        return len(self._live(room))


class _RoomLog:
    """One room's history: its epoch, its top offset and its last ``size`` stamped envelopes."""

    __slots__ = ("entries", "epoch", "expires", "top")

    def __init__(self, size: int) -> None:
        self.epoch = secrets.token_hex(8)
        self.top = 0
        self.entries: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=size)
        self.expires = 0.0


class MemoryBackend(Backend):
    """Relays messages inside one process; :attr:`presence` is a :class:`MemoryPresence`.

    ``publish`` never calls the listener from inside itself: each delivery is queued with
    ``loop.call_soon``, so messages arrive in publish order, promptly, and a publisher's stack
    never re-enters the hub (the same shape as a network backend, where delivery is a later
    event-loop callback too).
    """

    keeps_history = True

    def __init__(self) -> None:
        self.available = False
        #: room -> its history; a log whose ttl passed is gone, as a Redis key would be.
        self._logs: dict[str, _RoomLog] = {}
        self._listener: BackendListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels: set[str] = set()
        self.presence: MemoryPresence = MemoryPresence(self._check)
        #: How many times ``listener.on_message`` raised (each is logged, none stops delivery).
        self.callback_errors = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``memory://`` (the URL carries nothing else; ``options`` must be empty)."""
        scheme = urlsplit(url).scheme
        if scheme != "memory":
            raise ValueError(f"MemoryBackend needs a memory:// URL, got {url!r}")
        if options:
            raise TypeError(f"MemoryBackend takes no options, got {sorted(options)}")
        return cls()

    @property
    def subscribed_channels(self) -> set[str]:
        """The logical channels this backend delivers (a copy)."""
        return set(self._channels)

    async def start(self, listener: BackendListener) -> None:
        """Start delivering to ``listener``; nothing to connect to, so it is available at once."""
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self.available = True

    async def stop(self) -> None:
        """Stop delivering. Messages still queued are dropped. Safe to call twice."""
        self.available = False
        self._listener = None
        self.presence.clear()
        self._logs.clear()

    def _check(self) -> None:
        if not self.available:
            raise BackendUnavailable("memory backend is not started")

    async def publish(self, channel: str, data: bytes, retention: Retention | None = None) -> Position | None:
        """Queue ``data`` for this worker's listener if ``channel`` is subscribed.

        With ``retention`` it is first kept in the room's history and stamped with its position.
        """
        self._check()
        position = None
        if retention is not None:
            log = self._log(retention)
            data = stamp(data, log.top + 1, log.epoch)  # raises before anything is kept
            log.top += 1
            log.entries.append((log.top, data))
            position = Position(log.top, log.epoch)
        if channel in self._channels:
            assert self._loop is not None
            # A network backend hands back bytes whatever went in; do the same.
            payload = data if type(data) is bytes else bytes(data)
            self._loop.call_soon(self._deliver, channel, payload)
        return position

    def _log(self, retention: Retention, *, published: bool = True) -> _RoomLog:
        """The room's history, made anew (a new epoch) when it has none or it expired.

        A publish keeps it ``ttl`` seconds more; a read only sets the ttl of a new one.
        """
        now = time.monotonic()
        log = self._logs.get(retention.room)
        if log is None or log.expires <= now:
            log = self._logs[retention.room] = _RoomLog(retention.size)
        elif not published:
            return log
        log.expires = now + retention.ttl
        return log

    async def read_history(self, retention: Retention, after: int, limit: int) -> HistoryRange:
        """The room's epoch, top and up to ``limit`` stored envelopes above ``after``."""
        self._check()
        log = self._log(retention, published=False)
        entries = [data for offset, data in log.entries if offset > after][: max(limit, 0)]
        return HistoryRange(log.epoch, log.top, entries)

    async def history_tops(self, rooms: Sequence[str]) -> dict[str, Position | None]:
        """Each room's top position, or None when it has no (unexpired) history."""
        self._check()
        now = time.monotonic()
        tops: dict[str, Position | None] = {}
        for room in rooms:
            log = self._logs.get(room)
            tops[room] = Position(log.top, log.epoch) if log is not None and log.expires > now else None
        return tops

    def _deliver(self, channel: str, data: bytes) -> None:
        # Checked at delivery time, not publish time: an unsubscribe (or stop) between the two
        # must win, as it does for a network backend that filters on arrival.
        listener = self._listener
        if listener is None or channel not in self._channels:
            return
        try:
            listener.on_message(channel, data)
        except Exception:
            self.callback_errors += 1
            log.exception("listener.on_message raised for channel %r", channel)

    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel`` (idempotent; allowed before ``start``)."""
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; deliveries already queued for it are dropped."""
        self._channels.discard(channel)
