"""Presence in Redis: one sorted set per room, each member scored with its own expiry."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from .base import PresenceStore

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["CommandGuard", "RedisPresence"]

#: ``guard(operation, name)``: a context that yields the command client, or raises
#: BackendUnavailable when Redis is down, and turns a connection error or timeout inside the
#: block into BackendUnavailable ("cannot {operation} {name!r}").
CommandGuard = Callable[[str, str], AbstractContextManager["Redis"]]


class RedisPresence(PresenceStore):
    """Presence entries in Redis sorted sets.

    One sorted set per room, ``f"{prefix}presence:{room}"``, member = id, score = expiry as unix
    time in milliseconds by the *client's* clock (so the workers' clocks should agree, e.g.
    NTP, to well under the presence TTL). The key's own TTL follows the longest-lived entry, so
    abandoned rooms vanish. Needs Redis >= 7.0 (``PEXPIRE NX|GT``).

    It borrows its connection through ``guard`` (the backend's command pool and its idea of
    whether Redis is up), so presence fails fast exactly when publishing does.
    """

    def __init__(self, prefix: str, guard: CommandGuard) -> None:
        self.prefix = prefix
        self._guard = guard

    def _key(self, room: str) -> str:
        return f"{self.prefix}presence:{room}"

    async def add(self, room: str, members: Iterable[str], ttl: float) -> None:
        """Add or refresh ``members`` of ``room`` until ``ttl`` seconds from now (client clock)."""
        with self._guard("add presence in", room) as client:
            entries = list(members)
            if not entries:
                return
            ttl_ms = max(1, math.ceil(ttl * 1000))
            now_ms = int(time.time() * 1000)
            key = self._key(room)
            pipe = client.pipeline(transaction=True)
            pipe.zremrangebyscore(key, "-inf", now_ms)  # keep the set from growing with the dead
            pipe.zadd(key, dict.fromkeys(entries, now_ms + ttl_ms))
            # The key lives as long as its longest-lived entry: NX sets a TTL on a new key, GT
            # only ever extends it.
            pipe.pexpire(key, ttl_ms, nx=True)
            pipe.pexpire(key, ttl_ms, gt=True)
            await pipe.execute()

    async def remove(self, room: str, members: Iterable[str]) -> None:
        """Remove ``members`` of ``room`` at once."""
        with self._guard("remove presence in", room) as client:
            entries = list(members)
            if entries:
                await client.zrem(self._key(room), *entries)

    async def members(self, room: str) -> list[str]:
        """The unexpired members of ``room`` (a read: expired entries are skipped, not deleted)."""
        with self._guard("read presence in", room) as client:
            now_ms = int(time.time() * 1000)
            raw = await client.zrangebyscore(self._key(room), f"({now_ms}", "+inf")
            return [member.decode() if isinstance(member, bytes) else str(member) for member in raw]

    async def count(self, room: str) -> int:
        """How many unexpired members ``room`` has."""
        with self._guard("count presence in", room) as client:
            now_ms = int(time.time() * 1000)
            count: int = await client.zcount(self._key(room), f"({now_ms}", "+inf")
            return count
