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
import secrets
from typing import Any

import pytest

from FasterAPI.pubsub import Publisher
from tests.apps.realtime_feed import HISTORY
from tests.browser_script import BrowserScript, require_browser_tools
from tests.cluster.processes import run_gunicorn
from tests.network_proxy import NetworkProxy
from tests.redis_server import RedisServer
from tests.servers import REPO_ROOT

pytestmark = pytest.mark.timeout(300)

ARTIFACTS = REPO_ROOT / "test-artifacts"

TOTAL = 3000
RATE = 100  # messages per second
PING_INTERVAL = 1.0
#: The outages, in order: four cuts of 3 s and one blackhole of 6 s.
OUTAGES = [("cut", 3.0), ("cut", 3.0), ("blackhole", 6.0), ("cut", 3.0), ("cut", 3.0)]
#: Connected time between outages, so that each one hits a live connection.
CALM = 1.5
#: Waits on the page: generous, as reconnect backoff alone may reach 20 s after a few outages.
PAGE_TIMEOUT = 200


def connected(page: BrowserScript) -> bool:
    state = page.last("state")
    return state is not None and state["state"] == "connected"


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


async def outages(proxy: NetworkProxy, page: BrowserScript) -> list[float]:
    """Each outage once the page is connected; the seconds the page took to notice the blackhole."""
    noticed: list[float] = []
    loop = asyncio.get_running_loop()
    for kind, seconds in OUTAGES:
        if not connected(page):
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
    if not connected(page):
        await page.wait_for(PAGE_TIMEOUT, event="state", state="connected")
    return noticed


def test_page_keeps_every_message_through_cuts_and_a_blackhole(redis_server: RedisServer) -> None:
    require_browser_tools()
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"FASTERAPI_BACKEND": redis_server.url, "FEED_PING_INTERVAL": str(PING_INTERVAL)}
    with run_gunicorn("tests.apps.realtime_feed:app", workers=2, env=env) as server:
        result, noticed, proxy = asyncio.run(_scenario(server.port, redis_server.url))

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


async def _scenario(app_port: int, redis_url: str) -> tuple[dict[str, Any], list[float], dict[str, int]]:
    room = f"feed:{secrets.token_hex(4)}"
    async with (
        NetworkProxy(app_port) as proxy,
        BrowserScript(
            "realtime_feed.mjs",
            proxy.url,
            room,
            str(TOTAL),
            str(ARTIFACTS),
            env={"FEED_RUN_TIMEOUT_MS": str(PAGE_TIMEOUT * 1000)},
        ) as page,
    ):
        await page.wait_for(60, event="ready")
        publishing = asyncio.ensure_future(publish(redis_url, room))
        try:
            noticed = await outages(proxy, page)
            await publishing
        finally:
            publishing.cancel()
        await page.send("finish")
        done = await page.wait_for(PAGE_TIMEOUT + 30, event="done")
        return done, noticed, {"accepted": proxy.connections_accepted, "reset": proxy.connections_reset}
