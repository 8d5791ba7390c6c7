"""FastAPI + encode/broadcaster on Redis: the usual pattern, one subscriber task per socket.

As in broadcaster's own chat example: each socket subscribes to the channel and a task
forwards every event with ``websocket.send_text``, while the handler waits for the client
to go; the publisher socket calls ``broadcast.publish`` for each message it receives.

Two workarounds, both at startup, both with broadcaster's public API (0.3.1, redis-py 8.1):

* The backend's listener task wakes during the process's first ``SUBSCRIBE``, before redis-py
  records the channel, finds the connection unsubscribed and sleeps until some *new* channel
  is subscribed: a worker whose only channel is the room never receives anything. Each worker
  first subscribes a private channel (nothing is ever published there).
* ``Broadcast.subscribe`` awaits the backend's ``SUBSCRIBE`` before it records the channel's
  subscriber set, so sockets that subscribe concurrently in that moment overwrite each other's
  set and some never receive (and raise ``KeyError`` when they leave). Each worker therefore
  subscribes the room itself at startup and keeps that subscription, drained by one task:
  one extra queue hop per message per worker, next to one send per socket.

Both reproduce outside gunicorn; see docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from broadcaster import Broadcast
from broadcaster._base import Subscriber
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

ROOM = "bench"
KEEPALIVE = "bench-keepalive"  # see the module docstring

broadcast = Broadcast(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await broadcast.connect()
    try:
        # See the module docstring: start the listener, then hold the room's subscriber set.
        async with broadcast.subscribe(channel=KEEPALIVE), broadcast.subscribe(channel=ROOM) as held:
            drain = asyncio.create_task(_discard(held))
            try:
                yield
            finally:
                drain.cancel()
    finally:
        await broadcast.disconnect()


async def _discard(subscriber: Subscriber) -> None:
    async for _ in subscriber:  # type: ignore[union-attr]
        pass


app = FastAPI(lifespan=lifespan)


async def _forward(subscriber: Subscriber, websocket: WebSocket) -> None:
    async for event in subscriber:  # type: ignore[union-attr]
        await websocket.send_text(event.message)


@app.websocket("/ws")
async def receiver(websocket: WebSocket) -> None:
    await websocket.accept()
    async with broadcast.subscribe(channel=ROOM) as subscriber:
        sender = asyncio.create_task(_forward(subscriber, websocket))
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender


@app.websocket("/pub")
async def publisher(websocket: WebSocket) -> None:
    await websocket.accept()
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await broadcast.publish(channel=ROOM, message=await websocket.receive_text())
