"""The ``fasterapi`` command, run as a user runs it: ``.venv/bin/fasterapi run`` and ``publish``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.cluster.processes import wait_until
from tests.deploy.stack import FASTERAPI, fasterapi_run, http
from tests.redis_server import RedisServer
from tests.servers import free_port

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 20


def publish(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "FASTERAPI_BACKEND"}
    return subprocess.run(
        [FASTERAPI, "publish", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


async def join(url: str) -> tuple[Any, dict[str, Any]]:
    """Connect to the demo room socket; returns the socket and its hello."""
    ws = await connect(url, open_timeout=TIMEOUT)
    hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert hello["type"] == "hello"
    return ws, hello


async def receive_until(ws: Any, predicate: Any) -> Any:
    """The first frame (as str) for which ``predicate`` is true, within TIMEOUT."""

    async def scan() -> Any:
        while True:
            frame = await ws.recv()
            if predicate(frame):
                return frame

    return await asyncio.wait_for(scan(), TIMEOUT)


def test_help() -> None:
    result = subprocess.run([FASTERAPI, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0
    assert "run" in result.stdout and "publish" in result.stdout
    for command in ("run", "publish"):
        result = subprocess.run([FASTERAPI, command, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
        assert result.returncode == 0 and "--backend" in result.stdout


def test_run_one_worker_is_uvicorn_and_publish_reaches_it(redis_server: RedisServer) -> None:
    with fasterapi_run("--backend", redis_server.url) as served:
        health = http(f"{served.base_url}/healthz").json()
        assert health["status"] == "ok" and health["backend"] == "RedisBackend"
        # Plain uvicorn, in the fasterapi process itself.
        assert health["pid"] == served.process.pid
        assert "Uvicorn running on" in served.output() and "gunicorn" not in served.output()

        async def scenario() -> None:
            ws, hello = await join(f"{served.ws_url}/ws/cli-room?name=tester")
            try:
                assert hello["pid"] == served.process.pid
                result = await asyncio.to_thread(publish, "--backend", redis_server.url, "cli-room", "hi from a shell")
                assert result.returncode == 0, result.stderr
                assert "published" in result.stdout
                assert await receive_until(ws, lambda frame: frame == "hi from a shell")
            finally:
                await ws.close()

        asyncio.run(scenario())


def test_run_two_workers_is_gunicorn_and_publish_json_reaches_all(redis_server: RedisServer) -> None:
    with fasterapi_run("--workers", "2", "--backend", redis_server.url) as served:
        output = served.output()
        assert "Using worker: FasterAPI.server.worker.FasterWorker" in output
        wait_until(lambda: served.output().count("Booting worker") >= 2, TIMEOUT, "two workers")
        # fasterapi exec'ed gunicorn: the master is the process we started; workers are others.
        assert f"Listening at: http://127.0.0.1:{served.port} ({served.process.pid})" in served.output()

        async def scenario() -> None:
            sockets = [await join(f"{served.ws_url}/ws/cli-json?name=n{n}") for n in range(4)]
            try:
                for _, hello in sockets:
                    assert hello["pid"] != served.process.pid
                payload = {"type": "notice", "text": "deploy at 5pm", "n": 1}
                result = await asyncio.to_thread(
                    publish, "--backend", redis_server.url, "--json", "cli-json", json.dumps(payload)
                )
                assert result.returncode == 0, result.stderr

                def is_notice(frame: Any) -> bool:
                    return isinstance(frame, str) and json.loads(frame).get("type") == "notice"

                got = await asyncio.gather(*(receive_until(ws, is_notice) for ws, _ in sockets))
                assert [json.loads(frame) for frame in got] == [payload] * len(sockets)
            finally:
                await asyncio.gather(*(ws.close() for ws, _ in sockets), return_exceptions=True)

        asyncio.run(scenario())


def test_publish_with_redis_down_exits_1() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = publish("--backend", url, "lobby", "hello?")
    assert result.returncode == 1
    assert f"error: the backend at {url} is unavailable" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--backend", "memory://", "lobby", "x"), "publish needs a shared backend"),
        (("--backend", "kafka://host", "lobby", "x"), "unsupported backend URL"),
        (("--backend", "redis://127.0.0.1:1/0", "--json", "lobby", "{bad"), "not valid JSON"),
        (("lobby", "x"), "--backend is required"),
    ],
)
def test_publish_usage_errors(args: Sequence[str], message: str) -> None:
    result = publish(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_run_rejects_a_bad_app_path() -> None:
    result = subprocess.run([FASTERAPI, "run", "examples.demo_hub"], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2 and "MODULE:APP" in result.stderr
