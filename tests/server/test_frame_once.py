"""The frame-once path delivers exactly what the ASGI path delivers, through real servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from tests.apps.broadcast_app import SIZES
from tests.servers import run_uvicorn

pytestmark = pytest.mark.timeout(90)

PROTOCOL = "FasterAPI.server.protocol:FasterWebSocketProtocol"


@pytest.fixture(scope="module", params=["asgi", "frame-once"])
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    extra = ["--ws", PROTOCOL] if request.param == "frame-once" else []
    with run_uvicorn("tests.apps.broadcast_app:app", extra_args=extra) as url:
        yield url.ws_url


async def session(url: str, compression: str | None, peers: int) -> list[list[str | bytes]]:
    clients = [await connect(url + "/ws", compression=compression, max_size=None) for _ in range(peers)]
    try:
        for ws in clients:
            assert await asyncio.wait_for(ws.recv(), 10) == "joined"
        await clients[0].send("go")
        received: list[list[str | bytes]] = []
        for ws in clients:
            messages: list[str | bytes] = []
            while True:
                message = await asyncio.wait_for(ws.recv(), 10)
                messages.append(message)
                if isinstance(message, str) and message.startswith('{"done"'):
                    break
            received.append(messages)
        return received
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


def expected_broadcasts() -> list[str | bytes]:
    out: list[str | bytes] = []
    for n, size in enumerate(SIZES):
        out.append("é" * (size // 2) + str(n))
        out.append(bytes([n % 256]) * size)
    out.append(json.dumps({"done": True, "sizes": list(SIZES)}, separators=(",", ":")))
    return out


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_every_member_gets_every_broadcast_intact_and_in_order(server: str, compression: str | None) -> None:
    received = asyncio.run(session(server, compression, peers=3))
    expected = expected_broadcasts()
    for index, messages in enumerate(received):
        broadcasts = [m for m in messages if not (isinstance(m, str) and m.startswith("direct "))]
        assert broadcasts == expected
        directs = [m for m in messages if isinstance(m, str) and m.startswith("direct ")]
        # The sender's own sends arrive in order, interleaved with the broadcasts.
        assert directs == ([f"direct {n}" for n in range(len(SIZES))] if index == 0 else [])
