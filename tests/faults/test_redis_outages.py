"""Redis goes away under 4 gunicorn workers serving real clients in several rooms, and comes back.

The workers are uvicorn's (``uvicorn_worker.UvicornWorker``, broadcasts through ASGI sends);
the ten-restart test also runs under ``FasterWorker`` (frame-once delivery), the deploy default.

Each test owns a redis-server on a free port (never the shared 6379) that it SIGKILLs and
restarts on the same port, or tells to drop the workers' subscriber connections. Recovery is
measured end to end: from the moment Redis is back (or dropped the subscribers) until every
client has received a broadcast probe sent after it.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import re
import time
from collections.abc import Mapping
from typing import Any

import pytest

from tests.cluster.processes import Gunicorn, run_gunicorn
from tests.faults.harness import (
    Client,
    ahttp,
    close_all,
    connect_spread,
    equalize_pools,
    fasterapi_clients,
    measure_recovery,
    sockets_to,
    statuses,
    wait_workers,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(150)

APP = "tests.apps.fault_app:app"
WORKERS = 4
ROOMS = ("alpha", "beta", "gamma")
RECOVERY_BOUND = 5.0
#: Publish connections each worker is brought to before connections are counted.
POOL = 8


def cluster_env(redis: RedisServer) -> dict[str, str]:
    return {"FASTERAPI_BACKEND": redis.url}


def resync_from(pid: int, n: int) -> Any:
    """Matches the reconnect hook's n-th message from worker ``pid``."""
    return lambda m: isinstance(m, dict) and m.get("type") == "resync" and m["pid"] == pid and m["n"] == n


def rooms_by_worker(clients: list[Client]) -> dict[int, set[str]]:
    rooms: dict[int, set[str]] = collections.defaultdict(set)
    for client in clients:
        rooms[client.pid].add(client.room)
    return rooms


def subscriptions(redis: RedisServer, workers: Mapping[int, dict[str, Any]]) -> dict[str, int]:
    """Subscriber counts in Redis of every room and of each worker's own channel."""
    channels = [f"fasterapi:room:{room}" for room in ROOMS]
    channels += [f"fasterapi:worker:{status['worker_id']}" for status in workers.values()]
    counts = redis.admin.pubsub_numsub(*channels)
    return {channel.decode() if isinstance(channel, bytes) else channel: int(count) for channel, count in counts}


async def check_resubscribed(clients: list[Client], redis: RedisServer, reconnects: int) -> None:
    """Every worker reconnected ``reconnects`` times, wants exactly its rooms, and Redis agrees;
    the reconnect hook ran that many times in every worker and reached every client."""
    await asyncio.gather(*(c.wait_for(resync_from(c.pid, reconnects)) for c in clients))
    workers = await statuses(clients)
    assert len(workers) == WORKERS
    rooms = rooms_by_worker(clients)
    for pid, status in workers.items():
        assert status["backend_available"], status
        assert status["stats"]["backend_reconnects"] == reconnects, status
        assert status["stats"]["backend_outages"] == reconnects, status
        assert status["hook_done"] == reconnects, status
        wanted = {f"room:{room}" for room in rooms[pid]} | {f"worker:{status['worker_id']}"}
        assert set(status["subscribed"]) == wanted, status
    counts = subscriptions(redis, workers)
    for channel, count in counts.items():
        assert count == (WORKERS if channel.startswith("fasterapi:room:") else 1), counts
    assert fasterapi_clients(redis)["fasterapi:sub"] == WORKERS


# -- 1 and 5: SIGKILL and restart, ten times -------------------------------------------------


@pytest.mark.parametrize(
    "worker_class",
    ["uvicorn_worker.UvicornWorker", "FasterAPI.server.worker.FasterWorker"],
    ids=["asgi", "frame-once"],
)
def test_redis_killed_and_restarted_ten_times_every_worker_recovers(
    redis_server: RedisServer, worker_class: str
) -> None:
    with run_gunicorn(APP, workers=WORKERS, env=cluster_env(redis_server), worker_class=worker_class) as server:
        asyncio.run(ten_restarts(server, redis_server))


async def ten_restarts(server: Gunicorn, redis: RedisServer) -> None:
    clients = await connect_spread(server.ws_url, ROOMS, WORKERS, min_clients=24)
    try:
        await measure_recovery(clients, server.base_url, time.monotonic())
        await equalize_pools(clients, POOL)
        before = fasterapi_clients(redis)
        fds_before = {pid: status["fds"] for pid, status in (await statuses(clients)).items()}
        assert before == {"fasterapi:sub": WORKERS, "fasterapi:pub": WORKERS * POOL}, before

        recoveries: list[float] = []
        for round_ in range(1, 11):
            redis.kill()
            await wait_workers(clients, lambda s: not s["backend_available"], 10, "every worker to lose Redis")
            redis.start()
            recoveries.append(await measure_recovery(clients, server.base_url, time.monotonic()))
            await check_resubscribed(clients, redis, round_)
        print(
            f"\n{len(clients)} clients on {WORKERS} workers, {len(ROOMS)} rooms; recovery after restart (s): "
            + ", ".join(f"{t:.2f}" for t in recoveries)
            + f"; max {max(recoveries):.2f}"
        )
        assert max(recoveries) < RECOVERY_BOUND, recoveries

        await equalize_pools(clients, POOL)
        after = fasterapi_clients(redis)
        fds_after = {pid: status["fds"] for pid, status in (await statuses(clients)).items()}
        print(f"Redis clients before {dict(before)}, after {dict(after)}; worker fds {fds_before} -> {fds_after}")
        assert after == before
        # Nothing left over from the ten dead servers on the workers' side either.
        assert sockets_to(redis.port)["CLOSE_WAIT"] == 0
        assert all(fds_after[pid] <= fds_before[pid] for pid in fds_before), (fds_before, fds_after)
    finally:
        await close_all(clients)


# -- 2: Redis drops the subscribers ----------------------------------------------------------


def test_redis_drops_subscribers_client_kill_and_output_buffer_limit(redis_server: RedisServer) -> None:
    with run_gunicorn(APP, workers=WORKERS, env=cluster_env(redis_server)) as server:
        asyncio.run(dropped_subscribers(server, redis_server))


async def dropped_subscribers(server: Gunicorn, redis: RedisServer) -> None:
    admin = redis.admin
    clients = await connect_spread(server.ws_url, ROOMS, WORKERS, min_clients=24)
    try:
        await measure_recovery(clients, server.base_url, time.monotonic())
        old_ids = {entry["id"] for entry in admin.client_list(_type="pubsub")}

        # CLIENT KILL TYPE pubsub: all four subscriber connections at once.
        assert admin.client_kill_filter(_type="pubsub") == WORKERS
        killed = time.monotonic()
        after_kill = await measure_recovery(clients, server.base_url, killed)
        await check_resubscribed(clients, redis, 1)
        new_ids = {entry["id"] for entry in admin.client_list(_type="pubsub")}
        assert len(new_ids) == WORKERS and not new_ids & old_ids

        # The pub/sub output buffer limit: one broadcast far over it makes Redis drop every
        # subscriber of the room (all four workers have members there).
        admin.config_set("client-output-buffer-limit", "pubsub 1024 1024 1")
        stats_before = admin.info("stats")
        reply = await ahttp("POST", f"{server.base_url}/broadcast/alpha", b"x" * 256 * 1024)
        assert reply.status == 200, reply
        dropped = time.monotonic()
        after_limit = await measure_recovery(clients, server.base_url, dropped)
        await check_resubscribed(clients, redis, 2)
        disconnections = admin.info("stats").get("client_output_buffer_limit_disconnections")
        if disconnections is not None:  # Redis >= 7.2 counts them
            assert disconnections - stats_before["client_output_buffer_limit_disconnections"] == WORKERS
        print(
            f"\nrecovery after CLIENT KILL TYPE pubsub {after_kill:.2f}s, after output buffer limit {after_limit:.2f}s"
        )
        assert after_kill < RECOVERY_BOUND and after_limit < RECOVERY_BOUND
    finally:
        await close_all(clients)


# -- 4: while Redis is down ------------------------------------------------------------------

#: The backend's line (millisecond timestamp and cause) and the hub's (when lost, how long out).
BACKEND_LOST = re.compile(r"pid (\d+): Redis pub/sub connection to \S+ lost at (\S+): (.+); reconnecting")
LOST = re.compile(r"Hub (\w+) \(pid (\d+)\) lost its backend at (\S+): (.*)")
BACK = re.compile(
    r"Hub (\w+) \(pid (\d+)\) recovered its backend at (\S+) after a ([\d.]+)s outage; (\d+) rooms resubscribed"
)


def test_while_redis_is_down_requests_fail_fast_and_logs_name_the_worker(redis_server: RedisServer) -> None:
    with run_gunicorn(APP, workers=WORKERS, env=cluster_env(redis_server)) as server:
        asyncio.run(while_down(server, redis_server))


async def replies_from_every_worker(
    method: str, url: str, pids: set[int], body: bytes | None = None, limit: int = 3000
) -> dict[int, list[Any]]:
    """Repeat a request (each on a new connection) until every worker in ``pids`` answered."""
    seen: dict[int, list[Any]] = collections.defaultdict(list)
    for _ in range(limit):
        reply = await ahttp(method, url, body)
        seen[reply.body["pid"]].append(reply)
        if pids <= set(seen):
            return seen
    raise AssertionError(f"only workers {sorted(seen)} of {sorted(pids)} answered {limit} requests")


async def while_down(server: Gunicorn, redis: RedisServer) -> None:
    clients = await connect_spread(server.ws_url, ROOMS, WORKERS)
    try:
        pids = {c.pid for c in clients}
        await measure_recovery(clients, server.base_url, time.monotonic())
        healthy = await replies_from_every_worker("GET", f"{server.base_url}/healthz", pids)
        assert all(r.status == 200 for replies in healthy.values() for r in replies)

        killed_at = datetime.datetime.now().astimezone()
        killed = time.monotonic()
        redis.kill()
        await wait_workers(clients, lambda s: not s["backend_available"], 10, "every worker to lose Redis")

        refused = await replies_from_every_worker("POST", f"{server.base_url}/broadcast/alpha", pids, b"lost")
        slowest = max(r.seconds for replies in refused.values() for r in replies)
        for replies in refused.values():
            for reply in replies:
                assert reply.status == 503, reply
                assert "backend unavailable" in reply.body["detail"], reply
        assert slowest < 1.0
        unhealthy = await replies_from_every_worker("GET", f"{server.base_url}/healthz", pids)
        assert all(r.status == 503 and r.body["ok"] is False for replies in unhealthy.values() for r in replies)
        print(f"\nwhile down: {sum(map(len, refused.values()))} broadcasts refused, slowest {slowest * 1000:.1f} ms")

        redis.start()
        restarted = time.monotonic()
        await measure_recovery(clients, server.base_url, restarted)
        recovered = time.monotonic()
        healthy = await replies_from_every_worker("GET", f"{server.base_url}/healthz", pids)
        assert all(r.status == 200 for replies in healthy.values() for r in replies)

        # The logs say which worker lost the backend, when and why, and after how long it had it back.
        log = server.log()
        backend_lost = {int(m[1]): m for m in BACKEND_LOST.finditer(log)}
        lost = {int(m[2]): m for m in LOST.finditer(log)}
        back = {int(m[2]): m for m in BACK.finditer(log)}
        assert set(backend_lost) == set(lost) == set(back) == pids, log[-4000:]
        for pid in pids:
            when = datetime.datetime.fromisoformat(backend_lost[pid][2])
            assert abs((when - killed_at).total_seconds()) < 1, (backend_lost[pid][0], killed_at)
            when = datetime.datetime.fromisoformat(lost[pid][3])
            assert abs((when - killed_at).total_seconds()) < 1, (lost[pid][0], killed_at)
            when = datetime.datetime.fromisoformat(back[pid][3])
            assert restarted - killed - 0.2 <= (when - killed_at).total_seconds() <= recovered - killed + 0.2
            outage = float(back[pid][4])
            assert restarted - killed - 0.2 <= outage <= recovered - killed + 0.2, (back[pid][0], recovered - killed)
            assert back[pid][5] == str(len({c.room for c in clients if c.pid == pid}))
            print(backend_lost[pid][0], "|", back[pid][0])
    finally:
        await close_all(clients)
