"""Rooms and broadcast with real gunicorn workers, a real redis-server and real clients."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.cluster.processes import ROOT, Gunicorn, run_gunicorn, wait_until
from tests.nats_server import NatsServer
from tests.redis_cluster import RedisCluster
from tests.redis_sentinel import SentinelSet
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(180)

CLIENTS = 40
TIMEOUT = 15


def http_json(url: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())


async def connect_one(url: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url, open_timeout=TIMEOUT, max_queue=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return ws, hello


async def connect_clients(
    urls: Sequence[str], min_processes: int
) -> tuple[list[ClientConnection], list[dict[str, Any]]]:
    """One client per URL, spread over at least ``min_processes`` worker processes.

    Workers share one listening socket and the kernel hands each connection to whichever
    worker accepts first, so a burst can land on a single worker. Sockets of the busiest
    worker are then swapped, one at a time, for new ones until they span enough workers.
    """
    pairs = await asyncio.gather(*(connect_one(url) for url in urls))
    clients, hellos = [ws for ws, _ in pairs], [hello for _, hello in pairs]
    deadline = time.monotonic() + 2 * TIMEOUT
    try:
        while len(pids := Counter(hello["pid"] for hello in hellos)) < min_processes:
            assert time.monotonic() < deadline, f"all clients landed on {set(pids)}"
            busiest = pids.most_common(1)[0][0]
            index = max(i for i, hello in enumerate(hellos) if hello["pid"] == busiest)
            ws, hello = await connect_one(urls[index])
            if hello["pid"] in pids:
                await ws.close()
                continue
            await clients[index].close()
            clients[index], hellos[index] = ws, hello
    except BaseException:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
        raise
    return clients, hellos


async def expect_exactly(ws: ClientConnection, expected: list[str], sentinel: str) -> None:
    """``ws`` receives ``expected`` in order, then ``sentinel``: nothing missing, nothing twice."""
    got = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(len(expected) + 1)]
    assert got == [*expected, sentinel]


def sinks_seen(base_url: str, answers: int = 8) -> list[tuple[str, ...]]:
    """The sinks of the workers that answer ``/worker``: at least ``answers`` answers, and asked
    until one came from a worker with sockets (the kernel may hand an idle worker many in a row)."""
    seen: list[tuple[str, ...]] = []
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < answers or not any(seen):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker with sockets answered /worker within {TIMEOUT}s: {seen}")
        seen.append(tuple(http_json(f"{base_url}/worker")["sinks"]))
    return seen


async def exercise(servers: Sequence[Gunicorn], backend_url: str, min_processes: int, sink: str) -> None:
    urls = [f"{servers[i % len(servers)].ws_url}/ws/lobby" for i in range(CLIENTS)]
    clients, hellos = await connect_clients(urls, min_processes)
    try:
        for server in servers:
            # Every worker with sockets must use the expected path.
            seen = sinks_seen(server.base_url)
            assert set(seen) - {()} == {(sink,)}, seen
        ids = {hello["id"] for hello in hellos}
        assert len(ids) == CLIENTS

        # Presence across every worker (asked of any one of them).
        for server in servers:
            wait_until(
                lambda s=server: http_json(f"{s.base_url}/presence/lobby")["size"] == CLIENTS,
                TIMEOUT,
                "presence to count every client",
            )
            assert set(http_json(f"{server.base_url}/presence/lobby")["members"]) == ids

        # One publisher: one socket, so one worker, sends without waiting.
        expected = [f"ws-{n}" for n in range(25)]
        for text in expected:
            await clients[0].send(f"say:{text}")
        await clients[0].send("say:end")
        await asyncio.gather(*(expect_exactly(ws, expected, "end") for ws in clients))
        # One publisher whose requests land on any worker: each POST returns once published,
        # so its messages are ordered too.
        expected = []
        for n in range(25):
            text = f"http-{n}"
            http_json(f"{servers[n % len(servers)].base_url}/broadcast/lobby", text.encode())
            expected.append(text)
        http_json(f"{servers[0].base_url}/broadcast/lobby", b"end")
        await asyncio.gather(*(expect_exactly(ws, expected, "end") for ws in clients))

        # A Publisher in a separate process reaches clients on every worker.
        code = (
            "import sys; from FasterAPI.pubsub import Publisher\n"
            "with Publisher(sys.argv[1]) as p:\n"
            "    p.broadcast_sync('lobby', 'from another process')\n"
            "    p.send_to_sync(sys.argv[2], 'just for you')\n"
        )
        subprocess.run([sys.executable, "-c", code, backend_url, hellos[5]["id"]], cwd=ROOT, check=True, timeout=30)
        for i, ws in enumerate(clients):
            if i == 5:
                # Order holds within a room; a room and a connection are two channels, which
                # Redis Cluster may serve from different shards, read by different readers.
                got = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(2)]
                assert sorted(got) == ["from another process", "just for you"]
            else:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "from another process"

        # Leaving: presence drops to the true number of connected clients.
        for ws in clients[:15]:
            await ws.close()
        wait_until(
            lambda: http_json(f"{servers[0].base_url}/presence/lobby")["size"] == CLIENTS - 15,
            TIMEOUT,
            "presence to drop after clients left",
        )
        # Those who stayed still receive, exactly once.
        await clients[-1].send("say:after")
        for ws in clients[15:]:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "after"
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


def redis_clients(redis: RedisServer) -> list[dict[str, str]]:
    return [c for c in redis.client().client_list() if c.get("name", "").startswith("fasterapi:")]


#: Both delivery paths: plain ASGI sends (uvicorn's worker) and frame-once writes (ours).
WORKERS = pytest.mark.parametrize(
    ("worker_class", "sink"),
    [("uvicorn_worker.UvicornWorker", "Outbox"), ("FasterAPI.server.worker.FasterWorker", "FasterWebSocketProtocol")],
    ids=["asgi", "frame-once"],
)


@WORKERS
def test_four_workers_share_rooms_through_redis(redis_server: RedisServer, worker_class: str, sink: str) -> None:
    env = {"FASTERAPI_BACKEND": redis_server.url}
    with run_gunicorn("tests.apps.cluster_app:app", workers=4, env=env, worker_class=worker_class) as server:
        asyncio.run(exercise([server], redis_server.url, min_processes=2, sink=sink))
        # One subscriber connection per worker, however many sockets and rooms.
        subscribers = [c for c in redis_clients(redis_server) if c["name"].endswith("sub")]
        assert len(subscribers) == 4, subscribers


@WORKERS
def test_two_hosts_share_rooms_through_one_redis(redis_server: RedisServer, worker_class: str, sink: str) -> None:
    env = {"FASTERAPI_BACKEND": redis_server.url}
    with run_gunicorn("tests.apps.cluster_app:app", workers=2, env=env, worker_class=worker_class) as first:
        with run_gunicorn("tests.apps.cluster_app:app", workers=2, env=env, worker_class=worker_class) as second:
            asyncio.run(exercise([first, second], redis_server.url, min_processes=2, sink=sink))


def test_four_workers_share_rooms_through_redis_sentinel(sentinel_set: SentinelSet) -> None:
    env = {"FASTERAPI_BACKEND": sentinel_set.url}
    worker_class = "FasterAPI.server.worker.FasterWorker"
    with run_gunicorn("tests.apps.cluster_app:app", workers=4, env=env, worker_class=worker_class) as server:
        asyncio.run(exercise([server], sentinel_set.url, min_processes=2, sink="FasterWebSocketProtocol"))


def test_four_workers_share_rooms_through_redis_cluster(redis_cluster: RedisCluster) -> None:
    env = {"FASTERAPI_BACKEND": redis_cluster.url}
    worker_class = "FasterAPI.server.worker.FasterWorker"
    with run_gunicorn("tests.apps.cluster_app:app", workers=4, env=env, worker_class=worker_class) as server:
        asyncio.run(exercise([server], redis_cluster.url, min_processes=2, sink="FasterWebSocketProtocol"))
        # Room traffic is sharded pub/sub only: no classic channel on any node.
        for primary in redis_cluster.primaries():
            assert primary.admin.execute_command("PUBSUB", "CHANNELS") == []
        # One subscriber connection per worker on each primary, however many sockets and rooms.
        for primary in redis_cluster.primaries():
            subscribers = [c for c in redis_clients(primary) if c["name"].endswith("sub")]
            assert len(subscribers) == 4, subscribers


def test_four_workers_share_rooms_through_nats(nats_server: NatsServer) -> None:
    env = {"FASTERAPI_BACKEND": nats_server.url}
    worker_class = "FasterAPI.server.worker.FasterWorker"
    with run_gunicorn("tests.apps.cluster_app:app", workers=4, env=env, worker_class=worker_class) as server:
        asyncio.run(exercise([server], nats_server.url, min_processes=2, sink="FasterWebSocketProtocol"))
