"""The relay fails over under 4 gunicorn workers serving real clients in several rooms.

Three distributed relays, each losing a server the way operators see it happen: a Redis
Cluster primary SIGKILLed (its replica takes over after the 1.5 s node timeout), the primary
of a Sentinel set SIGKILLed (down-after 1 s), a nats-server killed and restarted. Recovery is
measured end to end, from the kill until every client in every room has received a broadcast
sent after it (``measure_recovery``); each worker must also have seen exactly one outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.cluster.processes import Gunicorn, run_gunicorn
from tests.faults.harness import close_all, connect_spread, measure_recovery, statuses, wait_workers
from tests.nats_server import NatsServer
from tests.redis_cluster import RedisCluster
from tests.redis_sentinel import SentinelSet

pytestmark = pytest.mark.timeout(180)

APP = "tests.apps.fault_app:app"
WORKER_CLASS = "FasterAPI.server.worker.FasterWorker"
WORKERS = 4
ROOMS = ("alpha", "beta", "gamma", "delta")


async def fail_over(server: Gunicorn, fail: Callable[[], None], bound: float, what: str) -> None:
    """Clients in every room on every worker; ``fail()``; every client receives again within ``bound``."""
    base_url = server.base_url
    clients = await connect_spread(server.ws_url, ROOMS, WORKERS, min_clients=24)
    try:
        await measure_recovery(clients, base_url, time.monotonic())
        before = {pid: status["stats"]["backend_outages"] for pid, status in (await statuses(clients)).items()}
        fail()
        failed = time.monotonic()
        recovered = await measure_recovery(clients, base_url, failed, timeout=bound + 10)
        after = await wait_workers(clients, lambda s: s["backend_available"], 10, "every worker to have its relay")
        print(f"\n{what}: {len(clients)} clients, {len(ROOMS)} rooms, {WORKERS} workers: after {recovered:.2f}s")
        assert recovered < bound, f"{what}: {recovered:.2f}s"
        outages = {pid: status["stats"]["backend_outages"] - before[pid] for pid, status in after.items()}
        assert outages == dict.fromkeys(before, 1)
    finally:
        await close_all(clients)


def test_a_cluster_primary_dies_and_every_room_receives_within_8s(redis_cluster: RedisCluster) -> None:
    env = {"FASTERAPI_BACKEND": redis_cluster.url}
    try:
        with run_gunicorn(APP, workers=WORKERS, env=env, worker_class=WORKER_CLASS) as server:

            def kill() -> None:
                redis_cluster.kill_primary_of("fasterapi:room:{alpha}")

            asyncio.run(fail_over(server, kill, 8.0, "cluster primary killed"))
    finally:
        redis_cluster.restart_dead_nodes()


def test_the_sentinel_primary_dies_and_every_room_receives_within_12s(sentinel_set: SentinelSet) -> None:
    env = {"FASTERAPI_BACKEND": sentinel_set.url}
    with run_gunicorn(APP, workers=WORKERS, env=env, worker_class=WORKER_CLASS) as server:

        def kill() -> None:
            sentinel_set.kill_primary()

        asyncio.run(fail_over(server, kill, 12.0, "Sentinel primary killed"))


def test_nats_server_restarts_and_every_room_receives_within_5s(nats_server: NatsServer) -> None:
    env = {"FASTERAPI_BACKEND": nats_server.url}
    with run_gunicorn(APP, workers=WORKERS, env=env, worker_class=WORKER_CLASS) as server:
        asyncio.run(fail_over(server, nats_server.restart, 5.0, "nats-server restarted"))
