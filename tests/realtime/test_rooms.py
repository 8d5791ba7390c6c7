"""Room patterns and the handlers declared on them (parameters resolved like a route's)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from FasterAPI import Depends
from FasterAPI.exceptions import WebSocketRequestValidationError
from FasterAPI.realtime.rooms import InvalidPayload, RoomHandler, RoomPattern, RoomTable
from FasterAPI.websockets import WebSocket


def test_patterns_match_whole_names_and_parameters_stop_at_colons() -> None:
    chat = RoomPattern("chat:{room_id}")
    assert chat.match("chat:42") == {"room_id": "42"}
    assert chat.match("chat:") is None and chat.match("chat:1:2") is None and chat.match("xchat:1") is None
    cursors = RoomPattern("doc:{doc}:cursor.{user}")
    assert cursors.match("doc:7:cursor.ann") == {"doc": "7", "user": "ann"}
    assert cursors.match("doc:7:cursorXann") is None  # literal text is literal
    assert RoomPattern("lobby").match("lobby") == {}
    for bad in ("", "a:{x}:{x}", "a:{x", "a:{1x}"):
        with pytest.raises(ValueError):
            RoomPattern(bad)


def test_the_first_declared_pattern_wins() -> None:
    table = RoomTable()
    table.add("chat:lobby", lambda: "lobby")
    table.add("chat:{room_id}", lambda room_id: room_id)
    found = table.find("chat:lobby")
    assert found is not None and found[0].pattern.pattern == "chat:lobby"
    assert table.find("other") is None


class Payload(msgspec.Struct):
    name: str
    tags: list[str] = []


def fake_socket(query: bytes = b"") -> WebSocket:
    async def receive() -> dict[str, Any]:
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError

    scope = {"type": "websocket", "path": "/rt", "query_string": query, "headers": []}
    return WebSocket(scope, receive, send)


def test_a_handler_gets_typed_parameters_dependencies_the_socket_and_the_payload() -> None:
    def user(ws: WebSocket) -> str:
        return ws.query_params["token"]

    async def guard(n: int, payload: Payload, ws: WebSocket, who: str = Depends(user), page: int = 1) -> Any:
        return {"n": n, "name": payload.name, "who": who, "page": page, "path": ws.url.path}

    handler = RoomHandler(RoomPattern("count:{n}"), guard)
    assert handler.payload_name == "payload" and handler.payload_required
    payload = handler.convert({"name": "ann"})
    result = asyncio.run(handler.call(fake_socket(b"token=t&page=3"), {"n": "5"}, payload))
    assert result == {"n": 5, "name": "ann", "who": "t", "page": 3, "path": "/rt"}
    with pytest.raises(WebSocketRequestValidationError):
        asyncio.run(handler.call(fake_socket(b"token=t"), {"n": "five"}, payload))
    with pytest.raises(InvalidPayload, match=r"payload\.tags"):
        handler.convert({"name": "ann", "tags": "x"})
    with pytest.raises(InvalidPayload, match="required"):
        handler.convert(msgspec.UNSET)


def test_a_payload_with_a_default_is_optional_and_a_handler_may_have_none() -> None:
    async def guard(room_id: str, payload: Payload | None = None) -> Any:
        return payload

    handler = RoomHandler(RoomPattern("r:{room_id}"), guard)
    assert not handler.payload_required
    assert asyncio.run(handler.call(fake_socket(), {"room_id": "1"}, handler.convert(msgspec.UNSET))) is None
    plain = RoomHandler(RoomPattern("lobby"), lambda: "ok")
    assert plain.payload_name is None
    assert asyncio.run(plain.call(fake_socket(), {}, plain.convert({"ignored": True}))) == "ok"
