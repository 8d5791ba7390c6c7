"""The demo hub's own behaviour: validation, and a Redis outage that handlers survive and report."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from examples.demo_hub import app
from FasterAPI.testclient import TestClient
from tests.browser_script import BrowserScript, require_browser_tools
from tests.cluster.processes import wait_until
from tests.deploy.stack import ROOT, fasterapi_run, http
from tests.network_proxy import NetworkProxy
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)

ARTIFACTS = ROOT / "test-artifacts"

TIMEOUT = 15


def test_page_and_validation() -> None:
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'id="members"' in page.text
        assert client.post("/rooms/r/messages", json={"text": "x" * 2001}).status_code == 422
        assert client.post("/rooms/r/messages", json={"name": "no text"}).status_code == 422
        assert client.post("/rooms/r%01/messages", json={"text": "hi"}).status_code == 422
        answer = client.post("/rooms/r/messages", json={"text": "hi", "name": "ann"})
        assert answer.status_code == 202 and answer.json()["room"] == "r"
        assert client.get("/rooms/r").json()["members"] == 0


def test_realtime_rooms() -> None:
    """The page's endpoint: the client is served, rooms join with who and where, publishes broadcast."""
    with TestClient(app) as client:
        page = client.get("/").text
        assert 'from "/rt/client.js"' in page and 'id="reconnects"' in page and 'id="recovered"' in page
        script = client.get("/rt/client.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        with client.websocket_connect("/rt?name=%20Ann%20%20Lee%20") as ws:
            welcome = ws.receive_json(timeout=TIMEOUT)
            assert welcome["op"] == "welcome"
            ws.send_json({"op": "join", "id": 1, "room": "rt-lobby"})
            joined = ws.receive_json(timeout=TIMEOUT)
            assert joined["op"] == "joined" and joined["position"]["offset"] == 0  # history is on
            me = joined["presence"][welcome["connection"]]
            assert me["name"] == "Ann Lee" and me["pid"] > 0 and me["host"]

            ws.send_json({"op": "publish", "id": 2, "room": "rt-lobby", "data": {"text": "  hi  "}})
            replies = [ws.receive_json(timeout=TIMEOUT) for _ in range(2)]
            ack = next(r for r in replies if r["op"] == "ack")
            message = next(r for r in replies if r["op"] == "message")
            assert ack["id"] == 2 and message["offset"] == ack["position"]["offset"] == 1
            assert message["data"]["text"] == "hi" and message["data"]["name"] == "Ann Lee"
            assert message["data"]["sender"] == {"pid": me["pid"], "host": me["host"]}

            ws.send_json({"op": "publish", "id": 3, "room": "rt-lobby", "data": {"text": "   "}})
            assert ws.receive_json(timeout=TIMEOUT)["code"] == "publish_refused"
            ws.send_json({"op": "publish", "id": 4, "room": "rt-lobby", "data": {"text": "x" * 2001}})
            assert ws.receive_json(timeout=TIMEOUT)["code"] == "invalid_payload"
            ws.send_json({"op": "join", "id": 5, "room": "not:declared"})
            assert ws.receive_json(timeout=TIMEOUT)["code"] == "unknown_room"
            # An HTTP post reaches the realtime members of the room too.
            assert client.post("/rooms/rt-lobby/messages", json={"text": "from http"}).status_code == 202
            assert ws.receive_json(timeout=TIMEOUT)["data"]["text"] == "from http"


def test_socket_events() -> None:
    with TestClient(app) as client, client.websocket_connect("/ws/ev?name=%20Ann%20%20Lee%20") as ws:
        hello = ws.receive_json(timeout=TIMEOUT)
        assert hello["type"] == "hello" and hello["name"] == "Ann Lee" and hello["pid"] > 0 and hello["host"]
        assert ws.receive_json(timeout=TIMEOUT) == {
            "type": "presence",
            "event": "joined",
            "name": "Ann Lee",
            "members": 1,
        }
        ws.send_text("   ")  # blank: ignored
        ws.send_text("hi there")
        message = ws.receive_json(timeout=TIMEOUT)
        assert message["type"] == "message" and message["text"] == "hi there" and message["name"] == "Ann Lee"
        assert message["sender"] == {"pid": hello["pid"], "host": hello["host"]}


async def next_event(ws: ClientConnection, kind: str) -> dict[str, Any]:
    async def wanted() -> dict[str, Any]:
        while True:
            event: dict[str, Any] = json.loads(await ws.recv())
            if event["type"] == kind:
                return event

    return await asyncio.wait_for(wanted(), TIMEOUT)


def test_redis_outage_is_reported_not_fatal(redis_server: RedisServer) -> None:
    with fasterapi_run("--backend", redis_server.url) as served:
        asyncio.run(_outage(served.base_url, served.ws_url, redis_server))
        assert "Traceback" not in served.output(), served.output()


async def _outage(base_url: str, ws_url: str, redis: RedisServer) -> None:
    async with connect(f"{ws_url}/ws/outage?name=ann", open_timeout=TIMEOUT) as ws:
        await next_event(ws, "hello")
        await next_event(ws, "presence")

        redis.kill()
        unhealthy = lambda: http(f"{base_url}/healthz").status == 503  # noqa: E731
        await asyncio.to_thread(wait_until, unhealthy, TIMEOUT, "/healthz to turn 503")
        assert http(f"{base_url}/healthz").json()["status"] == "unavailable"
        posted = http(f"{base_url}/rooms/outage/messages", method="POST", json_body={"text": "lost"})
        assert posted.status == 503 and "relay is down" in posted.json()["detail"]
        assert posted.headers["retry-after"] == "2"
        await ws.send("during the outage")
        assert "relay is down" in (await next_event(ws, "error"))["detail"]

        redis.start()
        await asyncio.to_thread(
            wait_until, lambda: http(f"{base_url}/healthz").status == 200, TIMEOUT, "/healthz to recover"
        )
        # The same socket works again, and presence was restored in the fresh Redis.
        await ws.send("after the outage")
        assert (await next_event(ws, "message"))["text"] == "after the outage"
        assert http(f"{base_url}/rooms/outage").json()["members"] == 1


def test_page_reconnects_and_catches_up() -> None:
    """`make run`'s hub (memory backend) in Chromium, through a network that drops for 2 s:
    the page reconnects, resumes, shows every message once, and counts it."""
    require_browser_tools()
    ARTIFACTS.mkdir(exist_ok=True)
    with fasterapi_run() as served:
        shown = asyncio.run(_drop_the_network(served.base_url, served.port))
        assert "Traceback" not in served.output(), served.output()
    assert shown["texts"] == [f"m{n}" for n in range(1, 9)], shown["texts"]
    assert shown["status"] == "Connected" and shown["worker"].startswith("pid ")
    assert int(shown["reconnects"]) >= 1 and int(shown["recovered"]) >= 1 and shown["resets"] == "0"
    assert "Reconnected: caught up on what was missed" in shown["system"]
    assert shown["pageErrors"] == []


async def _drop_the_network(base_url: str, port: int) -> dict[str, Any]:
    room = f"resume-{secrets.token_hex(3)}"

    async def post(n: int) -> None:
        url = f"{base_url}/rooms/{room}/messages"
        answer = await asyncio.to_thread(http, url, method="POST", json_body={"text": f"m{n}", "name": "dave"})
        assert answer.status == 202

    async with (
        NetworkProxy(port) as proxy,
        BrowserScript("demo_resume.mjs", proxy.url, room, "8", str(ARTIFACTS)) as page,
    ):
        await page.wait_for(60, event="ready")
        for n in range(1, 4):
            await post(n)
        outage = asyncio.ensure_future(proxy.cut(2.0))
        for n in range(4, 7):  # while the page is cut off: it gets them when it resumes
            await post(n)
        await outage
        for n in range(7, 9):
            await post(n)
        await page.send("finish")
        return await page.wait_for(90, event="done")
