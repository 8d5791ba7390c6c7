"""FasterAPI: receivers ``ws.join`` the room; the publisher's messages go out with ``app.broadcast``.

Served twice by the runner: with ``FasterAPI.server.worker.FasterWorker`` (frame-once writes)
and with ``uvicorn_worker.UvicornWorker`` (the plain ASGI path, one send per socket).
"""

from __future__ import annotations

import os

from FasterAPI import Faster, WebSocket

ROOM = "bench"

app = Faster(backend=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@app.websocket("/ws")
async def receiver(ws: WebSocket) -> None:
    await ws.accept()
    await ws.join(ROOM)
    async for _ in ws.iter_text():
        pass


@app.websocket("/pub")
async def publisher(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await app.broadcast(ROOM, text)
