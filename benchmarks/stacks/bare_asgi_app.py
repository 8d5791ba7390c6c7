"""A hand-written ASGI app: the ceiling for anything that sends through the ASGI path.

One Redis subscription per worker (``redis.asyncio`` pub/sub, one listener task started with
the lifespan) and, for each message, one shared ``websocket.send`` event awaited on every
local socket in turn. The publisher socket publishes each message it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from redis.asyncio import Redis

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHANNEL = "bench"

_sockets: dict[int, Send] = {}
_state: dict[str, Any] = {}


async def _listen(redis: Redis) -> None:
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(CHANNEL)
    _state["subscribed"].set()
    async for message in pubsub.listen():
        if message["type"] != "message":
            continue
        event = {"type": "websocket.send", "text": message["data"].decode()}
        for key, send in tuple(_sockets.items()):
            try:
                await send(event)
            except Exception:  # the client went away; its handler sees the disconnect
                _sockets.pop(key, None)


async def _lifespan(receive: Receive, send: Send) -> None:
    await receive()  # lifespan.startup
    redis = Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    _state["redis"] = redis
    _state["subscribed"] = asyncio.Event()
    listener = asyncio.create_task(_listen(redis))
    await _state["subscribed"].wait()
    await send({"type": "lifespan.startup.complete"})
    await receive()  # lifespan.shutdown
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await listener
    await redis.aclose()
    await send({"type": "lifespan.shutdown.complete"})


async def app(scope: Message, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(receive, send)
        return
    if kind != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    if scope["path"] == "/pub":
        redis: Redis = _state["redis"]
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            await redis.publish(CHANNEL, message.get("text") or message.get("bytes") or b"")
    key = id(send)
    _sockets[key] = send
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        _sockets.pop(key, None)
