"""A Delivery's encoded forms, and the one overflow policy every sink uses."""

from __future__ import annotations

import logging

import pytest

from FasterAPI.config import Overflow
from FasterAPI.pubsub.delivery import Delivery, Sink, SinkSettings
from FasterAPI.pubsub.hub import HubStats


def test_each_encoded_form_is_built_once_per_delivery() -> None:
    calls: list[str] = []

    def upper(payload: bytes, binary: bool) -> bytes:
        calls.append("upper")
        return payload.upper()

    def tagged(payload: bytes, binary: bool) -> bytes:
        calls.append("tagged")
        return (b"B:" if binary else b"T:") + payload

    text = Delivery(b"hello", binary=False)
    for _ in range(3):
        assert text.encoded(upper) == b"HELLO"
        assert text.encoded(tagged) == b"T:hello"
    assert calls == ["upper", "tagged"]
    assert Delivery(b"\x00", binary=True).encoded(tagged) == b"B:\x00"


def test_the_asgi_message_is_built_once_and_typed_by_kind() -> None:
    text, binary = Delivery("é".encode(), binary=False), Delivery(b"\xff", binary=True)
    assert text.message == {"type": "websocket.send", "text": "é"}
    assert text.message is text.message
    assert binary.message == {"type": "websocket.send", "bytes": b"\xff"}


class QueueSink(Sink):
    """A sink with a visible queue, to watch the policy act on it."""

    def __init__(self, queued: int) -> None:
        self.queue = list(range(queued))
        self.overflow_closed = False

    def deliver(self, delivery: Delivery) -> None:
        pass

    def close(self) -> None:
        self.queue = []

    @property
    def pending(self) -> int:
        return len(self.queue)

    @property
    def label(self) -> str:
        return "Connection test.1"

    def drop_oldest(self) -> None:
        self.queue.pop(0)

    def close_for_overflow(self) -> None:
        self.overflow_closed = True
        self.close()


def test_drop_oldest_makes_room_and_counts_one_drop() -> None:
    stats = HubStats()
    sink = QueueSink(3)
    assert SinkSettings(3, Overflow.DROP_OLDEST, stats).overflow(sink) is True
    assert sink.queue == [1, 2] and stats.dropped == 1 and stats.slow_consumer_closes == 0


def test_close_counts_everything_it_drops_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    stats = HubStats()
    sink = QueueSink(3)
    with caplog.at_level(logging.WARNING, logger="fasterapi.hub"):
        assert SinkSettings(3, Overflow.CLOSE, stats).overflow(sink) is False
    assert sink.overflow_closed and stats.slow_consumer_closes == 1
    assert stats.dropped == 4  # the three queued and the one that did not fit
    assert "Connection test.1 fell 3 broadcasts behind; closing it with 1013" in caplog.text


def test_each_derived_delivery_is_built_once_per_transform() -> None:
    calls: list[str] = []

    def bracket(delivery: Delivery) -> Delivery:
        calls.append("bracket")
        return Delivery(b"[" + delivery.payload + b"]", False)

    def star(delivery: Delivery) -> Delivery:
        calls.append("star")
        return Delivery(b"*" + delivery.payload, False)

    original = Delivery(b"x", False, 3, room="r", epoch="e", is_json=True)
    for _ in range(3):
        assert original.derived(bracket).payload == b"[x]"
        assert original.derived(star).payload == b"*x"
    assert original.derived(bracket) is original.derived(bracket)
    assert calls == ["bracket", "star"]
    assert (original.room, original.epoch, original.offset, original.is_json) == ("r", "e", 3, True)
