"""The read loop of a Redis subscriber connection, shared by the Redis and Redis Cluster backends.

It drains what has arrived in bursts (one wake-up per burst, yielding to the event loop every
:data:`MAX_BATCH` messages so a flood cannot starve the worker), sends its own PINGs when the
connection has been silent, and raises when the connection fails: the backend's reconnect
supervisor then builds a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._reconnect import check_cancelled

__all__ = ["MAX_BATCH", "check_connected", "read_subscriber", "send_on"]

#: After this many messages drained in one go the reader yields to the event loop once, so a
#: flood on the subscriber connection cannot starve the rest of the worker.
MAX_BATCH = 1000

Source = TypeVar("Source")


def check_connected(pubsub: PubSub) -> None:
    """Raise unless ``pubsub``'s connection is open."""
    # redis-py's PubSub silently reconnects a closed connection on the next read (without
    # our subscriptions, which only the reconnect restores); treat a closed one as failed.
    connection = pubsub.connection
    if connection is None or not connection.is_connected:
        raise RedisConnectionError("the subscriber connection was closed")


async def send_on(pubsub: PubSub, *args: str) -> None:
    """Write a command on a subscriber connection; its reply comes through the reader.

    (PubSub's own methods would reconnect a closed connection on their own.)"""
    check_connected(pubsub)
    assert pubsub.connection is not None
    await pubsub.connection.send_command(*args, check_health=False)


async def read_subscriber(
    pubsub: PubSub,
    source: Source,
    dispatch: Callable[[Source, dict[str, Any]], None],
    *,
    interval: float,
    peer: str,
) -> NoReturn:
    """``dispatch(source, message)`` for every message on ``pubsub``, until something raises.

    PINGs ``peer`` when nothing came for ``interval`` seconds, and raises RedisTimeoutError
    when nothing answers within ``interval`` of that PING (a half-open connection).
    """
    loop = asyncio.get_running_loop()
    last_seen = loop.time()
    ping_sent: float | None = None
    while True:
        check_cancelled()
        now = loop.time()
        if ping_sent is None and now - last_seen >= interval:
            await send_on(pubsub, "PING")
            ping_sent = now
        if ping_sent is not None:
            if now - ping_sent >= interval:
                raise RedisTimeoutError(
                    f"nothing received from {peer} within {interval}s of a PING (half-open connection?)"
                )
            deadline = ping_sent + interval
        else:
            deadline = last_seen + interval
        check_connected(pubsub)
        message = await pubsub.get_message(timeout=max(deadline - now, 0.0))
        if message is None:
            continue
        last_seen = loop.time()
        ping_sent = None
        dispatch(source, message)
        # Drain what has already arrived before waiting again: one wake-up per burst.
        drained = 0
        while True:
            check_cancelled()
            check_connected(pubsub)
            message = await pubsub.get_message(timeout=0)
            if message is None:
                break
            dispatch(source, message)
            drained += 1
            if drained >= MAX_BATCH:
                drained = 0
                await asyncio.sleep(0)
