"""Server-sent events: the wire format, FastAPI-style generator routes, pings and disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from FasterAPI import Faster
from FasterAPI.responses import StreamingResponse
from FasterAPI.sse import KEEPALIVE_COMMENT, EventSourceResponse, ServerSentEvent, format_sse_event
from FasterAPI.testclient import TestClient
from FasterAPI.types import Message


class Tick(msgspec.Struct):
    n: int


def test_event_fields_and_multi_line_data_on_the_wire() -> None:
    event = ServerSentEvent(raw_data="one\ntwo\r\nthree\rfour", event="update", id="7", retry=1500, comment="hi\nthere")
    assert event.encode() == (
        b": hi\n: there\nevent: update\ndata: one\ndata: two\ndata: three\ndata: four\nid: 7\nretry: 1500\n\n"
    )
    assert ServerSentEvent(data={"a": 1}).encode() == b'data: {"a":1}\n\n'
    assert ServerSentEvent(data="quoted").encode() == b'data: "quoted"\n\n'  # data is always JSON, as FastAPI
    assert ServerSentEvent(comment="only a comment").encode() == b": only a comment\n\n"
    assert format_sse_event(data="") == b"data: \n\n"


@pytest.mark.parametrize(
    "options",
    [{"event": "a\nb"}, {"id": "a\rb"}, {"id": "a\x00b"}, {"retry": -1}, {"data": 1, "raw_data": "1"}],
)
def test_invalid_events_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ServerSentEvent(**options)


def test_a_returned_event_source_response_streams_events_and_values() -> None:
    app = Faster()

    @app.get("/events")
    async def events() -> EventSourceResponse:
        async def items() -> AsyncIterator[Any]:
            yield ServerSentEvent(raw_data="hello", event="greeting")
            yield Tick(n=2)

        return EventSourceResponse(items())

    response = TestClient(app).get("/events")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.text == 'event: greeting\ndata: hello\n\ndata: {"n":2}\n\n'


def test_a_generator_route_with_response_class_as_in_fastapi() -> None:
    app = Faster()

    @app.get("/ticks", response_class=EventSourceResponse)
    async def ticks(count: int = 2) -> AsyncIterator[Tick]:
        for n in range(count):
            yield Tick(n=n)

    client = TestClient(app)
    assert client.get("/ticks", params={"count": 3}).text == 'data: {"n":0}\n\ndata: {"n":1}\n\ndata: {"n":2}\n\n'
    assert client.get("/ticks", params={"count": "x"}).status_code == 422  # parameters still validated


def test_a_generator_route_without_a_streaming_response_class_is_refused() -> None:
    app = Faster()

    async def ticks() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="response_class=EventSourceResponse"):
        app.get("/ticks")(ticks)


def test_only_async_iterators_are_taken() -> None:
    with pytest.raises(TypeError, match="async iterator"):
        EventSourceResponse(iter([1, 2]))  # type: ignore[arg-type]


def test_pings_while_idle_and_the_generator_closed_when_the_client_leaves() -> None:
    asyncio.run(_idle_then_disconnect())


async def _idle_then_disconnect() -> None:
    closed = asyncio.Event()

    async def items() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(raw_data="first")
            await asyncio.Event().wait()  # never another event
        finally:
            closed.set()

    response = EventSourceResponse(items(), ping=0.01)
    bodies: list[bytes] = []
    pinged = asyncio.Event()
    leave = asyncio.Event()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            if message["body"] == KEEPALIVE_COMMENT and bodies.count(KEEPALIVE_COMMENT) >= 2:
                pinged.set()

    async def receive() -> Message:
        await leave.wait()
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    task = asyncio.create_task(response(scope, receive, send))
    await asyncio.wait_for(pinged.wait(), 30)
    assert bodies[0] == b"data: first\n\n"
    assert not closed.is_set()
    leave.set()
    await asyncio.wait_for(task, 30)
    assert closed.is_set()  # the generator's finally ran as soon as the client left
    assert all(body in (b"data: first\n\n", KEEPALIVE_COMMENT) for body in bodies)


def test_a_send_failure_is_taken_as_a_disconnect() -> None:
    asyncio.run(_send_fails())


async def _send_fails() -> None:
    closed = asyncio.Event()

    async def items() -> AsyncIterator[ServerSentEvent]:
        try:
            while True:
                yield ServerSentEvent(raw_data="x")
        finally:
            closed.set()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            raise OSError("connection reset")

    async def receive() -> Message:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    await asyncio.wait_for(EventSourceResponse(items())({"type": "http"}, receive, send), 30)
    assert closed.is_set()


def test_a_plain_generator_cannot_stream_events_but_can_stream_bytes() -> None:
    app = Faster()

    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    with pytest.raises(TypeError, match="'async def' generator"):
        app.get("/events", response_class=EventSourceResponse)(chunks)
    app.get("/bytes", response_class=StreamingResponse)(chunks)
    assert TestClient(app).get("/bytes").content == b"ab"
