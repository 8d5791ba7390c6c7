"""A realtime endpoint with one room of each kind, for the protocol and client tests.

HTTP helpers drive what a test cannot do over the socket: broadcast, kick, read presence.
The backend comes from ``FASTERAPI_BACKEND`` (memory by default); history is on.
"""

import asyncio
from typing import Any

import msgspec

from FasterAPI import Depends, Faster, HTTPException, WebSocket
from FasterAPI.pubsub import History
from FasterAPI.pubsub.history import Gap
from FasterAPI.realtime import JoinDenied, PublishRefused

app = Faster(history=History(size=500, ttl=120), max_message_size=4096, max_rooms_per_connection=3)
rt = app.realtime("/rt", ping_interval=float(__import__("os").environ.get("RT_PING_INTERVAL", "10")))


class JoinPayload(msgspec.Struct):
    name: str
    age: int = 0


class ChatMessage(msgspec.Struct):
    text: str


def current_user(ws: WebSocket) -> str:
    token = ws.query_params.get("token")
    if not token:
        raise HTTPException(401, "no token")
    return token


@rt.room("chat:{room_id}")
async def join_chat(room_id: str, payload: JoinPayload, user: str = Depends(current_user)) -> dict[str, Any]:
    if room_id == "secret" and user != "admin":
        raise JoinDenied("not a member")
    if user in REVOKED:
        raise JoinDenied("revoked", code="revoked")
    return {"name": payload.name, "user": user}


@rt.on_publish("chat:{room_id}")
async def chat_message(room_id: str, msg: ChatMessage, user: str = Depends(current_user)) -> dict[str, Any]:
    if msg.text == "forbidden":
        raise PublishRefused("no such words")
    return {"from": user, "text": msg.text, "room": room_id}


@rt.room("count:{n}")
async def join_count(n: int) -> None:
    return None


@rt.room("feed:{name}")
def join_feed(name: str) -> dict[str, str]:  # a sync guard runs in a thread
    return {"feed": name}


@rt.room("live:{name}", presence=False)
async def join_live(name: str, user: str = Depends(current_user)) -> dict[str, str]:
    return {"user": user}


@rt.room("slow:{seconds}")
async def join_slow(seconds: float) -> None:
    await asyncio.sleep(seconds)


REVOKED: set[str] = set()


@app.post("/broadcast/{room}")
async def broadcast(room: str, count: int = 1, start: int = 0, binary: bool = False) -> dict[str, Any]:
    last = None
    for n in range(start, start + count):
        position = await app.broadcast(room, b"\x00\x01" if binary else {"n": n})
        last = None if position is None else [position.offset, position.epoch]
    return {"position": last}


@app.post("/text/{room}")
async def text(room: str) -> None:
    await app.broadcast(room, "plain text")


@app.post("/kick/{connection_id}/{room}")
async def kick(connection_id: str, room: str, reason: str = "") -> None:
    await app.kick(connection_id, room, reason=reason)


@app.post("/revoke/{user}")
async def revoke(user: str) -> None:
    REVOKED.add(user)


@app.post("/send/{connection_id}")
async def send(connection_id: str) -> None:
    await app.send_to(connection_id, {"direct": True})


@app.post("/gap/{room}")
async def gap(room: str) -> None:
    # What the hub's recovery reports when the history no longer holds what a worker missed.
    app.hub._report_gap(Gap(room, 1, 1, False))


@app.get("/presence/{room}")
async def presence(room: str) -> dict[str, Any]:
    return await app.presence(room)
