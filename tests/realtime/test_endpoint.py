"""The endpoint's shared parts on a real server: the client file, kicks, revocation, presence, pings."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from tests.realtime.wire import get, open_wire, post
from tests.servers import RunningServer, run_uvicorn


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def fast_pings() -> Iterator[RunningServer]:
    with run_uvicorn("tests.apps.realtime_app:app", env={"RT_PING_INTERVAL": "0.5"}) as running:
        yield running


def test_client_js_is_served_with_a_javascript_type_and_an_etag(server: RunningServer) -> None:
    with urllib.request.urlopen(server + "/rt/client.js", timeout=20) as response:
        body = response.read()
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        etag = response.headers["etag"]
        assert response.headers["cache-control"] == "no-cache"
    assert body == resources.files("FasterAPI.realtime").joinpath("client.js").read_bytes()
    again = urllib.request.Request(server + "/rt/client.js", headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(again, timeout=20)
    assert not_modified.value.code == 304 and not_modified.value.headers["etag"] == etag


def test_kick_removes_the_connection_and_tells_it_why(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as ann, open_wire(server.ws_url, token="bob") as bob:
            await ann.join("chat:kick", {"name": "ann"})
            await bob.join("chat:kick", {"name": "bob"})
            await ann.expect(lambda f: f["op"] == "presence", "bob's arrival")
            await asyncio.to_thread(post, server, f"/kick/{bob.id}/chat:kick?reason=spam")
            left = await bob.expect(lambda f: f["op"] == "left", "the kick")
            assert left == {"op": "left", "room": "chat:kick", "reason": "spam"}
            diff = await ann.expect(lambda f: f["op"] == "presence", "bob's departure")
            assert diff["leaves"] == [bob.id]
            await asyncio.to_thread(post, server, "/broadcast/chat:kick")
            await ann.message("chat:kick")
            await bob.send({"op": "ping"})
            await bob.expect(lambda f: f["op"] == "pong", "pong")
            assert not [f for f in bob.seen[bob.seen.index(left) :] if f["op"] == "message"]
            presence = await asyncio.to_thread(_presence, server, "chat:kick")
            assert presence == {ann.id: {"name": "ann", "user": "ann"}}

    run(main())


def _presence(server: RunningServer, room: str) -> Any:
    return get(server, f"/presence/{room}")


def test_a_guard_that_refuses_a_rejoin_revokes_the_membership(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="carol") as carol:
            assert (await carol.join("chat:revoke", {"name": "c"}))["op"] == "joined"
            await asyncio.to_thread(post, server, "/revoke/carol")
            denied = await carol.join("chat:revoke", {"name": "c"})
            assert denied["op"] == "denied" and denied["code"] == "revoked"
            await asyncio.to_thread(post, server, "/broadcast/chat:revoke")
            await carol.send({"op": "ping"})
            await carol.expect(lambda f: f["op"] == "pong", "pong")
            assert not [f for f in carol.seen if f["op"] == "message"]
            assert await asyncio.to_thread(_presence, server, "chat:revoke") == {}

    run(main())


def test_a_rejoin_reruns_the_guard_and_updates_presence(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="dan") as dan, open_wire(server.ws_url, token="eve") as eve:
            await eve.join("chat:rename", {"name": "eve"})
            await dan.join("chat:rename", {"name": "dan"})
            await eve.expect(lambda f: f["op"] == "presence", "dan's arrival")
            again = await dan.join("chat:rename", {"name": "daniel"})
            assert again["op"] == "joined" and again["presence"][dan.id] == {"name": "daniel", "user": "dan"}
            diff = await eve.expect(lambda f: f["op"] == "presence", "dan's new metadata")
            assert diff["joins"] == {dan.id: {"name": "daniel", "user": "dan"}}

    run(main())


def test_a_room_without_presence_sends_no_diffs(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as ann, open_wire(server.ws_url, token="bob") as bob:
            assert (await ann.join("live:show"))["presence"] == {}
            assert (await bob.join("live:show"))["presence"] == {}
            await asyncio.to_thread(post, server, "/broadcast/live:show")
            await ann.message("live:show")
            assert [f for f in ann.seen if f["op"] == "presence"] == []
            everyone = await asyncio.to_thread(_presence, server, "live:show")
            assert everyone == {ann.id: {"user": "ann"}, bob.id: {"user": "bob"}}

    run(main())


def test_a_gap_the_hub_cannot_repair_resets_the_rooms_members(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as ann, open_wire(server.ws_url, token="bob") as bob:
            await ann.join("feed:gap")
            await bob.join("feed:other")
            await asyncio.to_thread(post, server, "/gap/feed:gap")
            assert await ann.expect(lambda f: f["op"] == "reset", "the reset") == {"op": "reset", "room": "feed:gap"}
            await asyncio.to_thread(post, server, "/broadcast/feed:gap")  # the membership goes on
            await ann.message("feed:gap")
            await bob.send({"op": "ping"})
            await bob.expect(lambda f: f["op"] == "pong", "pong")
            assert [f for f in bob.seen if f["op"] == "reset"] == []

    run(main())


def test_a_direct_send_arrives_as_a_message_of_no_room(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as ann:
            await asyncio.to_thread(post, server, f"/send/{ann.id}")
            message = await ann.expect(lambda f: f["op"] == "message", "the direct send")
            assert message == {"op": "message", "room": "", "offset": 0, "epoch": "", "data": {"direct": True}}

    run(main())


def test_a_closed_connection_leaves_its_rooms(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="fay") as fay:
            await fay.join("chat:gone", {"name": "fay"})
            async with open_wire(server.ws_url, token="gil") as gil:
                await gil.join("chat:gone", {"name": "gil"})
                await fay.expect(lambda f: f["op"] == "presence" and gil.id in f["joins"], "gil's arrival")
                gil_id = gil.id
            diff = await fay.expect(lambda f: f["op"] == "presence" and f["leaves"], "gil's departure")
            assert diff["leaves"] == [gil_id]

    run(main())


def test_the_server_pings_and_closes_a_silent_link_with_4000(fast_pings: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(fast_pings.ws_url, token="ann") as wire:
            await wire.expect(lambda f: f["op"] == "ping", "a ping", timeout=10)
            # Answering keeps the link up past two intervals...
            started = time.monotonic()
            while time.monotonic() - started < 2.0:
                await wire.send({"op": "pong"})
                await wire.expect(lambda f: f["op"] == "ping", "a ping", timeout=10)
            assert wire.ws.close_code is None
            # ...silence ends it.
            await asyncio.wait_for(wire.ws.wait_closed(), 20)
            assert wire.ws.close_code == 4000 and wire.ws.close_reason == "ping timeout"

    run(main())


def test_a_slow_guard_is_not_taken_for_a_silent_client(fast_pings: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(fast_pings.ws_url, token="ann") as wire:
            joined = await wire.join("slow:2.5")  # five ping intervals in the guard
            assert joined["op"] == "joined"
            await wire.send({"op": "ping"})
            await wire.expect(lambda f: f["op"] == "pong", "pong: still open")
            assert wire.ws.close_code is None

    run(main())
