"""The compose stack without containers: clients through nginx meet across two app instances."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.cluster.processes import wait_until
from tests.deploy.stack import Stack, http, metric_value

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 15
CLIENTS = 8  # even: least_conn then splits them evenly, and HTTP requests alternate

METRIC_NAMES = (
    "fasterapi_connections",
    "fasterapi_rooms",
    "fasterapi_messages_published_total",
    "fasterapi_messages_delivered_total",
    "fasterapi_messages_dropped_total",
    "fasterapi_slow_consumer_closes_total",
    "fasterapi_invalid_envelopes_total",
    "fasterapi_backend_reconnects_total",
    "fasterapi_backend_up",
)


async def next_event(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next event of type ``kind`` (skipping others, e.g. presence), within TIMEOUT."""

    async def wanted() -> dict[str, Any]:
        while True:
            event: dict[str, Any] = json.loads(await ws.recv())
            if event["type"] == kind:
                return event

    return await asyncio.wait_for(wanted(), TIMEOUT)


async def messages(ws: ClientConnection, count: int) -> list[str]:
    return [(await next_event(ws, "message"))["text"] for _ in range(count)]


def test_healthz_through_nginx(stack: Stack) -> None:
    answered = set()
    for _ in range(4):
        response = http(f"{stack.base_url}/healthz")
        assert response.status == 200, response.text
        body = response.json()
        assert body["status"] == "ok" and body["backend"] == "RedisBackend"
        answered.add(stack.instance_of_upstream(response.headers["x-upstream"]).name)
        assert stack.instance_of_pid(body["pid"]).name in answered
    # No connections are open, so least_conn takes turns.
    assert answered == {"app1", "app2"}


def test_rooms_across_instances_through_nginx(stack: Stack) -> None:
    asyncio.run(_rooms_across_instances(stack))


async def _rooms_across_instances(stack: Stack) -> None:
    room = f"stack-{secrets.token_hex(4)}"
    clients: list[ClientConnection] = []
    try:
        hellos = []
        for n in range(CLIENTS):
            ws = await connect(f"{stack.ws_url}/ws/{room}?name=client{n}", open_timeout=TIMEOUT)
            clients.append(ws)
            hellos.append(await next_event(ws, "hello"))
        placed = [stack.instance_of_pid(hello["pid"]).name for hello in hellos]
        assert placed.count("app1") == placed.count("app2") == CLIENTS // 2, placed

        # Presence is cluster-wide, whichever instance answers.
        wait_until(
            lambda: http(f"{stack.base_url}/rooms/{room}").json()["members"] == CLIENTS,
            TIMEOUT,
            "every client in the room's presence",
        )

        # Every client speaks once; everyone hears everything, whichever instance holds it.
        for n, ws in enumerate(clients):
            await ws.send(f"hello from client{n}")
        expected = {f"hello from client{n}" for n in range(CLIENTS)}
        heard = await asyncio.gather(*(messages(ws, CLIENTS) for ws in clients))
        for got in heard:
            assert set(got) == expected

        # An HTTP post through nginx reaches every socket on both instances.
        response = http(f"{stack.base_url}/rooms/{room}/messages", method="POST", json_body={"text": "via http"})
        assert response.status == 202, response.text
        assert await asyncio.gather(*(messages(ws, 1) for ws in clients)) == [["via http"]] * CLIENTS

        await check_metrics(stack, placed)
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def check_metrics(stack: Stack, placed: list[str]) -> None:
    """Through nginx, each instance's gauge counts the sockets of all its workers."""
    expected = {name: placed.count(name) for name in ("app1", "app2")}
    matched: set[str] = set()
    seen: dict[str, float | None] = {}

    def scrape() -> bool:
        response = http(f"{stack.base_url}/metrics")
        assert response.status == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        for name in METRIC_NAMES:
            assert metric_value(response.text, name) is not None, f"{name} missing:\n{response.text}"
        assert metric_value(response.text, "fasterapi_backend_up") == 1
        assert (metric_value(response.text, "fasterapi_messages_published_total") or 0) >= 1
        instance = stack.instance_of_upstream(response.headers["x-upstream"]).name
        # Workers copy their counts every second: poll until this instance's total is current.
        seen[instance] = metric_value(response.text, "fasterapi_connections")
        if seen[instance] == expected[instance]:
            matched.add(instance)
        return matched == {"app1", "app2"}

    try:
        await asyncio.to_thread(wait_until, scrape, TIMEOUT, "both instances' connection gauges")
    except TimeoutError as error:
        raise AssertionError(f"connections per instance: expected {expected}, scraped {seen}") from error


def test_post_validates_through_nginx(stack: Stack) -> None:
    assert http(f"{stack.base_url}/rooms/x/messages", method="POST", json_body={"text": ""}).status == 422
    assert http(f"{stack.base_url}/rooms/x/messages", method="POST", json_body={"nope": 1}).status == 422
    page = http(f"{stack.base_url}/")
    assert page.status == 200 and "FasterAPI demo hub" in page.text


def test_a_dead_workers_sockets_leave_the_gauge(stack: Stack) -> None:
    """gunicorn's child_exit hook (mark_process_dead) drops a killed worker's live gauges."""
    asyncio.run(_dead_worker(stack))


async def _dead_worker(stack: Stack) -> None:
    room = f"dead-{secrets.token_hex(4)}"
    clients: list[ClientConnection] = []
    try:
        pids = []
        for n in range(CLIENTS):
            ws = await connect(f"{stack.ws_url}/ws/{room}?name=client{n}", open_timeout=TIMEOUT)
            clients.append(ws)
            pids.append((await next_event(ws, "hello"))["pid"])
        victim = pids[0]
        instance = stack.instance_of_pid(victim)
        on_instance = [pid for pid in pids if stack.instance_of_pid(pid) is instance]
        metrics_url = f"http://127.0.0.1:{instance.port}/metrics"  # this instance, not through nginx

        def connections() -> float | None:
            return metric_value(http(metrics_url).text, "fasterapi_connections")

        await asyncio.to_thread(
            wait_until, lambda: connections() == len(on_instance), TIMEOUT, "the gauge to count all"
        )
        published = metric_value(http(metrics_url).text, "fasterapi_messages_published_total") or 0

        os.kill(victim, signal.SIGKILL)
        survivors = len(on_instance) - pids.count(victim)
        try:
            await asyncio.to_thread(wait_until, lambda: connections() == survivors, TIMEOUT, "the dead worker's exit")
        except TimeoutError as error:
            raise AssertionError(f"expected {survivors} connections, scraped {connections()}") from error
        # Counters keep what the dead worker counted: totals never go down.
        assert (metric_value(http(metrics_url).text, "fasterapi_messages_published_total") or 0) >= published
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
