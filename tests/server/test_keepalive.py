"""Keepalive pings on one timer per loop (FasterAPI.server.keepalive) and through the protocol."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.frames import Opcode

from FasterAPI.server.keepalive import MAX_TICK, MIN_TICK, KeepaliveWheel, wheel_for

from .test_protocol import make_app, new_socket, settle

pytestmark = pytest.mark.timeout(30)


class Connection:
    def __init__(self, name: str, calls: list[tuple[str, float]]) -> None:
        self.name = name
        self.calls = calls
        self._keepalive_at: int | None = None

    def keepalive_due(self) -> None:
        self.calls.append((self.name, time.monotonic()))
        if self.name == "faulty":
            raise RuntimeError("this connection's keepalive fails")


async def until(condition: Any, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met before the deadline"
        await asyncio.sleep(0.005)


def test_the_wheel_calls_each_connection_once_when_due_never_early() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        wheel = KeepaliveWheel(loop, tick=0.01)
        calls: list[tuple[str, float]] = []
        early, late, faulty, dropped = (Connection(name, calls) for name in ("early", "late", "faulty", "dropped"))
        start = time.monotonic()
        wheel.schedule(late, 0.05)
        wheel.schedule(early, 0.02)
        wheel.schedule(faulty, 0.01)
        wheel.schedule(dropped, 0.03)
        wheel.discard(dropped)
        wheel.schedule(late, 0.06)  # rescheduled: the first due time is forgotten
        assert len(wheel) == 3
        await until(lambda: len(calls) == 3)
        assert [name for name, _ in calls] == ["faulty", "early", "late"]  # a failing one stops nobody
        due = {"faulty": 0.01, "early": 0.02, "late": 0.06}
        for name, at in calls:
            assert at - start >= due[name] - 0.002  # the loop's clock may round
        assert len(wheel) == 0 and not wheel.buckets and wheel._timer is None
        assert all(connection._keepalive_at is None for connection in (early, late, faulty, dropped))

    asyncio.run(scenario())


def test_one_wheel_per_loop_and_tick() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        wheel = wheel_for(loop, 20.0, 20.0)
        assert wheel.tick == MAX_TICK and wheel_for(loop, 20.0, None) is wheel
        assert wheel_for(loop, 0.05, 1.0).tick == max(MIN_TICK, 0.005)  # a tenth of the shortest, bounded

    asyncio.run(scenario())


def pings_and_pongs(transport: Any, peer: Any) -> list[Opcode]:
    """The control frames the server wrote; the peer's automatic pongs are sent back."""
    opcodes = [frame.opcode for frame in peer.frames()]
    answer = b"".join(peer.client.data_to_send())
    if answer and not transport.closing:
        transport.protocol.data_received(answer)
    return opcodes


@asynccontextmanager
async def pinged_socket(interval: float, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
    """A connection through the handshake, pinged every ``interval``, pongs due in ``timeout``."""
    app = make_app([])
    await app.hub.start()
    try:
        transport, peer = new_socket(app, ws_ping_interval=interval, ws_ping_timeout=timeout)
        transport.protocol.data_received(peer.handshake_bytes())
        await settle()
        assert peer.frames() == [] and peer.response is not None
        yield transport, peer
    finally:
        await app.hub.stop()


def test_a_peer_that_answers_stays_open_across_many_pings() -> None:
    async def scenario() -> None:
        async with pinged_socket(interval=0.05, timeout=0.05) as (transport, peer):
            pings = 0

            def pinged() -> bool:
                nonlocal pings
                pings += pings_and_pongs(transport, peer).count(Opcode.PING)
                return pings >= 5

            await until(pinged)
            assert not transport.closing
            # No timer of its own: the connection is an entry of the loop's wheel.
            protocol = transport.protocol
            assert protocol.ping_timer is None and protocol.pong_timer is None
            assert protocol._keepalive_at is not None
            transport.close()
            await settle()
            assert protocol._keepalive_at is None  # closed: out of the wheel

    asyncio.run(scenario())


def test_a_peer_that_does_not_answer_is_closed_with_1011_after_the_timeout() -> None:
    async def scenario() -> None:
        async with pinged_socket(interval=0.05, timeout=0.1) as (transport, peer):
            await until(lambda: bool(transport.written))
            pinged_at = time.monotonic()
            assert [frame.opcode for frame in peer.frames()] == [Opcode.PING]  # not answered
            await until(lambda: transport.closing)
            assert time.monotonic() - pinged_at >= 0.1 - 0.005
            close = peer.frames()[-1]
            assert close.opcode is Opcode.CLOSE and close.data[:2] == (1011).to_bytes(2, "big")

    asyncio.run(scenario())
