"""Bad input through a real server: each bad frame or request costs its sender only.

One uvicorn worker with the Redis backend (``--ws-max-size 65536``, ``FASTERAPI_MAX_MESSAGE_SIZE
=4096``) serves every test of this module; each test checks that the other clients in the room
still receive afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis as sync_redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from FasterAPI.pubsub.envelope import Envelope, decode, encode
from tests.cluster.processes import wait_until
from tests.faults.harness import Client, RawWebSocket, ahttp, close_all, connect_many, http
from tests.redis_server import RedisServer
from tests.servers import RunningServer, run_uvicorn

pytestmark = pytest.mark.timeout(60)

WS_MAX_SIZE = 65536
MAX_MESSAGE_SIZE = 4096


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(redis: RedisServer) -> Iterator[RunningServer]:
    env = {"FASTERAPI_BACKEND": redis.url, "FASTERAPI_MAX_MESSAGE_SIZE": str(MAX_MESSAGE_SIZE)}
    with run_uvicorn("tests.apps.fault_app:app", env=env, extra_args=["--ws-max-size", str(WS_MAX_SIZE)]) as running:
        yield running


def stats(server: RunningServer) -> dict[str, Any]:
    body: dict[str, Any] = http("GET", f"{server}/stats").body
    return body


async def others_still_receive(server: RunningServer, clients: list[Client], text: str) -> None:
    """A broadcast to the room reaches every one of ``clients``."""
    reply = await ahttp("POST", f"{server}/broadcast/{clients[0].room}", text.encode())
    assert reply.status == 200, reply
    await asyncio.gather(*(c.wait_for(lambda m: m == text) for c in clients))


def test_frame_over_ws_max_size_closes_that_socket_with_1009(server: RunningServer) -> None:
    async def main() -> None:
        big, *others = await connect_many([f"{server.ws_url}/ws/size"] * 3)
        try:
            await big.ws.send("x" * (WS_MAX_SIZE + 1))
            await asyncio.wait_for(big.closed.wait(), 10)
            assert big.close_code == 1009
            await others_still_receive(server, others, "after the big frame")
        finally:
            await close_all([big, *others])

    asyncio.run(main())


def test_invalid_utf8_text_frame_closes_that_socket_with_1007(server: RunningServer) -> None:
    async def main() -> None:
        others = await connect_many([f"{server.ws_url}/ws/utf8"] * 2)
        raw = RawWebSocket(server.port, "/ws/utf8")
        try:
            assert raw.status == 101
            _, hello = raw.recv_frame()
            assert json.loads(hello)["type"] == "hello"
            raw.send_frame(0x1, b"caf\xc3 \xff\xfe")  # a text frame that is not UTF-8
            assert await asyncio.to_thread(raw.close_code) == 1007
            await others_still_receive(server, others, "after the bad text")
        finally:
            raw.close()
            await close_all(others)

    asyncio.run(main())


def test_malformed_json_closes_that_socket_with_1007(server: RunningServer) -> None:
    async def main() -> None:
        bad, good, *others = await connect_many([f"{server.ws_url}/ws-json/json"] * 2 + [f"{server.ws_url}/ws/json"])
        try:
            await bad.ws.send("{not json")
            await asyncio.wait_for(bad.closed.wait(), 10)
            assert bad.close_code == 1007
            await good.ws.send('{"still": "fine"}')
            assert await good.wait_for(lambda m: isinstance(m, dict) and m.get("type") == "echo") == {
                "type": "echo",
                "data": {"still": "fine"},
            }
            await others_still_receive(server, [good, *others], "after the bad json")
        finally:
            await close_all([bad, good, *others])

    asyncio.run(main())


@pytest.mark.parametrize(
    ("room", "message"),
    [
        ("a" * 201, "201 bytes long; the limit is 200"),
        ("\u00e9" * 100 + "a", "201 bytes long; the limit is 200"),
        ("a\x01b", "control character"),
        ("tab\troom", "control character"),
        ("c1\u0085", "control character"),
    ],
)
def test_invalid_room_name_is_refused_with_422(server: RunningServer, room: str, message: str) -> None:
    reply = http("POST", f"{server}/broadcast/{quote(room, safe='')}", b"hello")
    assert reply.status == 422, reply
    assert message in reply.body["detail"], reply


@pytest.mark.parametrize("room", ["a" * 200, "\u00e9" * 100, "caf\u00e9 \u2615 room"])
def test_room_names_up_to_the_limit_are_accepted(server: RunningServer, room: str) -> None:
    assert http("POST", f"{server}/broadcast/{quote(room, safe='')}", b"hello").status == 200


def test_broadcast_over_max_message_size_never_reaches_redis(server: RunningServer, redis: RedisServer) -> None:
    async def main() -> None:
        clients = await connect_many([f"{server.ws_url}/ws/large"] * 2)
        raw = sync_redis.Redis(host=redis.host, port=redis.port)
        spy = raw.pubsub()  # type: ignore[no-untyped-call]
        try:
            spy.subscribe("fasterapi:room:large")
            assert spy.get_message(timeout=5)["type"] == "subscribe"
            subscribers = {e["id"] for e in redis.admin.client_list() if e.get("name") == "fasterapi:sub"}
            outages = stats(server)["stats"]["backend_outages"]

            reply = await ahttp("POST", f"{server}/broadcast/large", b"y" * (MAX_MESSAGE_SIZE + 1))
            assert reply.status == 413, reply
            assert "max_message_size" in reply.body["detail"], reply
            reply = await ahttp("POST", f"{server}/broadcast/large", b"y" * MAX_MESSAGE_SIZE)
            assert reply.status == 200, reply

            # The first thing on the channel is the message at the limit: the other never left.
            message = spy.get_message(timeout=5)
            assert message is not None and message["type"] == "message"
            assert decode(message["data"]).payload == b"y" * MAX_MESSAGE_SIZE
            assert spy.get_message(timeout=0.2) is None
            await asyncio.gather(*(c.wait_for(lambda m: m == "y" * MAX_MESSAGE_SIZE) for c in clients))
            assert all(not any(isinstance(m, str) and len(m) > MAX_MESSAGE_SIZE for m in c.messages) for c in clients)
            # Redis did not drop the worker's subscriber connection.
            assert {e["id"] for e in redis.admin.client_list() if e.get("name") == "fasterapi:sub"} == subscribers
            assert stats(server)["stats"]["backend_outages"] == outages
        finally:
            spy.close()
            raw.close()
            await close_all(clients)

    asyncio.run(main())


def test_malformed_envelope_is_logged_counted_and_skipped(server: RunningServer, redis: RedisServer) -> None:
    async def main() -> None:
        clients = await connect_many([f"{server.ws_url}/ws/garbage"] * 2)
        try:
            before = stats(server)["stats"]
            bad = [
                b"not msgpack at all \xff",
                encode(Envelope(2, 0, b"from the future", room="garbage")),
                encode(Envelope(1, 9, b"unknown kind", room="garbage")),
                encode(Envelope(1, 0, b"\xff\xfe not utf-8", room="garbage")),
            ]
            for data in bad:
                assert redis.admin.publish("fasterapi:room:garbage", data) == 1
            await others_still_receive(server, clients, "valid after garbage")
            after = stats(server)["stats"]
            assert after["invalid_envelopes"] - before["invalid_envelopes"] == len(bad)
            assert after["listener_errors"] == before["listener_errors"]
            # Nothing of the garbage reached a client: the next message after the hello is the valid one.
            for client in clients:
                assert client.messages == ["valid after garbage"]
            # Logged, but at most once a second: bad input must not flood the logs (the count is exact).
            wait_until(lambda: "Dropped a message on channel 'room:garbage'" in server.output(), 5, "the log line")
        finally:
            await close_all(clients)

    asyncio.run(main())


def test_cross_site_handshake_is_refused_with_403(server: RunningServer) -> None:
    async def main() -> None:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{server.ws_url}/guarded", origin=Origin("http://evil.example"), open_timeout=10)
        assert refused.value.response.status_code == 403
        raw = RawWebSocket(server.port, "/guarded", origin="http://evil.example")
        assert raw.status == 403
        raw.close()
        async with connect(f"{server.ws_url}/guarded", origin=Origin("http://good.example"), open_timeout=10) as ws:
            assert await asyncio.wait_for(ws.recv(), 10) == "welcome"

    asyncio.run(main())
