"""Room history under faults: 4 FasterWorker workers, real clients, a real redis-server.

A Publisher streams numbered messages into one room at a fixed rate while Redis drops every
worker's subscriber connection three times (``CLIENT KILL TYPE pubsub``) and a quarter of the
clients disconnect and come back with the last position they saw. Every client must end with
every message exactly once and in order. Then Redis restarts empty: the history is lost, a
resume with the old epoch recovers nothing, and each worker reports the gap once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from FasterAPI.pubsub import BackendUnavailable, History, Publisher
from tests.cluster.processes import Gunicorn, run_gunicorn
from tests.faults.harness import Client, close_all, connect_spread, statuses, wait_workers
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(240)

APP = "tests.apps.fault_app:app"
WORKER_CLASS = "FasterAPI.server.worker.FasterWorker"
WORKERS = 4
CLIENTS = 40
RECONNECTING = 10
RATE = 500  # messages per second
SECONDS = 12
ROOM = "stream"
HISTORY = History(size=10_000, ttl=300)


def history_env(redis: RedisServer) -> dict[str, str]:
    return {
        "FASTERAPI_BACKEND": redis.url,
        "FASTERAPI_HISTORY_SIZE": str(HISTORY.size),
        "FASTERAPI_HISTORY_TTL": str(HISTORY.ttl),
    }


def seqs(messages: list[Any]) -> list[int]:
    return [m["seq"] for m in messages if isinstance(m, dict) and "seq" in m]


async def publish_stream(publisher: Publisher, count: int, rate: float) -> None:
    """Publish ``{"seq": 1..count}`` on a fixed schedule; a publish refused while the
    publisher's own connection is down is retried (it was not sent: nothing is skipped)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for seq in range(1, count + 1):
        delay = start + seq / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        while True:
            try:
                await publisher.broadcast(ROOM, {"seq": seq})
                break
            except BackendUnavailable:
                await asyncio.sleep(0.01)


async def wait_all(clients: list[Client], last: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(seqs(c.messages)[-1:] == [last] for c in clients):
        if time.monotonic() > deadline:
            behind = {c.id: seqs(c.messages)[-1:] for c in clients if seqs(c.messages)[-1:] != [last]}
            raise AssertionError(f"timed out: {len(behind)} clients short of seq {last}: {behind}")
        await asyncio.sleep(0.05)


async def resume(ws_url: str, client: Client, epoch: str) -> Client:
    """Reconnect ``client`` with the position of the last message it saw (offset = seq here)."""
    last = seqs(client.messages)[-1] if seqs(client.messages) else 0
    return await Client.connect(f"{ws_url}/ws/{ROOM}?offset={last}&epoch={epoch}")


async def stream_with_faults(server: Gunicorn, redis: RedisServer) -> None:
    ws_url = server.ws_url
    clients = await connect_spread(ws_url, [ROOM], WORKERS, min_clients=CLIENTS)
    resumed: list[tuple[Client, Client]] = []
    try:
        epoch = clients[0].hello["position"]["epoch"]
        assert all(c.hello["position"]["epoch"] == epoch for c in clients)
        total = RATE * SECONDS
        async with Publisher(redis.url, history=HISTORY) as publisher:
            loop = asyncio.get_running_loop()
            stream = asyncio.create_task(publish_stream(publisher, total, RATE))
            started = loop.time()
            # The scenario's clock: three subscriber kills, and a quarter of the clients away for 2 s.
            leaving = clients[:RECONNECTING]
            for at, action in ((2.5, "kill"), (4.0, "leave"), (5.5, "kill"), (6.0, "return"), (8.5, "kill")):
                await asyncio.sleep(max(0.0, started + at - loop.time()))
                if action == "kill":
                    killed = redis.admin.client_kill_filter(_type="pubsub")
                    assert killed >= WORKERS
                elif action == "leave":
                    await close_all(leaving)
                else:
                    for client in leaving:
                        resumed.append((client, await resume(ws_url, client, epoch)))
            await stream
        staying = [c for c in clients if c not in leaving]
        await wait_all(staying + [again for _, again in resumed], total, timeout=60)
        for client in staying:
            assert seqs(client.messages) == list(range(1, total + 1)), f"{client.id} lost or repeated messages"
        for before, after in resumed:
            assert after.hello["recovered"] is True, after.hello
            combined = seqs(before.messages) + seqs(after.messages)
            assert combined == list(range(1, total + 1)), f"{after.id} resumed with a gap or a repeat"
        # Every worker that still has a client (the ten that left may have been all of one worker's).
        workers = await statuses(staying + [again for _, again in resumed])
        assert workers
        repaired = sum(status["stats"]["history_repaired"] for status in workers.values())
        assert all(status["gaps"] == [] for status in workers.values())
        print(f"{total} messages x {CLIENTS} clients, 3 subscriber kills, {RECONNECTING} resumes: "
              f"0 lost, 0 repeated; {repaired} messages repaired from history by the workers")
    finally:
        await close_all(clients + [again for _, again in resumed])


def test_no_message_is_lost_to_subscriber_drops_or_client_reconnects(redis_server: RedisServer) -> None:
    with run_gunicorn(APP, workers=WORKERS, env=history_env(redis_server), worker_class=WORKER_CLASS) as server:
        asyncio.run(stream_with_faults(server, redis_server))


async def history_lost(server: Gunicorn, redis: RedisServer) -> None:
    ws_url = server.ws_url
    clients = await connect_spread(ws_url, [ROOM], WORKERS)
    again: Client | None = None
    try:
        async with Publisher(redis.url, history=HISTORY) as publisher:
            before = await publisher.broadcast(ROOM, {"seq": 1})
        assert before is not None
        await wait_all(clients, 1, timeout=30)  # every worker delivered it: its cursor is at 1
        redis.restart()  # empty: the room's history is gone
        await wait_workers(clients, lambda s: s["relay_ok"], 30, "every worker back on Redis")
        async with Publisher(redis.url, history=HISTORY) as publisher:
            after = await publisher.broadcast(ROOM, {"seq": 2})
        assert after is not None and after.epoch != before.epoch and after.offset == 1
        again = await Client.connect(f"{ws_url}/ws/{ROOM}?offset={before.offset}&epoch={before.epoch}")
        assert again.hello["recovered"] is False
        assert again.hello["position"]["epoch"] == after.epoch
        assert seqs(again.messages) == []  # nothing replayed
        workers = await wait_workers(clients, lambda s: len(s["gaps"]) >= 1, 30, "every worker to report the gap")
        for status in workers.values():
            assert status["gaps"] == [{"room": ROOM, "first": 2, "last": 0, "epoch_changed": True}], status["gaps"]
    finally:
        await close_all(clients + ([again] if again else []))


def test_a_history_lost_with_redis_is_reported_once_per_worker(redis_server: RedisServer) -> None:
    with run_gunicorn(APP, workers=WORKERS, env=history_env(redis_server), worker_class=WORKER_CLASS) as server:
        asyncio.run(history_lost(server, redis_server))
