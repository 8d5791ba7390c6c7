"""The app the fault tests run (under gunicorn or uvicorn): rooms, broadcast, health, stats.

The backend comes from ``FASTERAPI_BACKEND`` (``memory://`` by default), the hub settings from
the other ``FASTERAPI_*`` variables. Logging is left as the server sets it up, so the tests
see what an operator would see.

* ``/ws/{room}?offset=&epoch=``: joins ``room`` (resuming after that position, when given),
  sends ``{"type": "hello", "pid", "id", "room", "recovered", "position"}``; then the
  text command ``status`` answers with this worker's status, ``say:<text>`` broadcasts,
  ``concurrent:<n>`` sends n broadcasts at once.
* ``/ws-json/{room}``: the same hello, then echoes every ``receive_json()`` message.
* ``/guarded``: a WebSocket that only ``http://good.example`` pages may open.
* ``POST /broadcast/{room}`` (the body as text), ``POST /burst/{room}?count=&size=``.
* ``POST /occupy/{count}``: ``count`` new rooms on the answering worker, one socket-less member each.
* ``/healthz`` (503 unless the relay answers a self-ping), ``/worker`` and ``/stats``.
* On a backend reconnect every worker counts it and sends each local connection
  ``{"type": "resync", "pid", "n"}`` through the relay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

from FasterAPI import Faster, JSONResponse, Request, WebSocket, WebSocketDisconnect
from FasterAPI.pubsub import BackendUnavailable, Gap, InvalidRoomName, PayloadTooLarge, Position
from FasterAPI.pubsub.delivery import Delivery, Sink, SinkSettings

app = Faster()

#: How many times this worker's reconnect hook started, and how many resync rounds it finished.
hook = {"runs": 0, "done": 0}
#: The room gaps this worker reported (rooms with history, FASTERAPI_HISTORY_SIZE).
gaps: list[dict[str, Any]] = []


@app.on_room_gap
def record_gap(room: str, gap: Gap) -> None:
    gaps.append({"room": room, "first": gap.first, "last": gap.last, "epoch_changed": gap.epoch_changed})


def rss_kb() -> int:
    """This process's resident set size in KiB (from /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def worker_status() -> dict[str, Any]:
    """Everything the tests look at in one worker."""
    hub = app.hub
    sinks = [connection.sink for connection in hub.connections.values()]
    queues = [sink.pending for sink in sinks]
    return {
        "type": "status",
        "pid": os.getpid(),
        "worker_id": hub.worker_id,
        "relay_ok": hub.relay_ok,
        "backend_available": hub.backend.available,
        "rooms": sorted(hub.rooms),
        "subscribed": sorted(getattr(hub.backend, "subscribed_channels", ())),
        "connections": len(hub.connections),
        "max_queue": max(queues, default=0),
        "sinks": sorted({type(sink).__name__ for sink in sinks}),
        "hook_runs": hook["runs"],
        "hook_done": hook["done"],
        "gaps": gaps,
        "stats": dataclasses.asdict(hub.stats),
        "rss_kb": rss_kb(),
        "fds": len(os.listdir("/proc/self/fd")),
    }


@app.exception_handler(BackendUnavailable)
async def backend_unavailable(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"backend unavailable: {error}", "pid": os.getpid()}, status_code=503)


@app.exception_handler(InvalidRoomName)
async def invalid_room(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error), "pid": os.getpid()}, status_code=422)


@app.exception_handler(PayloadTooLarge)
async def too_large(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(error), "pid": os.getpid()}, status_code=413)


@app.on_backend_reconnect
async def resync() -> None:
    """Tell every local client to resync: messages sent during the outage were lost."""
    hook["runs"] += 1
    n = hook["runs"]
    for connection_id in list(app.hub.connections):
        await app.send_to(connection_id, {"type": "resync", "pid": os.getpid(), "n": n})
    hook["done"] = n


async def hello(ws: WebSocket, room: str, since: Position | None = None) -> None:
    await ws.accept()
    joined = await ws.join(room, since=since)
    await ws.send_json(
        {
            "type": "hello",
            "pid": os.getpid(),
            "id": ws.id,
            "room": room,
            "recovered": joined.recovered,
            "position": joined.position,
        }
    )


@app.websocket("/ws/{room}")
async def member(ws: WebSocket, room: str, offset: int | None = None, epoch: str | None = None) -> None:
    await hello(ws, room, None if offset is None or epoch is None else Position(offset, epoch))
    async for text in ws.iter_text():
        if text == "status":
            await ws.send_json(worker_status())
        elif text.startswith("say:"):
            await app.broadcast(room, text[4:])
        elif text.startswith("concurrent:"):
            # n broadcasts at once: the publish pool then holds n connections (tests use it
            # to bring every worker's pool to the same size before counting connections).
            n = int(text[11:])
            await asyncio.gather(*(app.broadcast(room, f"concurrent:{i}") for i in range(n)))
            await ws.send_json({"type": "concurrent-done", "n": n})


@app.websocket("/ws-json/{room}")
async def json_member(ws: WebSocket, room: str) -> None:
    await hello(ws, room)
    while True:
        try:
            data = await ws.receive_json()
        except WebSocketDisconnect:
            return
        await ws.send_json({"type": "echo", "data": data})


@app.websocket("/guarded", allowed_origins=["http://good.example"])
async def guarded(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("welcome")
    await ws.close()


@app.post("/broadcast/{room}")
async def broadcast(room: str, request: Request) -> dict[str, int]:
    await app.broadcast(room, (await request.body()).decode())
    return {"pid": os.getpid()}


@app.post("/burst/{room}")
async def burst(room: str, count: int = 100, size: int = 1000) -> dict[str, Any]:
    """Broadcast ``count`` numbered messages of ``size`` bytes, then ``"end"``.

    Yields to the event loop between messages, as a real producer would between events.
    """
    padding = "x" * max(0, size - 9)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for seq in range(count):
        await app.broadcast(room, f"{seq:08d}:{padding}")
        await asyncio.sleep(0)
    await app.broadcast(room, "end")
    return {"pid": os.getpid(), "seconds": loop.time() - started}


class _Idle(Sink):
    """A member without a socket: it takes broadcasts and drops them (for presence load tests)."""

    def __init__(self, connection_id: str) -> None:
        self.id = connection_id

    def open_sink(self, settings: SinkSettings) -> Sink:
        return self

    def deliver(self, delivery: Delivery) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def pending(self) -> int:
        return 0

    @property
    def label(self) -> str:
        return f"idle member {self.id}"

    def drop_oldest(self) -> None:
        pass

    def close_for_overflow(self) -> None:
        pass


@app.post("/occupy/{count}")
async def occupy(count: int) -> dict[str, int]:
    """Put one socket-less member in each of ``count`` new rooms of this worker."""
    hub = app.hub
    for _ in range(count):
        member = _Idle(hub.new_connection_id())
        await hub.join(member, f"idle-{member.id}")
    return {"pid": os.getpid(), "rooms": len(hub.rooms)}


@app.get("/healthz")
async def healthz() -> JSONResponse:
    ok = await app.hub.check_relay()
    return JSONResponse({"ok": ok, "pid": os.getpid()}, status_code=200 if ok else 503)


@app.get("/worker")
async def worker() -> dict[str, Any]:
    return worker_status()


@app.get("/stats")
async def stats() -> dict[str, Any]:
    return worker_status()


@app.get("/presence/{room}")
async def presence(room: str) -> dict[str, Any]:
    return {"size": await app.room_size(room), "pid": os.getpid()}
