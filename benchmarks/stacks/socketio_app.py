"""python-socketio ``AsyncServer`` with ``AsyncRedisManager``, WebSocket transport only.

Receivers enter the room on connect; the publisher connects with ``auth={"role": "pub"}``
(so it stays out of the room) and emits ``pub`` events, which the server re-emits to the
room as ``msg`` with ``sio.emit(..., room=...)``.
"""

from __future__ import annotations

import os
from typing import Any

import socketio

ROOM = "bench"

sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")),
    transports=["websocket"],
)


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    if not (isinstance(auth, dict) and auth.get("role") == "pub"):
        await sio.enter_room(sid, ROOM)


@sio.on("pub")
async def publish(sid: str, data: Any) -> None:
    await sio.emit("msg", data, room=ROOM)


app = socketio.ASGIApp(sio)
