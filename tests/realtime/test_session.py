"""One realtime connection on a real server: joins, publishes, and the bad-input table.

Each row of the table sends one bad frame on a connection that is already in a room, then
checks the reply, that the socket is still open (a ping gets its pong) and that the room it
was in still delivers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from FasterAPI.pubsub.delivery import Delivery, Sink
from FasterAPI.realtime.session import RealtimeSink
from tests.realtime.wire import Frame, Wire, open_wire, post
from tests.servers import RunningServer


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def still_fine(server: RunningServer, wire: Wire, room: str) -> None:
    """The socket answers a ping and ``room`` still delivers to it."""
    await wire.send({"op": "ping"})
    await wire.expect(lambda f: f["op"] == "pong", "pong")
    await asyncio.to_thread(post, server, f"/broadcast/{room}")
    message = await wire.message(room)
    assert message["data"] == {"n": 0}


def subset(frame: Frame, expected: Frame) -> bool:
    return all(frame.get(key) == value for key, value in expected.items())


# (name, frames to send first, the bad frame, the reply expected: its fields)
BAD_INPUT: list[tuple[str, list[Frame], Frame | str | bytes, Frame]] = [
    ("malformed JSON", [], '{"op": "join", ', {"op": "error", "id": None, "code": "bad_frame"}),
    ("not an object", [], "[1, 2]", {"op": "error", "id": None, "code": "bad_frame"}),
    ("binary frame", [], b'{"op":"ping"}', {"op": "error", "id": None, "code": "bad_frame"}),
    ("unknown op", [], {"op": "subscribe", "id": 7}, {"op": "error", "id": 7, "code": "unknown_op"}),
    ("no op", [], {"id": 7, "room": "chat:1"}, {"op": "error", "id": 7, "code": "bad_request"}),
    ("missing room", [], {"op": "join", "id": 7}, {"op": "error", "id": 7, "code": "bad_request"}),
    ("mistyped room", [], {"op": "join", "id": 7, "room": 5}, {"op": "error", "id": 7, "code": "bad_request"}),
    (
        "mistyped id",
        [],
        {"op": "join", "id": "7", "room": "chat:1"},
        {"op": "error", "id": None, "code": "bad_request"},
    ),
    ("zero id", [], {"op": "leave", "id": 0, "room": "chat:1"}, {"op": "error", "id": None, "code": "bad_request"}),
    (
        "mistyped since",
        [],
        {"op": "join", "id": 7, "room": "chat:1", "since": {"offset": "x", "epoch": ""}, "payload": {"name": "a"}},
        {"op": "error", "id": 7, "code": "bad_request"},
    ),
    ("room with a control character", [], {"op": "join", "id": 7, "room": "chat:\x01"}, {"code": "bad_request"}),
    (
        "undeclared room",
        [],
        {"op": "join", "id": 7, "room": "lobby"},
        {"op": "denied", "id": 7, "code": "unknown_room"},
    ),
    (
        "oversize frame",
        [],
        {"op": "publish", "id": 7, "room": "chat:ok", "data": {"text": "x" * 5000}},
        {"op": "error", "id": None, "code": "too_large"},
    ),
    (
        "payload failing its type",
        [],
        {"op": "join", "id": 7, "room": "chat:2", "payload": {"name": 5}},
        {"op": "denied", "id": 7, "room": "chat:2", "code": "invalid_payload"},
    ),
    (
        "payload missing",
        [],
        {"op": "join", "id": 7, "room": "chat:2"},
        {"op": "denied", "id": 7, "code": "invalid_payload"},
    ),
    (
        "pattern parameter failing its type",
        [],
        {"op": "join", "id": 7, "room": "count:abc"},
        {"op": "denied", "id": 7, "code": "bad_request"},
    ),
    (
        "published data failing its type",
        [],
        {"op": "publish", "id": 7, "room": "chat:ok", "data": {"txt": "hi"}},
        {"op": "error", "id": 7, "code": "invalid_payload"},
    ),
    (
        "publish without handler",
        [{"op": "join", "id": 100, "room": "count:1"}],
        {"op": "publish", "id": 7, "room": "count:1", "data": 1},
        {"op": "error", "id": 7, "code": "publish_refused"},
    ),
    (
        "publish to a room not joined",
        [],
        {"op": "publish", "id": 7, "room": "chat:elsewhere", "data": {"text": "hi"}},
        {"op": "error", "id": 7, "code": "not_joined"},
    ),
    (
        "too many rooms",
        [{"op": "join", "id": 100, "room": "count:1"}, {"op": "join", "id": 101, "room": "count:2"}],
        {"op": "join", "id": 7, "room": "count:3"},
        {"op": "denied", "id": 7, "code": "too_many_rooms"},
    ),
]


@pytest.mark.parametrize(
    ("before", "bad", "expected"), [row[1:] for row in BAD_INPUT], ids=[row[0] for row in BAD_INPUT]
)
def test_bad_input_gets_a_reply_and_breaks_nothing(
    server: RunningServer, before: list[Frame], bad: Frame | str | bytes, expected: Frame
) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as wire:
            joined = await wire.join("chat:ok", {"name": "ann"})
            assert joined["op"] == "joined"
            for frame in before:
                await wire.send(frame)
                await wire.reply(frame["id"])
            await wire.send(bad)
            reply = await wire.expect(lambda f: f["op"] in ("error", "denied"), "the refusal")
            assert subset(reply, expected), reply
            assert isinstance(reply["reason"], str) and reply["reason"]
            await still_fine(server, wire, "chat:ok")

    run(main())


def test_invalid_payload_names_the_field(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as wire:
            reply = await wire.join("chat:2", {"name": "ann", "age": "old"})
            assert reply["code"] == "invalid_payload" and "payload.age" in reply["reason"], reply

    run(main())


def test_too_many_bad_frames_close_with_1008(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as wire:
            for _ in range(20):
                await wire.send("not json")
                await wire.expect(lambda f: f["op"] == "error", "an error")
            await wire.send({"op": "ping"})
            await wire.expect(lambda f: f["op"] == "pong", "pong after 20 bad frames: still open")
            await wire.send("not json")  # the 21st within 10 s
            await wire.ws.wait_closed()
            assert wire.ws.close_code == 1008

    run(main())


def test_join_publish_and_presence_between_two_connections(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as ann, open_wire(server.ws_url, token="bob") as bob:
            first = await ann.join("chat:42", {"name": "Ann"})
            assert first["op"] == "joined" and first["recovered"] is False
            assert first["presence"] == {ann.id: {"name": "Ann", "user": "ann"}}
            assert first["position"]["offset"] >= 0 and first["position"]["epoch"]
            second = await bob.join("chat:42", {"name": "Bob"})
            assert second["presence"] == {
                ann.id: {"name": "Ann", "user": "ann"},
                bob.id: {"name": "Bob", "user": "bob"},
            }
            diff = await ann.expect(lambda f: f["op"] == "presence", "bob's arrival")
            assert diff == {
                "op": "presence",
                "room": "chat:42",
                "joins": {bob.id: {"name": "Bob", "user": "bob"}},
                "leaves": [],
            }
            ack = await bob.publish("chat:42", {"text": "hi"})
            assert ack["op"] == "ack" and ack["position"]["offset"] == second["position"]["offset"] + 1
            for wire in (ann, bob):
                message = await wire.message("chat:42")
                assert message["data"] == {"from": "bob", "text": "hi", "room": "42"}
                assert (message["offset"], message["epoch"]) == (ack["position"]["offset"], ack["position"]["epoch"])
            refused = await bob.publish("chat:42", {"text": "forbidden"})
            assert refused == {"op": "error", "id": refused["id"], "code": "publish_refused", "reason": "no such words"}
            request_id = bob.next_id()
            await bob.send({"op": "leave", "id": request_id, "room": "chat:42"})
            assert await bob.reply(request_id) == {"op": "left", "id": request_id, "room": "chat:42"}
            diff = await ann.expect(lambda f: f["op"] == "presence", "bob's departure")
            assert diff["leaves"] == [bob.id] and diff["joins"] == {}
            # bob is out: the next broadcast reaches ann only.
            await asyncio.to_thread(post, server, "/broadcast/chat:42")
            await ann.message("chat:42")
            await bob.send({"op": "ping"})
            await bob.expect(lambda f: f["op"] == "pong", "pong")
            assert not [f for f in bob.seen if f["op"] == "message" and f.get("data") == {"n": 0}]

    run(main())


def test_guard_refusals_keep_the_socket(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as wire, open_wire(server.ws_url) as anonymous:
            denied = await wire.join("chat:secret", {"name": "ann"})
            assert denied == {
                "op": "denied",
                "id": denied["id"],
                "room": "chat:secret",
                "code": "forbidden",
                "reason": "not a member",
            }
            # A dependency raising HTTPException (no token) is a denial too.
            no_token = await anonymous.join("chat:1", {"name": "x"})
            assert no_token["op"] == "denied" and no_token["code"] == "forbidden" and no_token["reason"] == "no token"
            await wire.join("chat:ok", {"name": "ann"})
            await still_fine(server, wire, "chat:ok")

    run(main())


def test_messages_of_every_kind_are_framed(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as wire:
            await wire.join("feed:kinds")  # a sync guard, no payload
            await asyncio.to_thread(post, server, "/broadcast/feed:kinds?binary=true")
            binary = await wire.message("feed:kinds")
            assert binary["data"] == "AAE=" and binary["binary"] is True
            await asyncio.to_thread(post, server, "/text/feed:kinds")
            text = await wire.message("feed:kinds")
            assert text["data"] == "plain text" and "binary" not in text
            assert text["offset"] == binary["offset"] + 1 and text["epoch"] == binary["epoch"]

    run(main())


def test_rejoin_with_since_replays_what_was_missed(server: RunningServer) -> None:
    async def main() -> None:
        async with open_wire(server.ws_url, token="ann") as wire:
            joined = await wire.join("feed:resume")
            await asyncio.to_thread(post, server, "/broadcast/feed:resume")
            seen = await wire.message("feed:resume")
        position = {"offset": seen["offset"], "epoch": seen["epoch"]}
        await asyncio.to_thread(post, server, "/broadcast/feed:resume?count=3")  # missed while away
        async with open_wire(server.ws_url, token="ann") as again:
            request_id = again.next_id()
            await again.send({"op": "join", "id": request_id, "room": "feed:resume", "since": position})
            replayed = [await again.message("feed:resume") for _ in range(3)]
            assert [m["offset"] for m in replayed] == [seen["offset"] + 1, seen["offset"] + 2, seen["offset"] + 3]
            reply = await again.reply(request_id)
            assert reply["op"] == "joined" and reply["recovered"] is True
            assert not [f for f in again.seen if f["op"] == "reset"]
        async with open_wire(server.ws_url, token="ann") as stale:
            request_id = stale.next_id()
            await stale.send(
                {"op": "join", "id": request_id, "room": "feed:resume", "since": {"offset": 1, "epoch": "gone"}}
            )
            reset = await stale.expect(lambda f: f["op"] in ("reset", "joined"), "reset before joined")
            assert reset == {"op": "reset", "room": "feed:resume"}
            reply = await stale.reply(request_id)
            assert reply["op"] == "joined" and reply["recovered"] is False
        assert joined["op"] == "joined"

    run(main())


class Recording(Sink):
    def __init__(self) -> None:
        self.got: list[Delivery] = []

    def deliver(self, delivery: Delivery) -> None:
        self.got.append(delivery)

    def close(self) -> None:
        pass

    @property
    def pending(self) -> int:
        return 0

    @property
    def label(self) -> str:
        return "recording"

    def drop_oldest(self) -> None:
        pass

    def close_for_overflow(self) -> None:
        pass


def test_every_member_of_a_worker_shares_one_wrapped_delivery() -> None:
    """Frame-once: the wrapped message is built once per broadcast, so the server frames it once."""
    members = [RealtimeSink(Recording()) for _ in range(3)]
    for sink in members[:2]:
        sink.rooms.add("r")
    broadcast = Delivery(b'{"a":1}', False, 5, room="r", epoch="e", is_json=True)
    for sink in members:
        sink.deliver(broadcast)
    first, second, outsider = (sink.inner.got for sink in members)  # type: ignore[attr-defined]
    assert len(first) == 1 and first[0] is second[0] and outsider == []
    assert json.loads(first[0].payload) == {"op": "message", "room": "r", "offset": 5, "epoch": "e", "data": {"a": 1}}
    members[0].rooms.discard("r")  # revoked: nothing more of the room passes
    members[0].deliver(Delivery(b"2", False, 6, room="r", epoch="e", is_json=True))
    assert len(first) == 1


def test_the_msgpack_form_carries_the_same_objects_in_binary_frames(server: RunningServer) -> None:
    import msgspec
    from websockets.asyncio.client import connect

    async def main() -> None:
        url = server.ws_url + "/rt?token=mia"
        async with (
            connect(url, subprotocols=["fasterapi.v1.msgpack", "fasterapi.v1"]) as packed,  # type: ignore[list-item]
            open_wire(server.ws_url, token="ann") as ann,
        ):
            assert packed.subprotocol == "fasterapi.v1.msgpack"

            async def frame() -> Any:
                raw = await asyncio.wait_for(packed.recv(), 20)
                assert isinstance(raw, bytes)
                return msgspec.msgpack.decode(raw)

            async def until(op: str) -> Any:
                while (found := await frame())["op"] != op:
                    pass
                return found

            welcome = await frame()
            assert welcome["op"] == "welcome" and welcome["version"] == 1
            await ann.join("chat:packed", {"name": "ann"})
            await packed.send(
                msgspec.msgpack.encode({"op": "join", "id": 1, "room": "chat:packed", "payload": {"name": "Mia"}})
            )
            joined = await until("joined")
            assert joined["id"] == 1 and set(joined["presence"]) == {ann.id, welcome["connection"]}
            diff = await ann.expect(lambda f: f["op"] == "presence", "mia's arrival")  # JSON side of the same diff
            assert diff["joins"] == {welcome["connection"]: {"name": "Mia", "user": "mia"}}
            await asyncio.to_thread(post, server, "/broadcast/chat:packed")
            message = await until("message")
            assert message["room"] == "chat:packed" and message["data"] == {"n": 0} and message["offset"] >= 1
            assert (await ann.message("chat:packed"))["offset"] == message["offset"]
            await asyncio.to_thread(post, server, "/broadcast/chat:packed?binary=true")
            assert (await until("message"))["data"] == b"\x00\x01"  # bytes stay bytes
            await packed.send('{"op":"ping"}')  # a text frame in msgpack mode
            refusal = await until("error")
            assert refusal["code"] == "bad_frame" and refusal["id"] is None
            await packed.send(b"\xc1")  # never valid msgpack
            assert (await until("error"))["code"] == "bad_frame"
            await packed.send(msgspec.msgpack.encode({"op": "ping"}))
            assert await until("pong") == {"op": "pong"}

    run(main())
