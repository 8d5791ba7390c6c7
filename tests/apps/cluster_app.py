"""The app the cluster tests run under gunicorn: rooms, broadcast, presence, worker identity."""

import os

from FasterAPI import Faster, Request, WebSocket, WebSocketDisconnect

app = Faster()  # the backend comes from FASTERAPI_BACKEND


@app.websocket("/ws/{room}")
async def member(ws: WebSocket, room: str) -> None:
    await ws.accept()
    await ws.join(room)
    await ws.send_json({"pid": os.getpid(), "id": ws.id})
    try:
        async for text in ws.iter_text():
            if text.startswith("say:"):
                await app.broadcast(room, text[4:])
            elif text.startswith("others:"):
                await app.broadcast(room, text[7:], exclude=ws)
            elif text.startswith("to:"):
                target, _, body = text[3:].partition(" ")
                await app.send_to(target, body)
    except WebSocketDisconnect:
        pass


@app.post("/broadcast/{room}")
async def publish(room: str, request: Request) -> dict[str, int]:
    await app.broadcast(room, (await request.body()).decode())
    return {"pid": os.getpid()}


@app.get("/presence/{room}")
async def presence(room: str) -> dict[str, object]:
    return {"size": await app.room_size(room), "members": await app.room_members(room)}


@app.get("/worker")
async def worker() -> dict[str, object]:
    return {
        "pid": os.getpid(),
        "worker_id": app.hub.worker_id,
        "relay_ok": await app.hub.check_relay(),
        # How broadcasts reach this worker's sockets: "Outbox" (ASGI) or our protocol (frame-once).
        "sinks": sorted({type(connection.sink).__name__ for connection in app.hub.connections.values()}),
    }
