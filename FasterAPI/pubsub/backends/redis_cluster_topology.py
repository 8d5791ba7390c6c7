"""Redis Cluster topology for the subscriber side: the slot map, and one session over it.

A :class:`Session` is one subscriber connection per primary (a :class:`Shard`), built from a
slot map that :class:`SlotMapper` asks the cluster for (``CLUSTER SLOTS``). The session ends
as a whole (:meth:`Session.end`) when any of its connections fails or a slot moves away, and
:func:`connect_through_failover` builds the next one, mapping the slots again while the
cluster elects a new primary. What is subscribed on a session, and what its messages mean,
is :class:`~.redis_cluster.RedisClusterBackend`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.client import PubSub
from redis.asyncio.connection import Connection
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import describe_error

__all__ = ["Address", "Session", "Shard", "SlotMapper", "SlotMoved", "connect_through_failover", "text"]

log = logging.getLogger("fasterapi.backends.redis_cluster")

#: (host, port) of a cluster node.
Address = tuple[str, int]

#: (first slot, last slot, primary) rows of a slot map.
SlotRanges = list[tuple[int, int, Address]]


class SlotMoved(RedisConnectionError):
    """A primary dropped our subscription to a channel whose slot it no longer owns."""


def text(value: Any) -> str:
    """A name from a Redis reply (bytes or not) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Shard:
    """The subscriber connection to one primary, and the SUNSUBSCRIBEs it still has to confirm."""

    def __init__(self, address: Address, pool: ConnectionPool) -> None:
        self.address = address
        self.pool = pool
        self.pubsub = PubSub(pool)
        self.unsubscribing: Counter[bytes] = Counter()


class Session:
    """One subscriber connection per primary, the slot map they were built from, and how it ended."""

    def __init__(self, ranges: SlotRanges) -> None:
        self.owners: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        for start, end, address in ranges:
            self.owners[start : end + 1] = [address] * (end - start + 1)
        self.shards: dict[Address, Shard] = {}
        #: Messages that came on a shard before its PONG, delivered once the session runs.
        self.early: list[tuple[Shard, dict[str, Any]]] = []
        self.ended: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    @property
    def primaries(self) -> set[Address]:
        """The primaries that own at least one slot in this session's map."""
        return {address for address in self.owners if address is not None}

    def open_shards(self, options: dict[str, Any]) -> None:
        """A subscriber (not yet connected) for each primary, with connection ``options``."""
        for host, port in self.primaries:
            self.shards[(host, port)] = Shard((host, port), ConnectionPool(host=host, port=port, **options))

    async def connect(self) -> None:
        """Connect every shard's subscriber connection at once."""
        await asyncio.gather(*(shard.pubsub.connect() for shard in self.shards.values()))  # type: ignore[no-untyped-call]

    def shard_for(self, raw_channel: bytes) -> Shard | None:
        """The shard serving ``raw_channel``'s slot (None: no primary owned it in the map)."""
        owner = self.owners[key_slot(raw_channel)]
        return None if owner is None else self.shards.get(owner)

    def channels_by_slot(self, shard: Shard, raw_channels: Iterable[bytes]) -> list[list[str]]:
        """Those of ``raw_channels`` that ``shard`` serves, grouped by slot."""
        by_slot: dict[int, list[str]] = {}
        for raw in raw_channels:
            if self.shard_for(raw) is shard:
                by_slot.setdefault(key_slot(raw), []).append(raw.decode("utf-8", "surrogateescape"))
        return list(by_slot.values())

    def end(self, error: BaseException) -> None:
        """End the session (the first reason wins); the backend's listener returns it."""
        if not self.ended.done():
            self.ended.set_result(error)

    async def close(self, timeout: float) -> None:
        """Close every shard's connection, each within ``timeout``. Never raises."""
        for shard in self.shards.values():
            try:
                async with asyncio.timeout(timeout):
                    await shard.pubsub.aclose()  # type: ignore[no-untyped-call]
                    await shard.pool.disconnect()
            except Exception as err:
                log.debug("error closing the subscriber of %s: %s", shard.address, describe_error(err))


class SlotMapper:
    """Asks the cluster who owns which slot: the configured nodes first, then every node seen since."""

    def __init__(self, nodes: Iterable[Address]) -> None:
        self.known: list[Address] = list(nodes)
        #: The primaries of the last session built (to tell when a failover changed them).
        self.last_owners: set[Address] = set()

    async def slot_map(self, options: dict[str, Any], timeout: float) -> SlotRanges:
        """``CLUSTER SLOTS`` from the first node that answers: (first slot, last slot, primary)."""
        failures: list[str] = []
        for host, port in list(self.known):
            connection = Connection(host=host, port=port, **options)
            try:
                async with asyncio.timeout(timeout):
                    await connection.connect()  # type: ignore[no-untyped-call]
                    await connection.send_command("CLUSTER", "SLOTS")
                    rows = await connection.read_response()
            except Exception as err:
                failures.append(f"{host}:{port}: {describe_error(err)}")
                continue
            finally:
                with contextlib.suppress(Exception):
                    await connection.disconnect()
            ranges = [(int(row[0]), int(row[1]), (text(row[2][0]) or host, int(row[2][1]))) for row in rows]
            if ranges:
                for _, _, address in ranges:
                    if address not in self.known:
                        self.known.append(address)
                return ranges
            failures.append(f"{host}:{port}: serves no slots")
        raise RedisConnectionError("no cluster node gave its slot map: " + "; ".join(failures))


async def connect_through_failover(
    build: Callable[[], Awaitable[Session]], abandon: Callable[[], Awaitable[None]], patience: float
) -> Session:
    """``build()`` a session; while a primary of the map does not answer, map again for ``patience`` seconds.

    A primary that refuses connections is most likely dead, and the cluster is about to
    promote its replica (node timeout, then an election): asking again for the slot map
    every few tenths of a second finds the new primary as soon as it is there, where the
    supervisor's growing backoff could wait seconds longer. After ``patience`` the failure
    goes to the caller (the supervisor) as usual; ``abandon()`` drops a half-built session.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            return await build()
        except (OSError, RedisConnectionError, RedisTimeoutError, ResponseError) as err:
            pause = random.uniform(0.1, 0.3)  # spreads the workers' CLUSTER SLOTS
            if loop.time() + pause >= deadline:
                raise
            log.debug("the cluster is not ready (%s); mapping its slots again", describe_error(err))
            await abandon()
            await asyncio.sleep(pause)
