"""Reading client frames (each problem its own code) and wrapping broadcasts in message frames."""

from __future__ import annotations

import json

import msgspec
import pytest

from FasterAPI.pubsub.delivery import Delivery
from FasterAPI.realtime import frames
from FasterAPI.realtime.frames import BadFrame, ErrorCode, Join, Leave, Ping, Pong, Publish


def test_requests_are_read_with_their_fields() -> None:
    join = frames.read_frame(
        '{"op":"join","id":3,"room":"a","since":{"offset":4,"epoch":"e"},"payload":{"x":1},"new":1}'
    )
    assert isinstance(join, Join) and (join.id, join.room, join.payload) == (3, "a", {"x": 1})
    assert join.since is not None and (join.since.offset, join.since.epoch) == (4, "e")
    assert frames.read_frame('{"op":"join","id":1,"room":"a"}').payload is msgspec.UNSET  # type: ignore[union-attr]
    assert frames.read_frame('{"op":"join","id":1,"room":"a","payload":null}').payload is None  # type: ignore[union-attr]
    assert isinstance(frames.read_frame('{"op":"leave","id":1,"room":"a"}'), Leave)
    publish = frames.read_frame('{"op":"publish","id":1,"room":"a","data":[1,2]}')
    assert isinstance(publish, Publish) and publish.data == [1, 2]
    assert isinstance(frames.read_frame('{"op":"ping"}'), Ping)
    assert isinstance(frames.read_frame('{"op":"pong","extra":true}'), Pong)


@pytest.mark.parametrize(
    ("text", "code", "request_id"),
    [
        ("{", ErrorCode.BAD_FRAME, None),
        ("[]", ErrorCode.BAD_FRAME, None),
        ('"join"', ErrorCode.BAD_FRAME, None),
        ("[" * 10000, ErrorCode.BAD_FRAME, None),
        ('{"id":2}', ErrorCode.BAD_REQUEST, 2),
        ('{"op":5,"id":2}', ErrorCode.BAD_REQUEST, 2),
        ('{"op":"jump","id":2}', ErrorCode.UNKNOWN_OP, 2),
        ('{"op":"join","id":2}', ErrorCode.BAD_REQUEST, 2),
        ('{"op":"join","id":-2,"room":"a"}', ErrorCode.BAD_REQUEST, None),
        ('{"op":"join","id":true,"room":"a"}', ErrorCode.BAD_REQUEST, None),
        ('{"op":"join","id":2,"room":""}', ErrorCode.BAD_REQUEST, 2),
        ('{"op":"join","id":2,"room":"a","since":5}', ErrorCode.BAD_REQUEST, 2),
        ('{"op":"publish","id":2,"room":["a"]}', ErrorCode.BAD_REQUEST, 2),
    ],
)
def test_each_problem_has_its_code(text: str, code: ErrorCode, request_id: int | None) -> None:
    with pytest.raises(BadFrame) as problem:
        frames.read_frame(text)
    assert problem.value.code is code and problem.value.request_id == request_id and problem.value.reason


def test_a_broadcast_is_wrapped_by_kind() -> None:
    as_json = Delivery(b'{"a":1}', False, 7, room="chat:1", epoch="e1", is_json=True)
    assert json.loads(frames.wrap_message(as_json).payload) == {
        "op": "message", "room": "chat:1", "offset": 7, "epoch": "e1", "data": {"a": 1},
    }  # fmt: skip
    text = Delivery('{"looks":"like json"} é'.encode(), False, room="r")
    assert json.loads(frames.wrap_message(text).payload)["data"] == '{"looks":"like json"} é'
    binary = json.loads(frames.wrap_message(Delivery(b"\x00\xff", True, room='q"uote')).payload)
    assert binary == {"op": "message", "room": 'q"uote', "offset": 0, "epoch": "", "data": "AP8=", "binary": True}


def test_presence_diffs_embed_the_metadata_as_json() -> None:
    diff = frames.presence_diff("r", {"w.1": b'{"name":"a"}', "w.2": b""}, ["w.3"])
    assert diff.startswith(frames.PRESENCE_PREFIX)
    assert json.loads(diff) == {
        "op": "presence",
        "room": "r",
        "joins": {"w.1": {"name": "a"}, "w.2": None},
        "leaves": ["w.3"],
    }


def test_kicks_round_trip_and_other_bytes_are_not_kicks() -> None:
    kick = frames.read_kick(frames.kick("r", "spam"))
    assert kick is not None and (kick.room, kick.reason) == ("r", "spam")
    assert frames.read_kick(b'{"op":"presence"}') is None
    assert frames.read_kick(b"\xff") is None


def test_the_msgpack_form_wraps_and_converts_the_same_objects() -> None:
    packed = frames.wrap_msgpack_message(Delivery(b'{"a":[1,2]}', False, 3, room="r", epoch="e", is_json=True))
    assert packed.binary
    assert msgspec.msgpack.decode(packed.payload) == {
        "op": "message",
        "room": "r",
        "offset": 3,
        "epoch": "e",
        "data": {"a": [1, 2]},
    }
    assert (
        msgspec.msgpack.decode(frames.wrap_msgpack_message(Delivery(b"\x00", True, room="r")).payload)["data"]
        == b"\x00"
    )
    assert (
        msgspec.msgpack.decode(frames.wrap_msgpack_message(Delivery(b"[1]", False, room="r")).payload)["data"] == "[1]"
    )
    shared = frames.SharedFrame(frames.reset("r"))
    assert shared.delivery(frames.JSON) is shared.delivery(frames.JSON)
    assert msgspec.msgpack.decode(shared.delivery(frames.MSGPACK).payload) == {"op": "reset", "room": "r"}
    request = frames.read_msgpack_frame(
        msgspec.msgpack.encode({"op": "publish", "id": 2, "room": "r", "data": b"\x01"})
    )
    assert isinstance(request, Publish) and request.data == b"\x01"


def test_the_form_is_the_first_of_ours_the_client_offers() -> None:
    assert frames.choose_codec(["x", "fasterapi.v1.msgpack", "fasterapi.v1"]) == (
        frames.MSGPACK,
        "fasterapi.v1.msgpack",
    )
    assert frames.choose_codec(["fasterapi.v1", "fasterapi.v1.msgpack"]) == (frames.JSON, "fasterapi.v1")
    assert frames.choose_codec([]) == (frames.JSON, None)
    assert frames.choose_codec(["graphql-ws"]) == (frames.JSON, None)
