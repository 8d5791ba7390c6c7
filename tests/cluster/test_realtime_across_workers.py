"""The realtime endpoint across gunicorn workers on a real redis-server.

Presence diffs and ``app.presence`` span the workers. Guards: randomized joins, denials and
revocations while a Publisher broadcasts to every room; no message may reach a connection
that is not admitted to its room at that moment.

Each connection tracks, from its own frames in order, which rooms it is in: a room enters on
``joined`` and leaves on ``denied`` (a rejoin the guard refused), ``left`` (its own leave, or a
kick). A message of a room it is not in is a violation; so is a message that arrived while a
join was pending when that join ends ``denied``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from FasterAPI.pubsub import Publisher
from tests.cluster.processes import run_gunicorn
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(240)

#: Joins in the randomized run (about 40 s on a quiet 2-core box, 75 s on a loaded one);
#: REALTIME_GUARD_JOINS=1000 makes a quick local run.
JOINS = int(os.environ.get("REALTIME_GUARD_JOINS", "10000"))
CONNECTIONS = 30
ROOMS = [f"r:{n}" for n in range(8)]
DEADLINE = 30.0


class Member:
    """One connection driven by the test, with its own view of its rooms."""

    def __init__(self, ws: ClientConnection, connection_id: str) -> None:
        self.ws = ws
        self.id = connection_id
        self.rooms: set[str] = set()
        self.pending_joins: dict[str, int] = {}  # room -> messages that arrived while joining
        self.waiting: dict[int | str, asyncio.Future[dict[str, Any]]] = {}
        self.delivered = 0
        self.violations: list[str] = []
        self._ids = 0

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            op, room = frame["op"], frame.get("room")
            if op == "message":
                if room in self.rooms:
                    self.delivered += 1
                elif room in self.pending_joins:
                    self.pending_joins[room] += 1
                else:
                    self.violations.append(f"{self.id}: message {frame['data']} in {room} while not a member")
            elif op == "joined":
                self.rooms.add(room)
                self.delivered += self.pending_joins.pop(room, 0)
            elif op == "denied":
                self.rooms.discard(room)
                early = self.pending_joins.pop(room, 0)
                if early:
                    self.violations.append(f"{self.id}: {early} messages in {room} before a denied join")
            elif op == "left":
                self.rooms.discard(room)
            key = frame.get("id") or (f"kick:{room}" if op == "left" else None)
            future = self.waiting.pop(key, None) if key is not None else None
            if future is not None and not future.done():
                future.set_result(frame)

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting[self._ids] = future
        if frame["op"] == "join":
            self.pending_joins.setdefault(frame["room"], 0)
        await self.ws.send(json.dumps({**frame, "id": self._ids}))
        return await asyncio.wait_for(future, DEADLINE)


def test_presence_spans_the_workers(redis_server: RedisServer) -> None:
    env = {"FASTERAPI_BACKEND": redis_server.url}
    with run_gunicorn("tests.apps.realtime_cluster_app:app", workers=2, env=env) as server:
        asyncio.run(presence_across(server.ws_url + "/rt", server.base_url))


async def presence_across(url: str, base_url: str) -> None:
    sockets: list[tuple[ClientConnection, str]] = []
    try:
        # Workers share the listening socket: connect until two connections are on different ones.
        deadline = time.monotonic() + DEADLINE
        while len({connection.partition(".")[0] for _, connection in sockets}) < 2:
            assert time.monotonic() < deadline, "every connection landed on one worker"
            ws = await connect(url, open_timeout=DEADLINE, ping_interval=None)
            sockets.append((ws, json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))["connection"]))
        first = sockets[0]
        second = next(pair for pair in sockets if pair[1].partition(".")[0] != first[1].partition(".")[0])

        async def frame(ws: ClientConnection, op: str) -> dict[str, Any]:
            while True:
                found = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
                if found["op"] == op:
                    return found

        await first[0].send(json.dumps({"op": "join", "id": 1, "room": "r:1", "payload": {"allow": True}}))
        assert (await frame(first[0], "joined"))["presence"] == {first[1]: {"n": 1}}
        await second[0].send(json.dumps({"op": "join", "id": 1, "room": "r:1", "payload": {"allow": True}}))
        joined = await frame(second[0], "joined")
        assert joined["presence"] == {first[1]: {"n": 1}, second[1]: {"n": 1}}
        diff = await frame(first[0], "presence")
        assert diff == {"op": "presence", "room": "r:1", "joins": {second[1]: {"n": 1}}, "leaves": []}
        for _ in range(4):  # whichever worker answers
            everyone = await asyncio.to_thread(get_json, f"{base_url}/presence/r:1")
            assert everyone == {first[1]: {"n": 1}, second[1]: {"n": 1}}
        await second[0].close()
        diff = await frame(first[0], "presence")
        assert diff["leaves"] == [second[1]] and diff["joins"] == {}
    finally:
        for ws, _ in sockets:
            await ws.close()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        return json.loads(response.read())


def post(url: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=DEADLINE) as response:
        response.read()


def test_no_message_reaches_a_denied_or_revoked_connection(redis_server: RedisServer) -> None:
    env = {"FASTERAPI_BACKEND": redis_server.url}
    with run_gunicorn("tests.apps.realtime_cluster_app:app", workers=3, env=env) as server:
        asyncio.run(exercise(server.ws_url + "/rt", server.base_url, redis_server.url))


async def exercise(url: str, base_url: str, backend_url: str) -> None:
    rng = random.Random(14)
    members: list[Member] = []
    for _ in range(CONNECTIONS):
        ws = await connect(url, open_timeout=DEADLINE, ping_interval=None, max_queue=None)
        welcome = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
        members.append(Member(ws, welcome["connection"]))
    workers = Counter(member.id.partition(".")[0] for member in members)
    readers = [asyncio.create_task(member.read()) for member in members]
    counts: Counter[str] = Counter()
    stop = asyncio.Event()

    async def publish() -> None:
        async with Publisher(backend_url) as publisher:
            n = 0
            while not stop.is_set():
                for room in ROOMS:
                    await publisher.broadcast(room, {"n": n})
                n += 1
                await asyncio.sleep(0.01)

    async def drive(member: Member) -> None:
        while counts["join"] < JOINS:
            room = rng.choice(ROOMS)
            roll = rng.random()
            if roll < 0.75:
                allow = rng.random() < 0.7
                was_member = room in member.rooms
                counts["join"] += 1
                reply = await member.request({"op": "join", "room": room, "payload": {"allow": allow}})
                assert reply["op"] == ("joined" if allow else "denied"), reply
                counts["joined" if allow else "revoked by a rejoin" if was_member else "denied"] += 1
            elif roll < 0.9 and room in member.rooms:
                counts["leave"] += 1
                await member.request({"op": "leave", "room": room})
            elif room in member.rooms:
                counts["kick"] += 1
                future = asyncio.get_running_loop().create_future()
                member.waiting[f"kick:{room}"] = future
                await asyncio.to_thread(post, f"{base_url}/kick/{member.id}/{room}")
                assert (await asyncio.wait_for(future, DEADLINE))["reason"] == "revoked"

    publisher = asyncio.create_task(publish())
    started = time.monotonic()
    try:
        await asyncio.gather(*(drive(member) for member in members))
        await asyncio.sleep(0.5)  # messages in flight arrive (and would be caught) now
    finally:
        elapsed = time.monotonic() - started
        stop.set()
        await publisher
        for member in members:
            await member.ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
    violations = [v for member in members for v in member.violations]
    delivered = sum(member.delivered for member in members)
    print(
        f"{counts['join']} joins in {elapsed:.1f}s over workers {dict(workers)}: {dict(counts)}, {delivered} delivered"
    )
    assert violations == []
    assert len(workers) >= 2, f"every connection landed on one worker: {workers}"
    assert counts["denied"] > 0 and counts["revoked by a rejoin"] > 0 and counts["kick"] > 0 and counts["leave"] > 0
    assert delivered > 1000
