"""Room history through the hub, without the web core: positions, exact resume, gap repair.

Fake connections (the hub's Member interface) record what reaches them; a memory backend
that can lose chosen deliveries plays the part of a subscriber that dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from FasterAPI.pubsub import BackendUnavailable, Gap, History, JoinResult, Position
from FasterAPI.pubsub.backends.memory import MemoryBackend
from FasterAPI.pubsub.envelope import decode, room_channel
from FasterAPI.pubsub.history import HistoryRange, Retention
from FasterAPI.pubsub.hub import Hub
from tests.pubsub.test_hub import FakeMember, run, until

pytestmark = pytest.mark.timeout(30)


class LossyBackend(MemoryBackend):
    """A memory backend whose worker loses the deliveries ``lose`` says so of (kept in history)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose: Callable[[bytes], bool] = lambda data: False
        self.lost = 0

    def _deliver(self, channel: str, data: bytes) -> None:
        if self.lose(data):
            self.lost += 1
        else:
            super()._deliver(channel, data)


def offset_of(data: bytes) -> int:
    return decode(data).offset


@asynccontextmanager
async def history_hub(
    backend: MemoryBackend | None = None, history: History | None = None
) -> AsyncIterator[tuple[Hub, list[tuple[str, Gap]]]]:
    hub = Hub(backend or MemoryBackend(), history=history or History(size=50, ttl=60))
    gaps: list[tuple[str, Gap]] = []
    hub.gap_hooks.append(lambda room, gap: gaps.append((room, gap)))
    await hub.start()
    try:
        yield hub, gaps
    finally:
        await hub.stop()


def texts(member: FakeMember) -> list[str]:
    return [payload.decode() for payload in member.sink.payloads()]


def test_broadcasts_get_consecutive_positions_in_one_epoch() -> None:
    async def scenario() -> None:
        async with history_hub() as (hub, _):
            positions = [await hub.broadcast("r", n) for n in range(3)]
            assert [p.offset for p in positions if p] == [1, 2, 3]
            assert len({p.epoch for p in positions if p}) == 1
            other = await hub.broadcast("other", "x")
            assert other is not None and other.offset == 1
        plain = Hub("memory://")
        await plain.start()
        assert await plain.broadcast("r", "x") is None  # history off: as before
        await plain.stop()

    run(scenario())


def test_history_patterns_choose_the_rooms_that_keep_it() -> None:
    async def scenario() -> None:
        history = History(size=5, ttl=60, rooms={"live:*": None, "chat:*": History(size=2, ttl=5)})
        async with history_hub(history=history) as (hub, _):
            assert await hub.broadcast("live:scores", "x") is None
            for n in range(4):
                await hub.broadcast("chat:1", f"m{n}")
            kept = await hub.room_history("chat:1")
            assert [data for _, data in kept] == ["m2", "m3"]  # size 2 for chat:*
            assert (await hub.broadcast("other", "x")) == Position(1, (await hub.broadcast("other", "y")).epoch)  # type: ignore[union-attr]

    run(scenario())


def test_join_since_replays_what_was_missed_before_anything_live() -> None:
    async def scenario() -> None:
        async with history_hub() as (hub, _):
            first = FakeMember(hub)
            await hub.join(first, "r")
            seen = [await hub.broadcast("r", f"m{n}") for n in range(1, 4)]
            await until(lambda: len(first.sink.deliveries) == 3, "the first three")
            await hub.discard(first.id)  # the client drops after m3...
            for n in range(4, 8):  # ...and misses these
                await hub.broadcast("r", f"m{n}")
            again = FakeMember(hub)
            result = await hub.join(again, "r", since=seen[-1])
            assert result == JoinResult(True, Position(7, seen[-1].epoch))  # type: ignore[union-attr]
            await hub.broadcast("r", "m8")
            await until(lambda: len(again.sink.deliveries) == 5, "the replay and the live message")
            assert texts(again) == ["m4", "m5", "m6", "m7", "m8"]
            assert [d.offset for d in again.sink.deliveries] == [4, 5, 6, 7, 8]

    run(scenario())


class UnreadableBackend(MemoryBackend):
    """A memory backend whose history reads fail while ``down`` (a relay outage, for reads)."""

    down = False

    async def read_history(self, retention: Retention, after: int, limit: int) -> HistoryRange:
        if self.down:
            raise BackendUnavailable("the relay is down")
        return await super().read_history(retention, after, limit)


def test_a_resume_while_the_history_cannot_be_read_fails_and_a_retry_loses_nothing() -> None:
    async def scenario() -> None:
        backend = UnreadableBackend()
        async with history_hub(backend) as (hub, _):
            first = FakeMember(hub)
            await hub.join(first, "r")
            seen = await hub.broadcast("r", "m1")
            assert seen is not None
            await hub.discard(first.id)
            await hub.broadcast("r", "m2")
            backend.down = True
            again = FakeMember(hub)
            with pytest.raises(BackendUnavailable):
                await hub.join(again, "r", since=seen)
            assert hub.rooms_of(again.id) == ()  # not in the room: no gap behind its back
            await hub.broadcast("r", "m3")
            assert again.sink.deliveries == []
            backend.down = False
            result = await hub.join(again, "r", since=seen)
            assert result.recovered
            await until(lambda: len(again.sink.deliveries) == 2, "the replay")
            assert texts(again) == ["m2", "m3"]

    run(scenario())


def test_messages_published_while_the_history_is_read_come_once_in_order() -> None:
    class SlowReads(MemoryBackend):
        async def read_history(self, retention: Any, after: int, limit: int) -> Any:
            found = await super().read_history(retention, after, limit)
            if limit:  # the resume read: let live messages overtake it
                await publisher_ready.wait()
                await asyncio.sleep(0)
            return found

    publisher_ready = asyncio.Event()

    async def scenario() -> None:
        async with history_hub(SlowReads()) as (hub, _):
            watcher = FakeMember(hub)
            await hub.join(watcher, "r")
            since = await hub.broadcast("r", "m1")
            await hub.broadcast("r", "m2")
            member = FakeMember(hub)
            joining = asyncio.create_task(hub.join(member, "r", since=since))
            await until(lambda: len(watcher.sink.deliveries) == 2, "m1 and m2 to the watcher")
            await hub.broadcast("r", "m3")
            await hub.broadcast("r", "m4")
            await until(lambda: len(watcher.sink.deliveries) == 4, "the live messages")
            publisher_ready.set()
            result = await joining
            assert result.recovered
            await hub.broadcast("r", "m5")
            await until(lambda: len(member.sink.deliveries) == 4, "m2 to m5")
            assert texts(member) == ["m2", "m3", "m4", "m5"]

    run(scenario())


def test_join_since_outside_the_history_recovers_nothing() -> None:
    async def scenario() -> None:
        async with history_hub(history=History(size=3, ttl=60)) as (hub, _):
            old = await hub.broadcast("r", "m1")
            for n in range(2, 7):
                await hub.broadcast("r", f"m{n}")
            assert old is not None
            for top, since in enumerate((old, Position(old.offset, "another-epoch"), Position(99, old.epoch)), 6):
                member = FakeMember(hub)
                result = await hub.join(member, "r", since=since)
                assert result == JoinResult(False, Position(top, old.epoch))
                await hub.broadcast("r", "live")
                await until(lambda m=member: bool(m.sink.deliveries), "the live message")  # type: ignore[misc]
                assert texts(member) == ["live"]  # nothing replayed
            with pytest.raises(TypeError, match="Position"):
                await hub.join(FakeMember(hub), "r", since=(1, "e"))  # type: ignore[arg-type]

    run(scenario())


def test_a_lost_delivery_is_repaired_from_history_in_order() -> None:
    async def scenario() -> None:
        backend = LossyBackend()
        async with history_hub(backend) as (hub, gaps):
            member = FakeMember(hub)
            await hub.join(member, "r")
            backend.lose = lambda data: offset_of(data) in (2, 3, 5)
            for n in range(1, 7):
                await hub.broadcast("r", f"m{n}")
            await until(lambda: len(member.sink.deliveries) == 6, "all six")
            assert texts(member) == [f"m{n}" for n in range(1, 7)]
            assert hub.stats.history_repaired == 3 and gaps == []

    run(scenario())


def test_duplicates_are_delivered_once() -> None:
    async def scenario() -> None:
        backend = MemoryBackend()
        async with history_hub(backend) as (hub, _):
            member = FakeMember(hub)
            await hub.join(member, "r")
            await hub.broadcast("r", "m1")
            await until(lambda: bool(member.sink.deliveries), "m1")
            stored = (await backend.read_history(hub._retention("r"), 0, 10)).entries  # type: ignore[arg-type]
            hub.on_message(room_channel("r"), stored[0])  # the same message again
            await hub.broadcast("r", "m2")
            await until(lambda: len(member.sink.deliveries) == 2, "m2")
            assert texts(member) == ["m1", "m2"]

    run(scenario())


def test_a_reconnect_repairs_the_last_message_before_a_quiet_spell() -> None:
    async def scenario() -> None:
        backend = LossyBackend()
        async with history_hub(backend) as (hub, _):
            member = FakeMember(hub)
            await hub.join(member, "r")
            await hub.broadcast("r", "m1")
            await until(lambda: bool(member.sink.deliveries), "m1")
            backend.lose = lambda data: True  # the subscriber is gone...
            await hub.broadcast("r", "m2")  # ...and the room goes quiet: no later message shows the gap
            await until(lambda: backend.lost >= 1, "m2 to be lost")
            backend.lose = lambda data: False
            hub.on_connection_lost(None)
            hub.on_connection_restored()
            await until(lambda: len(member.sink.deliveries) == 2, "m2 from history")
            assert texts(member) == ["m1", "m2"] and hub.stats.history_repaired == 1

    run(scenario())


def test_a_range_the_history_no_longer_holds_is_a_gap() -> None:
    async def scenario() -> None:
        backend = LossyBackend()
        async with history_hub(backend, History(size=2, ttl=60)) as (hub, gaps):
            member = FakeMember(hub)
            await hub.join(member, "r")
            await hub.broadcast("r", "m1")
            await until(lambda: bool(member.sink.deliveries), "m1")
            backend.lose = lambda data: 0 < offset_of(data) < 6
            for n in range(2, 6):
                await hub.broadcast("r", f"m{n}")
            await until(lambda: backend.lost >= 4, "m2 to m5 to be lost")
            backend.lose = lambda data: False
            await hub.broadcast("r", "m6")
            await until(lambda: len(member.sink.deliveries) == 3, "m1, m5 (still kept), m6")
            assert texts(member) == ["m1", "m5", "m6"]
            await until(lambda: bool(gaps), "the gap hook")
            assert gaps == [("r", Gap("r", 2, 4, False))] and hub.stats.history_gaps == 1

    run(scenario())


def test_a_lost_history_is_one_gap_and_the_room_goes_on_in_its_new_epoch() -> None:
    async def scenario() -> None:
        backend = MemoryBackend()
        async with history_hub(backend) as (hub, gaps):
            member = FakeMember(hub)
            await hub.join(member, "r")
            before = await hub.broadcast("r", "m1")
            await until(lambda: bool(member.sink.deliveries), "m1")
            backend._logs.clear()  # what a Redis restarted empty looks like
            after = await hub.broadcast("r", "m2")
            assert before is not None and after is not None
            assert after.offset == 1 and after.epoch != before.epoch
            await until(lambda: len(member.sink.deliveries) == 2, "m2")
            await until(lambda: bool(gaps), "the gap hook")
            assert gaps == [("r", Gap("r", 2, 0, True))]
            again = FakeMember(hub)
            assert (await hub.join(again, "r", since=before)).recovered is False

    run(scenario())


def test_room_history_gives_back_the_data_as_sent() -> None:
    async def scenario() -> None:
        async with history_hub() as (hub, _):
            sent: list[Any] = ["text", b"\x00bytes", {"json": [1, 2]}, "123", 7]
            positions = [await hub.broadcast("r", data) for data in sent]
            kept = await hub.room_history("r")
            assert kept == list(zip(positions, sent, strict=True))
            assert [data for _, data in await hub.room_history("r", limit=2)] == ["123", 7]
            assert [data for _, data in await hub.room_history("r", since=positions[2])] == ["123", 7]
            plain = Hub("memory://")
            with pytest.raises(ValueError, match="keeps no history"):
                await plain.room_history("r")
            await plain.stop()

    run(scenario())


# -- the property: exactly once, in order, whatever is lost on the way -------------------

Step = tuple[str, int]
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 4)),
        st.tuples(st.just("lose"), st.integers(1, 3)),
        st.tuples(st.just("rejoin"), st.integers(0, 2)),
        st.tuples(st.just("reconnect"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, database=None)
@given(steps=_steps)
def test_every_member_gets_every_message_once_in_order(steps: list[Step]) -> None:
    """Publishes, deliveries lost on the way to the worker, members that rejoin with the last
    position they saw, relay reconnects: in any interleaving, each member (across its sessions)
    ends with every offset exactly once, in order."""

    async def scenario() -> None:
        backend = LossyBackend()
        losing: set[int] = set()
        backend.lose = lambda data: offset_of(data) in losing
        async with history_hub(backend, History(size=1000, ttl=60)) as (hub, gaps):
            members = [FakeMember(hub) for _ in range(3)]
            sessions: list[list[FakeMember]] = [[member] for member in members]
            epoch = ""
            for member in members:
                joined = await hub.join(member, "r")
                assert joined.position is not None
                epoch = joined.position.epoch
            published = 0

            def seen(index: int) -> list[int]:
                return [d.offset for session in sessions[index] for d in session.sink.deliveries]

            for action, n in steps:
                if action == "publish":
                    for _ in range(n):
                        position = await hub.broadcast("r", f"m{published + 1}")
                        assert position is not None
                        published = position.offset
                elif action == "lose":
                    losing.update(range(published + 1, published + 1 + n))
                elif action == "rejoin":
                    current = sessions[n][-1]
                    await hub.discard(current.id)
                    offsets = seen(n)
                    again = FakeMember(hub)
                    sessions[n].append(again)
                    result = await hub.join(again, "r", since=Position(offsets[-1] if offsets else 0, epoch))
                    assert result.recovered, (steps, offsets)
                else:
                    hub.on_connection_lost(None)
                    hub.on_connection_restored()
            losing.clear()
            last = await hub.broadcast("r", "final")  # never lost: shows any gap before it
            assert last is not None
            everywhere = f"offset {last.offset} at every member"
            await until(lambda: all(seen(i)[-1:] == [last.offset] for i in range(3)), everywhere)
            for index in range(3):
                assert seen(index) == list(range(1, last.offset + 1)), (steps, index, seen(index))
            assert gaps == []

    run(scenario())
