"""FasterWorker under gunicorn: graceful shutdown closes sockets with 1001 over a jittered
window, removes the worker's presence, ends within the graceful timeout; clients that
reconnect elsewhere keep receiving."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.cluster.processes import run_gunicorn, wait_until
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)

WORKER = "FasterAPI.server.worker.FasterWorker"
DRAIN_WINDOW = 1.5
GRACEFUL_TIMEOUT = 10


def presence(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/presence/lobby", timeout=10) as response:
        size: int = json.loads(response.read())["size"]
        return size


async def join(url: str, count: int) -> list[ClientConnection]:
    async def one() -> ClientConnection:
        ws = await connect(f"{url}/ws/lobby", open_timeout=10)
        json.loads(await asyncio.wait_for(ws.recv(), 10))  # the hello
        return ws

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_time(ws: ClientConnection) -> tuple[int | None, float]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 30)
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), time.monotonic()


def test_sigterm_drains_with_1001_over_a_window_and_clients_move_on(redis_server: RedisServer) -> None:
    env = {
        "FASTERAPI_BACKEND": redis_server.url,
        "FASTERAPI_DRAIN_WINDOW": str(DRAIN_WINDOW),
        "FASTERAPI_PRESENCE_TTL": "120",  # so presence can only drop by removal, not by expiry
    }
    args = ["--graceful-timeout", str(GRACEFUL_TIMEOUT)]
    with run_gunicorn("tests.apps.cluster_app:app", workers=2, env=env, worker_class=WORKER, extra_args=args) as a:
        with run_gunicorn("tests.apps.cluster_app:app", workers=2, env=env, worker_class=WORKER) as b:

            async def scenario() -> dict[str, Any]:
                leaving = await join(a.ws_url, 20)
                staying = await join(b.ws_url, 5)
                wait_until(lambda: presence(b.base_url) == 25, 10, "presence of all 25 clients")
                closes = [asyncio.ensure_future(close_time(ws)) for ws in leaving]
                signalled = time.monotonic()
                a.process.send_signal(signal.SIGTERM)
                results = await asyncio.gather(*closes)
                codes = {code for code, _ in results}
                times = [moment - signalled for _, moment in results]
                # The master (and its workers) finish within the graceful timeout.
                exit_code = await asyncio.to_thread(a.process.wait, GRACEFUL_TIMEOUT + 5)
                exited_after = time.monotonic() - signalled
                # The worker's presence entries were removed at shutdown, not left to expire.
                await asyncio.to_thread(wait_until, lambda: presence(b.base_url) == 5, 10, "presence to drop to 5")
                # The clients reconnect to the other instance and keep receiving.
                moved = await join(b.ws_url, 20)
                everyone = staying + moved
                await staying[0].send("say:after the move")
                got = [await asyncio.wait_for(ws.recv(), 10) for ws in everyone]
                await asyncio.gather(*(ws.close() for ws in everyone))
                return {"codes": codes, "times": times, "exit": exit_code, "exited_after": exited_after, "got": got}

            result = asyncio.run(scenario())
    assert result["codes"] == {1001}
    spread = max(result["times"]) - min(result["times"])
    assert spread > DRAIN_WINDOW / 5, f"closes were not spread out: {sorted(result['times'])}"
    assert max(result["times"]) < DRAIN_WINDOW + 2.0
    assert result["exit"] == 0
    assert result["exited_after"] < GRACEFUL_TIMEOUT
    assert result["got"] == ["after the move"] * 25
