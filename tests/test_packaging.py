"""The package as users get it: ``python -m build``, ``twine check``, then the wheel (not the
checkout) installed with its extras into a fresh virtualenv, serving and publishing.

Needs the package index (or pip's cache) for the build backend and the dependencies. Set
``PIP_CONSTRAINT`` to install the wheel's dependencies at chosen versions (``make
test-matrix`` does, for its lowest cells).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.cluster.processes import LocalServer, wait_until
from tests.deploy.stack import http, stop_process_group
from tests.redis_server import RedisServer
from tests.servers import die_with_parent, free_port

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
TIMEOUT = 20

TINY_APP = """\
import FasterAPI
from FasterAPI import Faster, WebSocket, WebSocketDisconnect

app = Faster()


@app.get("/healthz")
async def healthz():
    return {
        "version": FasterAPI.__version__,
        "package": FasterAPI.__file__,
        "backend": type(app.hub.backend).__name__,
        "sinks": sorted({type(c.sink).__name__ for c in app.hub.connections.values()}),
    }


@app.websocket("/ws/{room}")
async def room(ws: WebSocket, room: str):
    await ws.accept()
    await ws.join(room)
    await ws.send_text("joined")
    try:
        async for text in ws.iter_text():
            await app.broadcast(room, "echo:" + text)
    except WebSocketDisconnect:
        pass
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the built wheel with its ``redis`` and ``server`` extras."""
    work = tmp_path_factory.mktemp("packaging")
    dist = work / "dist"
    # The sdist first, then the wheel built from it: a file missing from the sdist fails here.
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=work)
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    assert [p.name for p in wheels] == [f"fasterapi_hub-{VERSION}-py3-none-any.whl"]
    assert [p.name for p in sdists] == [f"fasterapi_hub-{VERSION}.tar.gz"]
    run([sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)], cwd=work)

    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheels[0]}[redis,server]"], cwd=work)
    (work / "app").mkdir()
    (work / "app" / "tinyapp.py").write_text(TINY_APP)
    return venv


def run(command: Sequence[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command[:4]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def clean_env() -> dict[str, str]:
    """This environment without anything that would let the checkout or our venv leak in."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "FASTERAPI_BACKEND", "PROMETHEUS_MULTIPROC_DIR", "PYTHONHOME")
    return {key: value for key, value in os.environ.items() if key not in drop}


@contextlib.contextmanager
def fasterapi_run(venv: Path, *args: str) -> Iterator[tuple[LocalServer, Path]]:
    """``fasterapi run tinyapp:app`` from the venv, in the app's directory; always stopped."""
    port = free_port()
    app_dir = venv.parent / "app"
    log_path = venv.parent / f"run-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(venv / "bin" / "fasterapi"), "run", "tinyapp:app", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=app_dir,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    server = LocalServer(process, port)
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"fasterapi run exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                return http(f"{server.base_url}/healthz", timeout=2).status == 200
            except OSError:
                return False

        wait_until(healthy, TIMEOUT, "fasterapi run to serve /healthz")
        yield server, log_path
    finally:
        stop_process_group(process, signal.SIGTERM)


def test_the_wheel_installs_and_reports_its_version(installed: Path) -> None:
    result = run(
        [str(installed / "bin" / "python"), "-c", "import FasterAPI; print(FasterAPI.__version__)"], cwd=installed
    )
    assert result.stdout.strip() == VERSION


def test_the_wheel_holds_the_realtime_browser_client(installed: Path) -> None:
    """The installed client.js is the source tree's, byte for byte (what the app serves)."""
    code = (
        "import hashlib\n"
        "from importlib import resources\n"
        "body = resources.files('FasterAPI.realtime').joinpath('client.js').read_bytes()\n"
        "print(len(body), hashlib.sha256(body).hexdigest())"
    )
    result = run([str(installed / "bin" / "python"), "-c", code], cwd=installed)
    source = (ROOT / "FasterAPI" / "realtime" / "client.js").read_bytes()
    assert result.stdout.split() == [str(len(source)), hashlib.sha256(source).hexdigest()]


def test_fasterapi_run_from_the_wheel_serves_a_websocket_round_trip(installed: Path) -> None:
    with fasterapi_run(installed) as (server, log_path):

        async def scenario() -> dict[str, object]:
            async with connect(f"{server.ws_url}/ws/lobby", open_timeout=TIMEOUT) as ws:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "joined"
                await ws.send("hello")
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "echo:hello"
                health: dict[str, object] = (await asyncio.to_thread(http, f"{server.base_url}/healthz")).json()
                return health

        health = asyncio.run(scenario())
        output = log_path.read_text()
    assert health["version"] == VERSION
    assert str(health["package"]).startswith(str(installed))  # the installed wheel, not the checkout
    assert health["backend"] == "MemoryBackend"
    assert health["sinks"] == ["FasterWebSocketProtocol"]  # our protocol, frame-once writes
    assert "frame-once WebSocket delivery is off" not in output


def test_fasterapi_publish_from_the_wheel_reaches_a_client(installed: Path, redis_server: RedisServer) -> None:
    # publish needs a backend shared with the server: memory:// only reaches its own process.
    with fasterapi_run(installed, "--backend", redis_server.url) as (server, _):

        async def scenario() -> str:
            async with connect(f"{server.ws_url}/ws/news", open_timeout=TIMEOUT) as ws:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "joined"
                command = [str(installed / "bin" / "fasterapi"), "publish", "--backend", redis_server.url]
                result = await asyncio.to_thread(run, [*command, "news", "from a shell"], installed.parent, TIMEOUT)
                assert "published to room 'news'" in result.stdout
                return str(await asyncio.wait_for(ws.recv(), TIMEOUT))

        assert asyncio.run(scenario()) == "from a shell"


def test_the_wheel_carries_the_documentation_viewers(installed: Path) -> None:
    """/docs and /redoc from the installed wheel: the vendored files are package data."""
    with fasterapi_run(installed) as (server, _):
        docs = http(f"{server.base_url}/docs")
        redoc = http(f"{server.base_url}/redoc")
        assets = re.findall(r'(?:src|href)="([^"]+)"', docs.body.decode() + redoc.body.decode())
        served = {asset: http(f"{server.base_url}{asset}") for asset in assets}
    assert docs.status == 200 and redoc.status == 200
    assert len(assets) == 3
    manifest = json.loads((ROOT / "FasterAPI" / "static" / "vendor" / "manifest.json").read_text())
    for asset, answer in served.items():
        package, name = asset.split("?")[0].split("/")[-2:]
        assert answer.status == 200, asset
        assert hashlib.sha256(answer.body).hexdigest() == manifest[package]["files"][name]
