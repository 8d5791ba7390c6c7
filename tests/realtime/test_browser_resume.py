"""The browser client in a real headless Chromium keeps every message through a bad network.

Two gunicorn workers on a real Redis with room history serve tests/apps/realtime_feed.py; the
page reaches them through a TCP proxy this test controls (tests/network_proxy.py). A Publisher
sends 3,000 messages at 100 msg/s to the page's room while the proxy cuts the network four
times for 3 s and blackholes it once for 6 s. The page must end with all 3,000, in order, each
once, without a reset: the client noticed each outage (the blackhole by missed pings, within
two ping intervals), reconnected, and resumed from the last offset it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from FasterAPI.pubsub import Publisher
from tests.apps.realtime_feed import HISTORY
from tests.cluster.processes import run_gunicorn
from tests.network_proxy import NetworkProxy
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "deploy" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"

TOTAL = 3000
RATE = 100  # messages per second
PING_INTERVAL = 1.0
#: The outages, in order: four cuts of 3 s and one blackhole of 6 s.
OUTAGES = [("cut", 3.0), ("cut", 3.0), ("blackhole", 6.0), ("cut", 3.0), ("cut", 3.0)]
#: Connected time between outages, so that each one hits a live connection.
CALM = 1.5
#: Waits on the page: generous, as reconnect backoff alone may reach 20 s after a few outages.
PAGE_TIMEOUT = 200


def _require_browser_tools() -> str:
    node = shutil.which("node")
    if node is None or not os.access(CHROMIUM, os.X_OK):
        pytest.skip("node and chromium are needed (run scripts/system-packages.sh)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("playwright-core is not installed (run `make browser-deps`)")
    return node


class PageEvents:
    """The page's events (JSON lines from tests/deploy/browser/realtime_feed.mjs) as they come."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.seen: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while line := await self.stream.readline():
            event = json.loads(line)
            event["received_at"] = asyncio.get_running_loop().time()
            async with self._changed:
                self.seen.append(event)
                self._changed.notify_all()

    async def wait_for(self, timeout: float, **fields: Any) -> dict[str, Any]:
        """The first event from now on whose fields have these values."""
        start = len(self.seen)

        def found() -> dict[str, Any] | None:
            return next((e for e in self.seen[start:] if fields.items() <= e.items()), None)

        async def wait() -> dict[str, Any]:
            async with self._changed:
                await self._changed.wait_for(lambda: found() is not None or self.task.done())
            event = found()
            if event is None:
                raise AssertionError(f"the page exited before {fields}; it said {self.summary(5)}")
            return event

        return await asyncio.wait_for(wait(), timeout)

    def summary(self, last: int = 12) -> list[dict[str, Any]]:
        """The last events, without their long lists."""
        return [{k: v for k, v in e.items() if k not in ("received", "offsets")} for e in self.seen[-last:]]

    def last_state(self) -> str | None:
        states = [e["state"] for e in self.seen if e["event"] == "state"]
        return states[-1] if states else None


async def publish(redis_url: str, room: str) -> None:
    """TOTAL messages {"n": 1..TOTAL}, at RATE per second on a fixed schedule."""
    loop = asyncio.get_running_loop()
    async with Publisher(redis_url, history=HISTORY) as publisher:
        start = loop.time()
        for n in range(1, TOTAL + 1):
            await publisher.broadcast(room, {"n": n})
            ahead = start + n / RATE - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the publisher, not waiting for a result


async def outages(proxy: NetworkProxy, page: PageEvents) -> list[float]:
    """Each outage once the page is connected; the seconds the page took to notice the blackhole."""
    noticed: list[float] = []
    loop = asyncio.get_running_loop()
    for kind, seconds in OUTAGES:
        if page.last_state() != "connected":
            await page.wait_for(PAGE_TIMEOUT, event="state", state="connected")
        await asyncio.sleep(CALM)  # the scenario's pacing: let the connection carry messages a while
        if kind == "cut":
            await proxy.cut(seconds)
        else:
            started = loop.time()
            dropped = asyncio.ensure_future(page.wait_for(seconds + PAGE_TIMEOUT, event="state", state="disconnected"))
            await proxy.blackhole(seconds)
            noticed.append((await dropped)["received_at"] - started)
    # Back after the last one too: the page's count of reconnects covers every outage.
    if page.last_state() != "connected":
        await page.wait_for(PAGE_TIMEOUT, event="state", state="connected")
    return noticed


def test_page_keeps_every_message_through_cuts_and_a_blackhole(redis_server: RedisServer) -> None:
    node = _require_browser_tools()
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"FASTERAPI_BACKEND": redis_server.url, "FEED_PING_INTERVAL": str(PING_INTERVAL)}
    with run_gunicorn("tests.apps.realtime_feed:app", workers=2, env=env) as server:
        result, noticed, proxy = asyncio.run(_scenario(node, server.port, redis_server.url))

    # Chromium logs each connect the proxy refused; anything else is a fault of the page.
    errors = [e for e in result["consoleErrors"] if not e.startswith("WebSocket connection to ")]
    assert errors == []
    assert result["resets"] == 0 and result["left"] == []
    received = result["received"]
    duplicates = len(received) - len(set(received))
    missing = sorted(set(range(1, TOTAL + 1)) - set(received))
    assert duplicates == 0 and missing == [], f"{duplicates} duplicates; missing {missing[:20]}..."
    assert received == list(range(1, TOTAL + 1)), "out of order"
    # One epoch, consecutive offsets: what the page saw is the room's history, exactly.
    offsets = result["offsets"]
    assert len(result["epochs"]) == 1
    assert offsets == list(range(offsets[0], offsets[0] + TOTAL))
    # Every outage was seen and ended in a rejoin that recovered.
    assert result["reconnects"] >= len(OUTAGES), result["reconnects"]
    rejoins = [join for join in result["joins"] if join["rejoin"]]
    assert len(rejoins) >= len(OUTAGES) and all(join["recovered"] for join in rejoins), result["joins"]
    # The blackhole was noticed by missed pings: two intervals of silence (plus scheduling slack).
    assert noticed[0] <= 2 * PING_INTERVAL + 3.0, noticed
    assert proxy["reset"] > 0
    print(f"reconnects={result['reconnects']} blackhole noticed after {noticed[0]:.2f} s; proxy {proxy}")


async def _scenario(node: str, app_port: int, redis_url: str) -> tuple[dict[str, Any], list[float], dict[str, int]]:
    room = f"feed:{secrets.token_hex(4)}"
    async with NetworkProxy(app_port) as proxy:
        process = await asyncio.create_subprocess_exec(
            node,
            str(BROWSER_DIR / "realtime_feed.mjs"),
            proxy.url,
            room,
            str(TOTAL),
            str(ARTIFACTS),
            cwd=BROWSER_DIR,
            env={**os.environ, "CHROMIUM": CHROMIUM, "FEED_RUN_TIMEOUT_MS": str(PAGE_TIMEOUT * 1000)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own group: the browser it starts goes down with it
            limit=2**22,  # the final line holds every message the page got
        )
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        page = PageEvents(process.stdout)
        stderr = asyncio.ensure_future(process.stderr.read())
        try:
            try:
                await page.wait_for(60, event="ready")
                publishing = asyncio.ensure_future(publish(redis_url, room))
                noticed = await outages(proxy, page)
                await publishing
                process.stdin.write(b"finish\n")
                await process.stdin.drain()
                done = await page.wait_for(PAGE_TIMEOUT + 30, event="done")
            except (AssertionError, TimeoutError) as error:
                said = await _ended(process, stderr)
                raise AssertionError(f"{error}\npage events: {page.summary()}\nnode: {said}") from error
            return done, noticed, {"accepted": proxy.connections_accepted, "reset": proxy.connections_reset}
        finally:
            await _ended(process, stderr)
            page.task.cancel()


async def _ended(process: asyncio.subprocess.Process, stderr: asyncio.Future[bytes]) -> str:
    """Stop node and its browser (their whole process group); what node wrote on stderr."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # anything of the group left behind
    try:
        return (await asyncio.wait_for(asyncio.shield(stderr), 5)).decode(errors="replace")
    except TimeoutError:
        return "(no stderr)"
