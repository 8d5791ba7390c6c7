"""The demo hub: chat rooms with live presence, across workers and hosts, that survive a bad network.

Open ``/`` in two browsers, pick the same room and two names, and talk. Each message shows
which server process delivered it to *you* (pid and hostname): with several workers behind
nginx the two browsers are usually served by different ones, and the messages still arrive.
The page uses the realtime endpoint ``/rt`` and its browser client (``/rt/client.js``): cut
the network or restart a worker and it reconnects, resumes from the last message it saw
(room history), and counts the reconnects and resumed joins.

One process, memory backend::

    fasterapi run examples.demo_hub:app

Two workers sharing Redis (or the whole stack: ``docker compose up``, see docs/deploy.md)::

    fasterapi run examples.demo_hub:app --workers 2 --backend redis://localhost:6379/0

Realtime endpoint ``/rt?name=...`` (docs/realtime-protocol.md): any room whose name has no
``:`` may be joined (its presence metadata: the name, and the pid and host of the worker
serving it) and published to (``{"text": ...}``, broadcast as a ``message`` event).
A plain WebSocket for scripts, ``/ws/{room}?name=...``, reaches the same rooms: the server
sends a ``hello`` with its own pid and host first, then ``presence`` events (with the
cluster-wide member count) and ``message`` events; the client sends plain text frames, each
one a message to the room. HTTP: ``POST /rooms/{room}/messages`` (``{"text": ..., "name":
...}``), ``GET /rooms/{room}`` (member count), ``GET /healthz``, ``GET /metrics``.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec

from FasterAPI import Faster, HTMLResponse, HTTPException, JSONResponse, WebSocket, WebSocketDisconnect
from FasterAPI.metrics import install_metrics
from FasterAPI.pubsub import BackendUnavailable, History, InvalidRoomName, PayloadTooLarge
from FasterAPI.pubsub.envelope import validate_room
from FasterAPI.realtime import PublishRefused

MAX_TEXT = 2000
MAX_NAME = 40
INDEX_HTML = (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
HOSTNAME = socket.gethostname()

# Backend: FASTERAPI_BACKEND, else memory:// (one process). History lets a page that
# reconnects get what it missed meanwhile.
app = Faster(history=History(size=500, ttl=600))
install_metrics(app)
rt = app.realtime("/rt", ping_interval=10.0)


def identity() -> dict[str, Any]:
    """This worker: computed per call, as gunicorn forks workers after the module may load."""
    return {"pid": os.getpid(), "host": HOSTNAME}


async def member_count(room: str) -> int | None:
    """The cluster-wide member count, or None while the backend is down."""
    try:
        return await app.room_size(room)
    except BackendUnavailable:
        return None


async def tell_room(room: str, event: dict[str, Any]) -> bool:
    """Broadcast ``event`` to ``room``; False (never an exception) when the backend is down."""
    try:
        await app.broadcast(room, event)
    except BackendUnavailable:
        return False
    return True


def clean_name(name: str) -> str:
    return " ".join(name.split())[:MAX_NAME] or "anonymous"


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return INDEX_HTML


class ChatMessage(msgspec.Struct, forbid_unknown_fields=True):
    """What a page publishes to a room."""

    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]


@rt.room("{room}")
async def join_room(room: str, name: str = "anonymous") -> dict[str, Any]:
    """Anyone may join. The metadata tells the others who, and tells the page its own worker."""
    return {"name": clean_name(name), **identity()}


@rt.on_publish("{room}")
async def chat_message(room: str, message: ChatMessage, name: str = "anonymous") -> dict[str, Any]:
    """A member's message, as the room receives it (the name is the connection's, not the client's say)."""
    text = message.text.strip()
    if not text:
        raise PublishRefused("An empty message")
    return {"type": "message", "name": clean_name(name), "text": text, "sender": identity(), "ts": time.time()}


@app.websocket("/ws/{room}")
async def room_socket(ws: WebSocket, room: str, name: str = "anonymous") -> None:
    try:
        validate_room(room)
    except InvalidRoomName as error:
        await ws.close(1008, str(error)[:120])
        return
    name = clean_name(name)
    await ws.accept()
    # Who serves this socket: the page tags every message it receives with it, since this
    # worker is the one that delivers them all to this client. Sent before joining, so that it
    # comes first: room events go out through the socket's queue, concurrently with this.
    await ws.send_json({"type": "hello", "id": ws.id, "room": room, "name": name, **identity()})
    await ws.join(room)
    joined = {"type": "presence", "event": "joined", "name": name, "members": await member_count(room)}
    if not await tell_room(room, joined):
        await ws.send_json({"type": "error", "detail": "The message relay is down; retrying in the background."})
    try:
        async for text in ws.iter_text():
            text = text.strip()[:MAX_TEXT]
            if not text:
                continue
            event = {"type": "message", "name": name, "text": text, "sender": identity(), "ts": time.time()}
            if not await tell_room(room, event):
                await ws.send_json({"type": "error", "detail": "Not sent: the message relay is down. Try again."})
    except WebSocketDisconnect:
        pass
    finally:
        await ws.leave(room)
        left = {"type": "presence", "event": "left", "name": name, "members": await member_count(room)}
        await tell_room(room, left)


class Message(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /rooms/{room}/messages``."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
    name: Annotated[str, msgspec.Meta(max_length=MAX_NAME)] = "http"


@app.post("/rooms/{room}/messages", status_code=202)
async def post_message(room: str, message: Message) -> dict[str, Any]:
    event = {"type": "message", "name": clean_name(message.name), "text": message.text, "sender": identity()}
    try:
        await app.broadcast(room, event)
    except InvalidRoomName as error:
        raise HTTPException(422, str(error)) from None
    except PayloadTooLarge as error:
        raise HTTPException(413, str(error)) from None
    except BackendUnavailable:
        detail = "The message relay is down; try again shortly."
        raise HTTPException(503, detail, headers={"Retry-After": "2"}) from None
    return {"room": room, "accepted": True, "members": await member_count(room)}


@app.get("/rooms/{room}")
async def room_info(room: str) -> dict[str, Any]:
    try:
        validate_room(room)
    except InvalidRoomName as error:
        raise HTTPException(422, str(error)) from None
    return {"room": room, "members": await member_count(room), **identity()}


@app.get("/healthz")
async def healthz() -> JSONResponse:
    """200 when this worker's relay works end to end (a self-ping through the backend), else 503."""
    try:
        await app.hub.ensure_started()
        ok = await app.hub.check_relay()
    except BackendUnavailable:
        ok = False
    body = {
        "status": "ok" if ok else "unavailable",
        "backend": type(app.hub.backend).__name__,  # not the URL: it may hold a password
        "worker": app.hub.worker_id,
        **identity(),
    }
    return JSONResponse(body, status_code=200 if ok else 503)
