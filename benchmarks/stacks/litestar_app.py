"""Litestar with its ChannelsPlugin on the Redis pub/sub backend.

Receivers use the plugin's own generated WebSocket handler (``create_ws_route_handlers``):
a subscriber per socket whose background task sends each event with ``send_text``. The
publisher socket calls ``channels.publish`` (queued, published by the plugin's worker task).
"""

from __future__ import annotations

import os

from litestar import Litestar, WebSocket, websocket
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.exceptions import WebSocketDisconnect
from redis.asyncio import Redis

ROOM = "bench"

channels = ChannelsPlugin(
    backend=RedisChannelsPubSubBackend(
        redis=Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ),
    channels=[ROOM],
    create_ws_route_handlers=True,  # receivers: ws://.../ws/bench
    ws_handler_base_path="/ws",
)


@websocket("/pub")
async def publisher(socket: WebSocket) -> None:
    await socket.accept()
    try:
        while True:
            channels.publish(await socket.receive_text(), ROOM)
    except WebSocketDisconnect:
        pass


app = Litestar(route_handlers=[publisher], plugins=[channels])
