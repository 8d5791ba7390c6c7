"""A raw protocol client for the realtime tests: frames in and out, waits with generous deadlines."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

#: A deadline for one expected frame: generous, the machine is shared and busy.
DEADLINE = 20.0

Frame = dict[str, Any]


class Wire:
    """One raw connection to ``/rt``; :meth:`expect` skips pings and whatever ``skip`` matches."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[Frame] = []
        self.welcome: Frame = {}
        self._ids = 0

    @property
    def id(self) -> str:
        return str(self.welcome["connection"])

    async def send(self, frame: Frame | str | bytes) -> None:
        await self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    async def recv(self, timeout: float = DEADLINE) -> Frame:
        frame: Frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.seen.append(frame)
        return frame

    async def expect(self, predicate: Callable[[Frame], bool], what: str, timeout: float = DEADLINE) -> Frame:
        """The next frame matching ``predicate``; frames before it are kept in ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"No {what} within {timeout}s; seen {self.seen[-10:]}")
            try:
                frame = await self.recv(left)
            except TimeoutError:
                raise TimeoutError(f"No {what} within {timeout}s; seen {self.seen[-10:]}") from None
            if predicate(frame):
                return frame

    async def reply(self, request_id: int, timeout: float = DEADLINE) -> Frame:
        return await self.expect(
            lambda f: f.get("id") == request_id and f["op"] != "message", f"reply {request_id}", timeout
        )

    async def join(self, room: str, payload: Any = None, **extra: Any) -> Frame:
        request_id = self.next_id()
        frame: Frame = {"op": "join", "id": request_id, "room": room, **extra}
        if payload is not None:
            frame["payload"] = payload
        await self.send(frame)
        return await self.reply(request_id)

    async def publish(self, room: str, data: Any) -> Frame:
        request_id = self.next_id()
        await self.send({"op": "publish", "id": request_id, "room": room, "data": data})
        return await self.reply(request_id)

    async def message(self, room: str, timeout: float = DEADLINE) -> Frame:
        return await self.expect(lambda f: f["op"] == "message" and f["room"] == room, f"message in {room}", timeout)


class open_wire:
    """``async with open_wire(server, token="ann") as wire``: connected, welcome read."""

    def __init__(self, ws_url: str, **query: str) -> None:
        self.url = ws_url + "/rt" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        self._cm: Any = None

    async def __aenter__(self) -> Wire:
        self._cm = connect(self.url, subprotocols=["fasterapi.v1"], open_timeout=DEADLINE, ping_interval=None)  # type: ignore[list-item]
        wire = Wire(await self._cm.__aenter__())
        wire.welcome = await wire.recv()
        assert wire.welcome["op"] == "welcome", wire.welcome
        return wire

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)


def post(base_url: str, path: str) -> Any:
    """POST to a test app's helper route; its JSON answer."""
    request = urllib.request.Request(base_url + path, method="POST")
    with urllib.request.urlopen(request, timeout=DEADLINE) as response:
        body = response.read()
    return json.loads(body) if body else None


def get(base_url: str, path: str) -> Any:
    with urllib.request.urlopen(base_url + path, timeout=DEADLINE) as response:
        return json.loads(response.read())
