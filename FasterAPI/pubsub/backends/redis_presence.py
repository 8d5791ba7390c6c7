"""Presence in Redis: a set of member ids per room, and one heartbeat per worker.

Keys: ``{prefix}presence:{<room>}`` (a set of connection ids; the room is its hash tag, as for
the room's history), ``{prefix}presence-meta:{<room>}`` (a hash: connection id -> its metadata,
only for members that have some, in the same hash slot) and ``{prefix}presence-workers`` (a
sorted set: worker id -> when its heartbeat runs out, in unix milliseconds by the *client's*
clock, so the workers' clocks should agree to well under the presence ttl, e.g. NTP). Joins and leaves write the room's
set; the only periodic write is each worker's heartbeat, whatever the number of rooms. A read
keeps the members whose worker is alive and removes the others from the set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .base import PresenceStore, worker_part

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["CommandGuard", "RedisPresence", "RoomTag", "braced"]

#: ``guard(operation, name)``: a context that yields the command client, or raises
#: BackendUnavailable when Redis is down, and turns a connection error or timeout inside the
#: block into BackendUnavailable ("cannot {operation} {name!r}").
CommandGuard = Callable[[str, str], AbstractContextManager["Redis | RedisCluster"]]

#: ``room_tag(room)``: the part of a room's key names that is its hash tag (``{lobby}``), so
#: that every key of one room lands in one slot of a Redis Cluster.
RoomTag = Callable[[str], str]


def braced(room: str) -> str:
    """The room name in braces, the tag of the room's keys on one Redis server."""
    return f"{{{room}}}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPresence(PresenceStore):
    """Presence in Redis sets, with worker heartbeats in one sorted set (see the module docstring).

    It borrows its connection through ``guard`` (the backend's command pool and its idea of
    whether Redis is up), so presence fails fast exactly when publishing does.
    """

    def __init__(self, prefix: str, guard: CommandGuard, *, room_tag: RoomTag = braced) -> None:
        self.prefix = prefix
        self._guard = guard
        self._room_tag = room_tag
        self._workers_key = f"{prefix}presence-workers"

    def _key(self, room: str) -> str:
        return f"{self.prefix}presence:{self._room_tag(room)}"

    def _meta_key(self, room: str) -> str:
        return f"{self.prefix}presence-meta:{self._room_tag(room)}"

    async def add(self, room: str, members: Iterable[str], metadata: Mapping[str, bytes] | None = None) -> None:
        entries = list(members)
        if not entries:
            return
        described = {member: value for member, value in (metadata or {}).items() if member in entries}
        with self._guard("add presence in", room) as client:
            if not described:
                await client.sadd(self._key(room), *entries)
                return
            pipe = client.pipeline(transaction=False)
            pipe.hset(self._meta_key(room), mapping=described)  # type: ignore[arg-type]
            pipe.sadd(self._key(room), *entries)
            await pipe.execute()

    async def remove(self, room: str, members: Iterable[str]) -> None:
        entries = list(members)
        if not entries:
            return
        with self._guard("remove presence in", room) as client:
            pipe = client.pipeline(transaction=False)
            pipe.srem(self._key(room), *entries)
            pipe.hdel(self._meta_key(room), *entries)
            await pipe.execute()

    async def remove_everywhere(self, member: str, rooms: Iterable[str]) -> None:
        """One pipelined round trip, however many rooms."""
        rooms = list(rooms)
        if not rooms:
            return
        with self._guard("remove presence of", member) as client:
            pipe = client.pipeline(transaction=False)
            for room in rooms:
                pipe.srem(self._key(room), member)
                pipe.hdel(self._meta_key(room), member)
            await pipe.execute()

    async def heartbeat(self, worker: str, ttl: float) -> bool:
        now_ms = int(time.time() * 1000)
        with self._guard("refresh presence of worker", worker) as client:
            pipe = client.pipeline(transaction=False)
            pipe.zscore(self._workers_key, worker)
            pipe.zadd(self._workers_key, {worker: now_ms + max(1, math.ceil(ttl * 1000))})
            pipe.zremrangebyscore(self._workers_key, "-inf", now_ms)  # workers gone for good
            previous, _, _ = await pipe.execute()
        return previous is None or float(previous) <= now_ms

    async def retire(self, worker: str) -> None:
        with self._guard("retire the presence of worker", worker) as client:
            await client.zrem(self._workers_key, worker)

    async def members(self, room: str) -> list[str]:
        return list(await self._read(room, with_metadata=False))

    async def described(self, room: str) -> dict[str, bytes]:
        return await self._read(room, with_metadata=True)

    async def _read(self, room: str, *, with_metadata: bool) -> dict[str, bytes]:
        now_ms = int(time.time() * 1000)
        key = self._key(room)
        with self._guard("read presence in", room) as client:
            pipe = client.pipeline(transaction=False)
            pipe.smembers(key)
            pipe.zrangebyscore(self._workers_key, f"({now_ms}", "+inf")
            if with_metadata:
                pipe.hgetall(self._meta_key(room))
            raw_members, raw_workers, *raw_metadata = await pipe.execute()
            alive = {_text(worker) for worker in raw_workers}
            members = [_text(member) for member in raw_members]
            live = [member for member in members if worker_part(member) in alive]
            if len(live) < len(members):
                # Members of workers that died without cleanup: stop carrying them.
                dead = [member for member in members if worker_part(member) not in alive]
                sweep = client.pipeline(transaction=False)
                sweep.srem(key, *dead)
                sweep.hdel(self._meta_key(room), *dead)
                await sweep.execute()
            metadata = {_text(k): bytes(v) for k, v in raw_metadata[0].items()} if raw_metadata else {}
            return {member: metadata.get(member, b"") for member in live}

    async def count(self, room: str) -> int:
        return len(await self.members(room))
