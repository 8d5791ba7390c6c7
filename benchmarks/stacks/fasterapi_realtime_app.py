"""FasterAPI's realtime endpoint: receivers send ``join`` for the room on ``/ws``; the publisher's
messages go out with ``app.broadcast`` and reach them as ``message`` frames (one wrapped frame
per broadcast per worker, shared by every member).

The room is declared with ``presence=False``, as a big broadcast room would be: the benchmark
measures messages, not presence diffs.
"""

from __future__ import annotations

import os

import msgspec

from FasterAPI import Faster, WebSocket

ROOM = "bench"

app = Faster(backend=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
rt = app.realtime("/ws")


@rt.room(ROOM, presence=False)
async def join_bench() -> None:
    return None


@app.websocket("/pub")
async def publisher(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        # The publisher's JSON goes in as is (msgspec.Raw): members get it as the message's data.
        await app.broadcast(ROOM, msgspec.Raw(text.encode()))
