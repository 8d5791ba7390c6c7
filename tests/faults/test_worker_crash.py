"""A worker dies by SIGKILL: no cleanup runs, gunicorn replaces it, the others carry on.

The dead worker's presence entries cannot be removed by anyone; they must expire on their
own within ``presence_ttl`` (2 s here) of the last refresh, so the room's size is right again
within about 2x the TTL of the crash.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import time

import pytest

from tests.cluster.processes import Gunicorn, run_gunicorn, wait_until
from tests.faults.harness import Client, ahttp, close_all, connect_spread, measure_recovery
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(90)

WORKERS = 4
TTL = 2.0


def test_killed_worker_is_replaced_and_its_presence_expires(redis_server: RedisServer) -> None:
    env = {"FASTERAPI_BACKEND": redis_server.url, "FASTERAPI_PRESENCE_TTL": str(TTL)}
    with run_gunicorn("tests.apps.fault_app:app", workers=WORKERS, env=env) as server:
        asyncio.run(crash(server))


async def room_size(server: Gunicorn) -> int:
    size: int = (await ahttp("GET", f"{server.base_url}/presence/lobby")).body["size"]
    return size


async def crash(server: Gunicorn) -> None:
    clients = await connect_spread(server.ws_url, ("lobby",), WORKERS, min_clients=24)
    extra: list[Client] = []
    try:
        original = {c.pid for c in clients}
        await measure_recovery(clients, server.base_url, time.monotonic())
        assert await room_size(server) == len(clients)

        victim = collections.Counter(c.pid for c in clients).most_common(1)[0][0]
        doomed = [c for c in clients if c.pid == victim]
        survivors = [c for c in clients if c.pid != victim]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()

        # The dead worker's clients lose their connection; everyone else keeps receiving.
        await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in doomed)), 10)
        still = await measure_recovery(survivors, server.base_url, killed)
        assert not any(c.closed.is_set() for c in survivors)

        # Its presence entries expire: the room's size drops to the true count.
        while (size := await room_size(server)) != len(survivors):
            assert time.monotonic() - killed < 4 * TTL, f"room size still {size}, {len(survivors)} connected"
            await asyncio.sleep(0.05)
        expired = time.monotonic() - killed
        assert expired <= 2 * TTL + 0.5, expired

        # gunicorn booted a replacement, which serves requests and clients like the others.
        booted: set[int] = set()

        def replacement_booted() -> bool:
            booted.update(int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", server.log()))
            return bool(booted - original - {victim})

        wait_until(replacement_booted, 30, "a replacement worker")
        (new_pid,) = booted - original - {victim}
        assert f"(pid:{victim})" in server.log()  # the arbiter says which worker died
        wait_until(lambda: f"[{new_pid}] [INFO] Application startup complete" in server.log(), 30, "its startup")
        # Requests and connections go to whichever worker accepts first: ask until it answers.
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while new_pid not in seen:
            assert time.monotonic() < deadline, f"the new worker {new_pid} never answered; saw {seen}"
            seen.add((await ahttp("GET", f"{server.base_url}/worker")).body["pid"])
        while not any(c.pid == new_pid for c in extra):
            assert time.monotonic() < deadline, "no connection reached the new worker"
            extra.append(await Client.connect(f"{server.ws_url}/ws/lobby"))
        await measure_recovery([*survivors, *extra], server.base_url, time.monotonic())
        print(
            f"\nkilled worker {victim} ({len(doomed)} clients); the other {len(survivors)} kept receiving "
            f"(probe {still:.2f}s after the kill); presence right after {expired:.2f}s (ttl {TTL:g}s); "
            f"replacement worker {new_pid}"
        )
    finally:
        await close_all([*clients, *extra])
