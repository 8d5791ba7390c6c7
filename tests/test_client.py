"""The Python realtime client against a real server, through a TCP proxy the test cuts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import serve
from websockets.typing import Subprotocol

from FasterAPI.client import ConnectionState, Position, Realtime, RealtimeError, full_jitter
from tests.realtime.wire import get, post
from tests.servers import RunningServer, run_uvicorn

DEADLINE = 30.0


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with run_uvicorn("tests.apps.realtime_app:app", env={"RT_PING_INTERVAL": "1"}) as running:
        yield running


class Proxy:
    """A TCP proxy to ``port`` that can cut every link, or blackhole them (bytes vanish, nothing closes)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.blackhole = False
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.links.append((writer, up_writer))
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if not self.blackhole:
                    writer.write(data)
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        """Reset every open link (as a dropped network path would)."""
        links, self.links = self.links, []
        for client, upstream in links:
            client.transport.abort()
            upstream.transport.abort()


async def wait_for(predicate: Any, what: str, timeout: float = DEADLINE) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"Timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_join_publish_presence_leave(server: RunningServer) -> None:
    async def main() -> None:
        states: list[str] = []
        ann = Realtime(server.ws_url + "/rt", params=lambda: {"token": "ann"})
        ann.on("state", states.append)
        bob = Realtime(server.ws_url + "/rt", params=lambda: {"token": "bob"})
        try:
            room = ann.room("chat:client")
            assert ann.room("chat:client") is room
            messages: list[tuple[Any, dict[str, Any]]] = []
            diffs: list[dict[str, Any]] = []
            room.on("message", lambda data, meta: messages.append((data, meta)))
            room.on("presence", diffs.append)
            recovered, position = await room.join({"name": "Ann"})
            assert recovered is False and isinstance(position, Position)
            assert states == ["connecting", "connected"]
            assert room.presence == {ann.connection_id: {"name": "Ann", "user": "ann"}}
            bob_room = bob.room("chat:client")
            await bob_room.join({"name": "Bob"})
            await wait_for(lambda: bool(diffs), "bob's arrival")
            assert diffs[0] == {"joins": {bob.connection_id: {"name": "Bob", "user": "bob"}}, "leaves": []}
            assert set(room.presence) == {ann.connection_id, bob.connection_id}
            acked = await bob_room.publish({"text": "hello"})
            assert acked is not None and acked.offset == position.offset + 1
            await wait_for(lambda: bool(messages), "the message")
            assert messages == [
                ({"from": "bob", "text": "hello", "room": "client"}, {"offset": acked.offset, "epoch": acked.epoch})
            ]
            with pytest.raises(RealtimeError) as refused:
                await bob_room.publish({"text": "forbidden"})
            assert refused.value.code == "publish_refused" and refused.value.reason == "no such words"
            await bob_room.leave()
            await wait_for(lambda: len(diffs) == 2, "bob's departure")
            assert room.presence == {ann.connection_id: {"name": "Ann", "user": "ann"}}
        finally:
            await ann.close()
            await bob.close()
        assert states[-1] == "disconnected"

    run(main())


def test_a_denied_join_raises_with_code_and_reason(server: RunningServer) -> None:
    async def main() -> None:
        async with Realtime(server.ws_url + "/rt", params=lambda: {"token": "ann"}) as client:
            with pytest.raises(RealtimeError) as denied:
                await client.room("chat:secret").join({"name": "ann"})
            assert (denied.value.code, denied.value.reason) == ("forbidden", "not a member")
            with pytest.raises(RealtimeError) as unknown:
                await client.room("nowhere").join()
            assert unknown.value.code == "unknown_room"
            with pytest.raises(RealtimeError) as invalid:
                await client.room("chat:1").join({"name": 1})
            assert invalid.value.code == "invalid_payload"
            assert client.state is ConnectionState.CONNECTED

    run(main())


def test_a_kick_is_a_left_event_without_rejoin(server: RunningServer) -> None:
    async def main() -> None:
        async with Realtime(server.ws_url + "/rt", params=lambda: {"token": "ann"}) as client:
            room = client.room("chat:kicked")
            left: list[dict[str, str]] = []
            room.on("left", left.append)
            await room.join({"name": "ann"})
            await asyncio.to_thread(post, server, f"/kick/{client.connection_id}/chat:kicked?reason=bye")
            await wait_for(lambda: bool(left), "the kick")
            assert left == [{"code": "removed", "reason": "bye"}]
            assert not room.wanted

    run(main())


def test_binary_broadcasts_arrive_as_bytes(server: RunningServer) -> None:
    async def main() -> None:
        async with Realtime(server.ws_url + "/rt") as client:
            room = client.room("feed:client-binary")
            received: list[Any] = []
            room.on("message", lambda data, meta: received.append(data))
            await room.join()
            await asyncio.to_thread(post, server, "/broadcast/feed:client-binary?binary=true")
            await asyncio.to_thread(post, server, "/broadcast/feed:client-binary")
            await wait_for(lambda: len(received) == 2, "both messages")
            assert received == [b"\x00\x01", {"n": 0}]

    run(main())


def test_a_message_to_this_connection_alone_is_the_clients_event(server: RunningServer) -> None:
    async def main() -> None:
        async with Realtime(server.ws_url + "/rt") as client:
            direct: list[Any] = []
            client.on("message", direct.append)
            await asyncio.to_thread(post, server, f"/send/{client.connection_id}")
            await wait_for(lambda: bool(direct), "the direct message")
            assert direct == [{"direct": True}]

    run(main())


class ScriptedServer:
    """A WebSocket server speaking the protocol from a script: for replies the app itself cannot
    be made to give on demand (the client.js tests use a mock socket for the same)."""

    def __init__(self, answer_join: Any) -> None:
        #: ``answer_join(frame, connection_number)`` -> the reply frame to a join.
        self.answer_join = answer_join
        self.joins: list[dict[str, Any]] = []
        self.connections: list[Any] = []
        self.port = 0
        self._server: Any = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await serve(self._serve, "127.0.0.1", 0, subprotocols=[Subprotocol("fasterapi.v1")])
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, ws: Any) -> None:
        self.connections.append(ws)
        number = len(self.connections)
        await ws.send(json.dumps({"op": "welcome", "connection": f"c.{number}", "ping_interval": 10, "version": 1}))
        async for raw in ws:
            frame = json.loads(raw)
            if frame["op"] == "join":
                self.joins.append(frame)
                await ws.send(json.dumps(self.answer_join(frame, number)))


def test_a_rejoin_the_server_cannot_serve_yet_is_tried_again() -> None:
    """A rejoin answered ``unavailable`` (the relay is down) is sent again with backoff, with the
    same ``since``, instead of being given up; no ``left``."""

    def answer(frame: dict[str, Any], connection: int) -> dict[str, Any]:
        refusals = sum(1 for join in server.joins if join.get("since"))
        if connection > 1 and refusals <= 2:
            return {"op": "denied", "id": frame["id"], "room": frame["room"], "code": "unavailable", "reason": "down"}
        top = {"offset": 5, "epoch": "e1"}
        return {"op": "joined", "id": frame["id"], "room": frame["room"], "recovered": connection > 1,
                "position": top, "presence": {}}

    server = ScriptedServer(answer)

    async def main() -> None:
        async with server:
            client = Realtime(f"ws://127.0.0.1:{server.port}/rt", backoff_base=0.05, backoff_cap=0.2)
            room = client.room("chat:1")
            left: list[dict[str, str]] = []
            room.on("left", left.append)
            try:
                await room.join({"name": "ann"})
                await server.connections[0].close()
                await wait_for(lambda: len(server.joins) == 4 and room.joined, "two refused rejoins, then one served")
                assert [join.get("since") for join in server.joins[1:]] == [{"offset": 5, "epoch": "e1"}] * 3
                assert all(join["payload"] == {"name": "ann"} for join in server.joins)
                assert left == [] and room.wanted
                assert len(server.connections) == 2  # retried on the connection, not by reconnecting
            finally:
                await client.close()

    run(main())


def test_a_rejoin_denied_for_good_is_a_left_event() -> None:
    def answer(frame: dict[str, Any], connection: int) -> dict[str, Any]:
        if connection > 1:
            return {"op": "denied", "id": frame["id"], "room": frame["room"], "code": "forbidden", "reason": "revoked"}
        return {"op": "joined", "id": frame["id"], "room": frame["room"], "recovered": False,
                "position": None, "presence": {}}

    server = ScriptedServer(answer)

    async def main() -> None:
        async with server:
            client = Realtime(f"ws://127.0.0.1:{server.port}/rt", backoff_base=0.05)
            room = client.room("chat:1")
            left: list[dict[str, str]] = []
            room.on("left", left.append)
            try:
                await room.join()
                await server.connections[0].close()
                await wait_for(lambda: bool(left), "the refused rejoin")
                assert left == [{"code": "forbidden", "reason": "revoked"}]
                assert not room.wanted and len(server.joins) == 2
            finally:
                await client.close()

    run(main())


def test_reconnects_resume_without_loss_or_duplicates(server: RunningServer) -> None:
    """Two cuts and a blackhole while 150 messages are published: all arrive, in order, once."""
    total = 150

    async def main() -> None:
        async with Proxy(server.port) as proxy:
            client = Realtime(f"ws://127.0.0.1:{proxy.port}/rt", params=lambda: {"token": "ann"})
            states: list[str] = []
            client.on("state", states.append)
            room = client.room("feed:resume-client")
            received: list[int] = []
            resets: list[bool] = []
            room.on("message", lambda data, meta: received.append(data["n"]))
            room.on("reset", lambda: resets.append(True))
            try:
                await room.join()

                async def publish() -> None:
                    for start in range(0, total, 5):
                        await asyncio.to_thread(post, server, f"/broadcast/feed:resume-client?count=5&start={start}")
                        await asyncio.sleep(0.05)

                def connections() -> int:
                    return states.count("connected")

                publisher = asyncio.create_task(publish())
                await wait_for(lambda: len(received) >= 20, "the first messages")
                # Each wait counts connections rather than reading the state, which may not
                # have changed yet when the client has not noticed the cut (a busy machine).
                proxy.cut()
                await wait_for(lambda: connections() >= 2 and len(received) >= 60, "resume 1")
                proxy.cut()
                await wait_for(lambda: connections() >= 3 and len(received) >= 90, "resume 2")
                # A blackhole: nothing closes; the client notices by missed pings (2 x 1 s).
                proxy.blackhole = True
                await wait_for(lambda: client.state is not ConnectionState.CONNECTED, "the dead link noticed", 15)
                proxy.cut()
                proxy.blackhole = False
                await publisher
                await wait_for(lambda: connections() >= 4 and len(received) >= total, f"all {total} messages")
                await asyncio.sleep(0.3)  # anything extra (a duplicate) would show up now
            finally:
                await client.close()
            assert received == list(range(total))
            assert resets == []

    run(main())


def test_closing_fails_a_join_still_waiting_for_its_connection() -> None:
    async def main() -> None:
        # Nothing listens there: the client keeps trying to connect.
        client = Realtime("ws://127.0.0.1:9/rt", backoff_base=0.01)
        join = asyncio.create_task(client.room("chat:x").join({"name": "x"}))
        await wait_for(lambda: client.state is not ConnectionState.CONNECTED, "a connect attempt")
        await client.close()
        with pytest.raises(RealtimeError) as closed:
            await join
        assert closed.value.code == "closed"

    run(main())


def test_a_closed_client_does_not_reconnect(server: RunningServer) -> None:
    async def main() -> None:
        client = Realtime(server.ws_url + "/rt", params=lambda: {"token": "ann"})
        await client.connect()
        await client.close()
        assert client.state is ConnectionState.DISCONNECTED
        with pytest.raises(RealtimeError):
            await client.room("chat:x").join({"name": "x"})
        assert await asyncio.to_thread(get, server, "/presence/chat:x") == {}

    run(main())


def test_reconnect_waits_are_full_jitter_doubling_to_the_cap() -> None:
    import random

    random.seed(7)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 16.0), (6, 20.0), (50, 20.0)]:
        waits = [full_jitter(attempt, 0.5, 20.0) for _ in range(400)]
        assert all(0 <= wait <= ceiling for wait in waits)
        assert max(waits) > 0.9 * ceiling and min(waits) < 0.1 * ceiling  # spread over the whole range
