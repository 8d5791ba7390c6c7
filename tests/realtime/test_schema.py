"""The realtime endpoint in the AsyncAPI document: its channel with the protocol's frames, and a
channel per room pattern with the payload and message types its handlers declare; the document
still validates against AsyncAPI 3.0.0."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from FasterAPI import Faster
from FasterAPI.pubsub.delivery import Delivery
from FasterAPI.realtime import frames
from FasterAPI.testclient import TestClient
from tests.apps.realtime_app import app as realtime_app
from tests.asyncapi.test_utils import assert_valid_asyncapi


class Invite(msgspec.Struct):
    code: str


class Line(msgspec.Struct):
    text: str


class Said(msgspec.Struct):
    user: str
    text: str


def _app() -> Faster:
    app = Faster(title="Rooms", version="2.0")
    rt = app.realtime("/rt")

    @rt.room("chat:{room_id}")
    async def join_chat(room_id: str, invite: Invite) -> None:
        """Chat rooms need an invitation code."""

    @rt.on_publish("chat:{room_id}")
    async def say(room_id: str, line: Line) -> Said | None:
        return Said("ann", line.text)

    @rt.room("ticker:{symbol}", presence=False)
    async def join_ticker(symbol: str) -> None:
        pass

    return app


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    with TestClient(_app()) as client:
        response = client.get("/asyncapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def _messages(document: dict[str, Any], channel: str) -> set[str]:
    return {ref["$ref"].rsplit("/", 1)[1] for ref in document["channels"][channel]["messages"].values()}


def _operation(document: dict[str, Any], channel: str, action: str) -> set[str]:
    for operation in document["operations"].values():
        if operation["channel"]["$ref"] == f"#/channels/{channel}" and operation["action"] == action:
            return {ref["$ref"].rsplit("/", 1)[1] for ref in operation["messages"]}
    raise AssertionError(f"no {action} operation on {channel}")


def test_document_is_valid_asyncapi(document: dict[str, Any]) -> None:
    assert_valid_asyncapi(document)


def test_the_endpoint_channel_has_every_frame_of_the_protocol(document: dict[str, Any]) -> None:
    channel = document["channels"]["realtime_rt"]
    assert channel["address"] == "/rt"
    assert _operation(document, "realtime_rt", "receive") == {"Join", "Leave", "Publish", "Ping", "Pong"}
    sent = {"Welcome", "Joined", "Denied", "Left", "Ack", "Error", "Message", "Presence", "Reset", "Ping", "Pong"}
    assert _operation(document, "realtime_rt", "send") == sent
    # Each frame's payload names its op, as the wire does.
    joined = document["components"]["schemas"]["Joined"]
    assert joined["properties"]["op"] == {"enum": ["joined"]}
    # The WebSocket route itself is not a second, empty channel: the endpoint, and a channel per pattern.
    assert list(document["channels"]) == ["realtime_rt", "realtime_rt_chat__room_id_", "realtime_rt_ticker__symbol_"]


def test_a_room_pattern_has_its_declared_payload_data_and_message(document: dict[str, Any]) -> None:
    key = "realtime_rt_chat__room_id_"
    channel = document["channels"][key]
    assert channel["address"] == "/rt"
    assert channel["title"] == "Rooms chat:{room_id}"
    assert "invitation code" in channel["description"]
    assert _operation(document, key, "receive") == {"JoinChatRoomId", "PublishChatRoomId"}
    assert _operation(document, key, "send") == {"MessageChatRoomId"}
    schemas = document["components"]["schemas"]
    join = schemas["JoinChatRoomId"]
    assert join["properties"]["payload"] == {"$ref": "#/components/schemas/Invite"}
    assert "payload" in join["required"]
    assert schemas["PublishChatRoomId"]["properties"]["data"] == {"$ref": "#/components/schemas/Line"}
    # The handler returns ``Said | None``; None broadcasts nothing, so a message carries a Said.
    assert schemas["MessageChatRoomId"]["properties"]["data"] == {"$ref": "#/components/schemas/Said"}


def test_a_room_without_declared_types_uses_the_protocol_frames(document: dict[str, Any]) -> None:
    key = "realtime_rt_ticker__symbol_"
    assert _operation(document, key, "receive") == {"Join"}
    assert _operation(document, key, "send") == {"Message"}
    description = document["channels"][key]["description"]
    assert "presence=False" in description and "cannot publish" in description


def test_the_frame_structs_read_what_the_server_writes() -> None:
    """``Message`` and ``Presence`` describe frames written as bytes: they must read them back."""

    binary = frames.wrap_message(Delivery(b"\x00\x01", True, 3, room="r", epoch="e"))
    message = msgspec.json.decode(binary.payload, type=frames.Message)
    assert (message.room, message.offset, message.binary, message.data) == ("r", 3, True, "AAE=")
    presence = msgspec.json.decode(frames.presence_diff("r", {"c.1": b'{"n":1}'}, ["c.2"]), type=frames.Presence)
    assert presence == frames.Presence("r", {"c.1": {"n": 1}}, ["c.2"])
    for frame in (frames.left(1, "r"), frames.removed("r", "bye"), frames.joined(1, "r", False, None, {})):
        msgspec.json.decode(frame, type=frames.ServerFrame)


def test_the_test_realtime_app_documents_every_room() -> None:
    with TestClient(realtime_app) as client:
        document = client.get("/asyncapi.json").json()
    assert_valid_asyncapi(document)
    titles = {channel.get("title") for channel in document["channels"].values()}
    assert {"Rooms chat:{room_id}", "Rooms count:{n}", "Rooms live:{name}"} <= titles
