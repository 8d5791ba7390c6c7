"""The bounded per-connection queue: overflow policies, isolation of a stuck connection."""

from __future__ import annotations

import asyncio
from typing import Any

from FasterAPI.config import Overflow
from FasterAPI.pubsub.delivery import SinkSettings
from FasterAPI.pubsub.hub import HubStats
from FasterAPI.pubsub.outbox import Outbox
from FasterAPI.types import WebSocketState


class GatedSocket:
    """A connection (what an Outbox needs of one) whose transport accepts a message only when
    the test opens the gate."""

    def __init__(self, *, is_open: bool, fail_with: Exception | None = None) -> None:
        self.id = "w.1"
        self.application_state = WebSocketState.CONNECTED
        self.sent: list[Any] = []
        self.cancelled = 0
        self.gate = asyncio.Event()
        if is_open:
            self.gate.set()
        self.fail_with = fail_with

    async def send(self, message: Any) -> None:
        """The raw ASGI send."""
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.application_state = WebSocketState.DISCONNECTED
        await self.send({"type": "websocket.close", "code": code, "reason": reason or ""})


def outbox_on(ws: GatedSocket, settings: SinkSettings) -> Outbox:
    return Outbox(ws, ws.send, settings)


def gated_outbox(
    limit: int = 10, policy: Overflow = Overflow.CLOSE, *, is_open: bool
) -> tuple[GatedSocket, Outbox, HubStats]:
    """An Outbox on a GatedSocket, with stats of its own."""
    ws = GatedSocket(is_open=is_open)
    stats = HubStats()
    return ws, outbox_on(ws, SinkSettings(limit, policy, stats)), stats


def message(n: int) -> dict[str, Any]:
    return {"type": "websocket.send", "text": str(n)}


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_messages_drain_in_order() -> None:
    async def scenario() -> None:
        ws, outbox, stats = gated_outbox(is_open=True)
        for n in range(8):
            outbox.put(message(n))
        await _settle()
        assert [m["text"] for m in ws.sent] == [str(n) for n in range(8)]
        assert stats.delivered == 8

    asyncio.run(scenario())


def test_a_send_that_need_not_wait_completes_inside_put_without_a_task() -> None:
    async def scenario() -> None:
        ws, outbox, stats = gated_outbox(is_open=True)
        outbox.put(message(1))
        assert ws.sent == [message(1)] and stats.delivered == 1
        assert outbox._drain_task is None and outbox.queue is None

    asyncio.run(scenario())


def test_a_send_that_waits_finishes_on_a_task_with_later_messages_behind_it() -> None:
    async def scenario() -> None:
        ws, outbox, stats = gated_outbox(is_open=False)
        outbox.put(message(0))  # starts, then waits for the transport
        outbox.put(message(1))
        outbox.put(message(2))
        await _settle()
        assert ws.sent == [] and outbox.pending == 2 and outbox._drain_task is not None
        ws.gate.set()
        await _settle()
        assert [m["text"] for m in ws.sent] == ["0", "1", "2"]
        assert stats.delivered == 3 and outbox._drain_task is None and outbox.queue is None
        outbox.put(message(3))  # idle again: straight through
        assert ws.sent[-1] == message(3)

    asyncio.run(scenario())


def test_closing_cancels_a_waiting_send_inside_the_server() -> None:
    async def scenario() -> None:
        ws, outbox, _ = gated_outbox(is_open=False)
        outbox.put(message(0))
        await _settle()
        outbox.close()
        await _settle()
        assert ws.cancelled == 1  # the cancellation reached the server's send
        ws.gate.set()
        await _settle()
        assert ws.sent == []

    asyncio.run(scenario())


def test_a_failed_send_closes_only_that_outbox() -> None:
    async def scenario() -> None:
        stats = HubStats()
        settings = SinkSettings(10, Overflow.CLOSE, stats)
        failures = [OSError("gone"), RuntimeError("closed by the server"), ValueError("bug")]
        for error in failures:
            now = outbox_on(GatedSocket(is_open=True, fail_with=error), settings)
            now.put(message(0))  # fails on the spot
            assert now.closed
        waiting = GatedSocket(is_open=False, fail_with=OSError("gone"))
        later = outbox_on(waiting, settings)
        later.put(message(0))  # fails after waiting, on the task
        await _settle()
        assert not later.closed
        waiting.gate.set()
        await _settle()
        assert later.closed and later._drain_task is None
        fine = GatedSocket(is_open=True)
        outbox_on(fine, settings).put(message(1))
        assert fine.sent == [message(1)] and stats.delivered == 1

    asyncio.run(scenario())


def test_overflow_closes_with_1013_and_counts() -> None:
    async def scenario() -> None:
        ws, outbox, stats = gated_outbox(4, is_open=False)
        for n in range(6):  # one in flight, four queued, the sixth overflows
            outbox.put(message(n))
            await _settle()
        assert outbox.closed
        assert stats.slow_consumer_closes == 1
        ws.gate.set()
        await _settle()
        assert ws.sent[-1] == {"type": "websocket.close", "code": 1013, "reason": "send queue overflow"}
        assert ws.application_state is WebSocketState.DISCONNECTED
        outbox.put(message(99))  # ignored once closed
        assert outbox.pending == 0

    asyncio.run(scenario())


def test_drop_oldest_keeps_the_newest_and_counts_the_dropped() -> None:
    async def scenario() -> None:
        ws, outbox, stats = gated_outbox(3, Overflow.DROP_OLDEST, is_open=False)
        outbox.put(message(0))
        await _settle()  # message 0 is now in flight, blocked on the gate
        for n in range(1, 8):
            outbox.put(message(n))
        assert [m["text"] for m in outbox.queue] == ["5", "6", "7"]
        assert stats.dropped == 4
        ws.gate.set()
        await _settle()
        assert [m["text"] for m in ws.sent] == ["0", "5", "6", "7"]
        assert not outbox.closed

    asyncio.run(scenario())


def test_a_stuck_connection_does_not_delay_others() -> None:
    async def scenario() -> None:
        stats = HubStats()
        settings = SinkSettings(100, Overflow.CLOSE, stats)
        stuck = outbox_on(GatedSocket(is_open=False), settings)
        readers = [GatedSocket(is_open=True) for _ in range(10)]
        outboxes = [outbox_on(ws, settings) for ws in readers]
        for n in range(50):
            stuck.put(message(n))
            for outbox in outboxes:
                outbox.put(message(n))
        await _settle()
        assert all(len(ws.sent) == 50 for ws in readers)
        assert stuck.pending == 49  # one in flight, the rest waiting, bounded by 100

    asyncio.run(scenario())
