"""A realtime endpoint for several workers: a guard whose answer the join payload decides.

The backend comes from ``FASTERAPI_BACKEND``. ``/kick/...`` lands on whichever worker accepts
the request; the kick reaches the worker holding the connection through the relay.
"""

from typing import Any

import msgspec

from FasterAPI import Faster
from FasterAPI.realtime import JoinDenied

app = Faster()
rt = app.realtime("/rt", ping_interval=30.0)


class Ask(msgspec.Struct):
    allow: bool


@rt.room("r:{n}")
async def join(n: int, payload: Ask) -> dict[str, Any]:
    if not payload.allow:
        raise JoinDenied("the dice said no")
    return {"n": n}


@app.post("/kick/{connection_id}/{room}")
async def kick(connection_id: str, room: str) -> None:
    await app.kick(connection_id, room, reason="revoked")


@app.get("/presence/{room}")
async def presence(room: str) -> dict[str, Any]:
    return await app.presence(room)
