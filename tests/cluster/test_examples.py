"""examples/rooms.py, unchanged, under gunicorn -w 4 with uvicorn workers and Redis."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.cluster.processes import run_gunicorn
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 15


async def receive_json(ws: ClientConnection) -> dict[str, object]:
    message = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert isinstance(message, dict)
    return message


def test_rooms_example_under_four_workers(redis_server: RedisServer) -> None:
    env = {"FASTERAPI_BACKEND": redis_server.url}
    with run_gunicorn("examples.rooms:app", workers=4, env=env) as server:

        async def scenario() -> None:
            # The docs page's broadcast pattern, now for every worker.
            clients = [await connect(f"{server.ws_url}/broadcast") for _ in range(12)]
            try:
                # Everyone is in the room once one probe per client came back to all.
                for i, ws in enumerate(clients):
                    await ws.send(f"probe {i}")
                    for other in clients:
                        assert await asyncio.wait_for(other.recv(), TIMEOUT) == f"probe {i}"
                await clients[3].send("hello, every worker")
                for ws in clients:
                    assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello, every worker"
            finally:
                await asyncio.gather(*(ws.close() for ws in clients))

            # Rooms with names, presence and messages tagged with the delivering process.
            alice = await connect(f"{server.ws_url}/rooms/kitchen?name=alice")
            assert (await receive_json(alice))["event"] == "joined"
            bob = await connect(f"{server.ws_url}/rooms/kitchen?name=bob")
            joined = await receive_json(bob)
            assert joined == {"event": "joined", "name": "bob", "id": joined["id"], "members": 2}
            assert await receive_json(alice) == joined
            await alice.send("hi bob")
            for ws in (alice, bob):
                message = await receive_json(ws)
                assert (message["event"], message["name"], message["text"]) == ("message", "alice", "hi bob")
            request = urllib.request.Request(
                f"{server.base_url}/rooms/kitchen/messages", data=b'{"text": "dinner is ready"}', method="POST"
            )
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                assert response.status == 202
                assert json.loads(response.read()) == {"room": "kitchen", "members": 2}
            for ws in (alice, bob):
                assert await receive_json(ws) == {"event": "notice", "text": "dinner is ready"}
            await bob.close()
            assert await receive_json(alice) == {"event": "left", "name": "bob", "members": 1}
            await alice.close()

        asyncio.run(scenario())
