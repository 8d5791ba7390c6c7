"""The docs page's broadcast pattern and rooms, rewritten with the hub: every worker, every host.

One process::

    uvicorn examples.rooms:app

Four workers sharing Redis (the same code; the backend comes from the environment)::

    FASTERAPI_BACKEND=redis://localhost:6379/0 \\
        gunicorn examples.rooms:app -w 4 -k uvicorn_worker.UvicornWorker

A message sent on any socket reaches every member of the room, whichever worker holds it.
docs/rooms.md includes the sections between the ``--8<--`` comments.
"""

import os

import msgspec

from FasterAPI import Faster, WebSocket, WebSocketDisconnect

app = Faster()  # backend: FASTERAPI_BACKEND, else memory:// (one process)


# The docs page's broadcast pattern: no list of sockets to keep, no dead sockets to prune.
# --8<-- [start:broadcast]
@app.websocket("/broadcast")
async def broadcast_endpoint(ws: WebSocket):
    await ws.accept()
    await ws.join("broadcast")
    try:
        while True:
            msg = await ws.receive_text()
            await app.broadcast("broadcast", msg)
    except WebSocketDisconnect:
        pass  # membership ends with the socket
# --8<-- [end:broadcast]


# --8<-- [start:rooms]
# Rooms with presence: who is here, across the cluster.
@app.websocket("/rooms/{room}")
async def room_endpoint(ws: WebSocket, room: str, name: str = "anonymous"):
    await ws.accept()
    await ws.join(room)
    size = await app.room_size(room)
    await app.broadcast(room, {"event": "joined", "name": name, "id": ws.id, "members": size})
    try:
        async for text in ws.iter_text():
            await app.broadcast(room, {"event": "message", "name": name, "text": text, "pid": os.getpid()})
    finally:
        await ws.leave(room)
        await app.broadcast(room, {"event": "left", "name": name, "members": await app.room_size(room)})


class Notice(msgspec.Struct):
    text: str


# Broadcast from plain HTTP, e.g. from another service.
@app.post("/rooms/{room}/messages", status_code=202)
async def post_message(room: str, notice: Notice):
    await app.broadcast(room, {"event": "notice", "text": notice.text})
    return {"room": room, "members": await app.room_size(room)}


@app.get("/rooms/{room}")
async def who_is_here(room: str):
    return {"room": room, "members": await app.room_members(room)}
# --8<-- [end:rooms]
