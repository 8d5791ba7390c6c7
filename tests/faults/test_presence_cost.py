"""Presence upkeep costs O(workers), not O(rooms): an idle worker pair against a real Redis.

Each worker puts socket-less members in many rooms (``POST /occupy``); then nothing happens
but upkeep, and Redis counts the commands it serves. A heartbeat every ``presence_ttl / 3``
per worker is the only presence write, so 2,000 rooms cost what 20 do.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.cluster.processes import Gunicorn, run_gunicorn, wait_until
from tests.faults.harness import ahttp
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)

WORKERS = 2
TTL = 1.5  # a heartbeat every 0.5 s, so a short window sees many
WINDOW = 3.0


def commands(redis: RedisServer) -> int:
    return int(redis.admin.info("stats")["total_commands_processed"])


async def occupy(server: Gunicorn, rooms_per_worker: int) -> None:
    """Reach every worker (requests go to whichever accepts first) until each holds its rooms."""
    done: dict[int, int] = {}
    deadline = time.monotonic() + 30
    while len(done) < WORKERS:
        assert time.monotonic() < deadline, f"only reached workers {sorted(done)}"
        reply = await ahttp("POST", f"{server.base_url}/occupy/{rooms_per_worker}")
        done.setdefault(reply.body["pid"], reply.body["rooms"])


def idle_rate(redis: RedisServer, rooms: int) -> float:
    """Commands per second that Redis serves to an idle pair of workers holding ``rooms`` rooms."""
    env = {"FASTERAPI_BACKEND": redis.url, "FASTERAPI_PRESENCE_TTL": str(TTL)}
    with run_gunicorn("tests.apps.fault_app:app", workers=WORKERS, env=env) as server:
        asyncio.run(occupy(server, rooms // WORKERS))
        # Every worker has beaten once since its rooms were written: upkeep is in steady state.
        wait_until(lambda: redis.admin.zcard("fasterapi:presence-workers") == WORKERS, 10, "both heartbeats")
        before, started = commands(redis), time.monotonic()
        time.sleep(WINDOW)  # the measured interval itself
        return (commands(redis) - before - 1) / (time.monotonic() - started)


def test_idle_presence_upkeep_does_not_grow_with_rooms(redis_server: RedisServer) -> None:
    few = idle_rate(redis_server, 20)
    redis_server.admin.flushall()
    many = idle_rate(redis_server, 2000)
    print(f"\nidle worker pair: {few:.1f} Redis commands/s with 20 rooms, {many:.1f}/s with 2,000")
    assert many <= 2 * max(few, 1.0), (few, many)
