"""A half-open path to Redis: the network goes silent without closing anything.

A :class:`~tests.faults.tcp_proxy.TcpProxy` sits between 4 gunicorn workers and Redis. When it
black-holes the traffic, no socket error ever reaches the workers: only the subscriber
connection's health check (a PING after ``health_check_interval`` of silence, and a deadline
of one more interval for any answer) can notice. The documented bound is 2x the interval.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.cluster.processes import Gunicorn, run_gunicorn
from tests.faults.harness import (
    ahttp,
    by_worker,
    close_all,
    connect_spread,
    measure_recovery,
    wait_workers,
)
from tests.faults.tcp_proxy import TcpProxy
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(90)

WORKERS = 4
ROOMS = ("alpha", "beta")
INTERVAL = 1.0
#: Polling the workers' status and scheduling on a busy 2-core machine.
SLACK = 0.5


def test_half_open_connection_is_detected_within_two_intervals_and_recovers(redis_server: RedisServer) -> None:
    with TcpProxy(redis_server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0?health_check_interval={INTERVAL}&socket_timeout=1&connect_timeout=1"
        with run_gunicorn("tests.apps.fault_app:app", workers=WORKERS, env={"FASTERAPI_BACKEND": url}) as server:
            asyncio.run(half_open(server, proxy))


async def half_open(server: Gunicorn, proxy: TcpProxy) -> None:
    clients = await connect_spread(server.ws_url, ROOMS, WORKERS)
    try:
        await measure_recovery(clients, server.base_url, time.monotonic())
        workers = by_worker(clients)

        proxy.blackhole()
        silenced = time.monotonic()
        detected: dict[int, float] = {}
        while len(detected) < len(workers):
            for pid, status in zip(workers, await asyncio.gather(*(c.status() for c in workers.values())), strict=True):
                if pid not in detected and not status["backend_available"] and not status["relay_ok"]:
                    detected[pid] = time.monotonic() - silenced
            assert time.monotonic() - silenced < 4 * INTERVAL + 2, f"undetected after 4 intervals: {detected}"
            await asyncio.sleep(0.02)
        print("\nhalf-open detected after (s): " + ", ".join(f"{t:.2f}" for t in sorted(detected.values())))
        assert max(detected.values()) <= 2 * INTERVAL + SLACK, detected

        # The workers know: HTTP says so too, and a broadcast fails at once instead of hanging.
        reply = await ahttp("GET", f"{server.base_url}/worker")
        assert reply.body["relay_ok"] is False, reply
        reply = await ahttp("POST", f"{server.base_url}/broadcast/alpha", b"into the void")
        assert reply.status == 503 and reply.seconds < 1.0, reply
        log = server.log()
        for pid in workers:
            line = re.search(rf"pid {pid}: Redis pub/sub connection .* lost at .*half-open", log)
            assert line is not None, log[-3000:]

        proxy.resume()
        healed = time.monotonic()
        recovery = await measure_recovery(clients, server.base_url, healed, timeout=30)
        statuses = await wait_workers(clients, lambda s: s["hook_done"] == 1, 10, "the reconnect hook everywhere")
        assert all(s["stats"]["backend_reconnects"] == 1 and s["relay_ok"] for s in statuses.values()), statuses
        print(f"path healed: every client receives again after {recovery:.2f}s")
    finally:
        await close_all(clients)
