"""The hub on its own: rooms, fan-out, direct sends and bookkeeping against small fake
connections (the :class:`~FasterAPI.pubsub.hub.Member` interface), without the web core.

The memory backend delivers on a later loop iteration, as a network backend would, so the
tests wait for the loop to run until a condition holds, within a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from FasterAPI.pubsub.backends.memory import MemoryBackend
from FasterAPI.pubsub.delivery import Delivery, Sink, SinkSettings
from FasterAPI.pubsub.envelope import ENVELOPE_OVERHEAD, prepare, room_channel, worker_channel
from FasterAPI.pubsub.errors import BackendUnavailable, InvalidRoomName, PubSubError, TooManyRooms
from FasterAPI.pubsub.hub import Hub
from FasterAPI.pubsub.publisher import Publisher
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")


class RecordingSink(Sink):
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.closed = False
        self.settings: SinkSettings | None = None

    def deliver(self, delivery: Delivery) -> None:
        if not self.closed:
            self.deliveries.append(delivery)

    def close(self) -> None:
        self.closed = True

    @property
    def pending(self) -> int:
        return 0

    @property
    def label(self) -> str:
        return "recording sink"

    def drop_oldest(self) -> None:
        pass

    def close_for_overflow(self) -> None:
        self.close()

    def payloads(self) -> list[bytes]:
        return [delivery.payload for delivery in self.deliveries]


class FakeMember:
    """A connection as the hub sees one: an id the hub issued, and a sink."""

    def __init__(self, hub: Hub) -> None:
        self.id = hub.new_connection_id()
        self.sink = RecordingSink()
        self.sinks_opened = 0

    def open_sink(self, settings: SinkSettings) -> Sink:
        self.sinks_opened += 1
        self.sink.settings = settings
        return self.sink


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(20):
            return await coro

    return asyncio.run(bounded())


@asynccontextmanager
async def started(backend: MemoryBackend | str | None = None, **options: Any) -> AsyncIterator[Hub]:
    hub = Hub(backend or "memory://", **options)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Let the loop run until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def test_a_broadcast_reaches_every_member_but_the_excluded_one_as_one_shared_delivery() -> None:
    async def scenario() -> None:
        async with started() as hub:
            a, b, c, outsider = (FakeMember(hub) for _ in range(4))
            for member in (a, b, c):
                await hub.join(member, "lobby")
            await hub.join(outsider, "elsewhere")
            await hub.broadcast("lobby", "hi", exclude=b)
            await hub.broadcast("lobby", b"\x00raw", exclude=c.id)
            await until(lambda: len(a.sink.deliveries) == 2, "both broadcasts")
            assert a.sink.payloads() == [b"hi", b"\x00raw"]
            assert b.sink.payloads() == [b"\x00raw"] and c.sink.payloads() == [b"hi"]
            assert outsider.sink.deliveries == []
            # Decoded once per worker: every member got the very same object.
            assert a.sink.deliveries[0] is c.sink.deliveries[0]
            assert [d.binary for d in a.sink.deliveries] == [False, True]
            assert hub.stats.published == 2

    run(scenario())


def test_a_direct_send_reaches_a_known_connection_in_no_room() -> None:
    async def scenario() -> None:
        async with started() as hub:
            target, other = FakeMember(hub), FakeMember(hub)
            hub.add(target)
            hub.add(target)  # idempotent: one sink
            await hub.join(other, "r")
            await hub.send_to(target.id, {"n": 1})
            await until(lambda: bool(target.sink.deliveries), "the direct send")
            assert target.sink.payloads() == [b'{"n":1}'] and other.sink.deliveries == []
            assert target.sinks_opened == 1
            with pytest.raises(ValueError, match="Not a connection id"):
                await hub.send_to("no-dot", "x")

    run(scenario())


def test_join_and_leave_keep_the_hubs_record_and_the_subscriptions() -> None:
    async def scenario() -> None:
        backend = MemoryBackend()
        async with started(backend) as hub:
            a, b = FakeMember(hub), FakeMember(hub)
            await hub.join(a, "r1")
            await hub.join(a, "r1")  # idempotent
            await hub.join(a, "r2")
            await hub.join(b, "r1")
            assert hub.rooms_of(a.id) == ("r1", "r2") and hub.rooms_of("unknown.1") == ()
            assert {room_channel("r1"), room_channel("r2")} <= backend.subscribed_channels
            assert sorted(await hub.room_members("r1")) == sorted([a.id, b.id])
            await hub.leave(a.id, "r2")
            await hub.leave(a.id, "r2")  # a no-op
            assert room_channel("r2") not in backend.subscribed_channels
            assert hub.rooms_of(a.id) == ("r1",)
            await hub.broadcast("r2", "gone")
            await hub.broadcast("r1", "here")
            await until(lambda: bool(b.sink.deliveries), "the broadcast to r1")
            await until(lambda: bool(a.sink.deliveries), "the broadcast to r1")
            assert a.sink.payloads() == [b"here"]
            with pytest.raises(InvalidRoomName):
                await hub.join(a, "bad\x00room")

    run(scenario())


def test_discard_closes_the_sink_and_leaves_every_room() -> None:
    async def scenario() -> None:
        backend = MemoryBackend()
        async with started(backend) as hub:
            a, b = FakeMember(hub), FakeMember(hub)
            for room in ("x", "y"):
                await hub.join(a, room)
            await hub.join(b, "y")
            await hub.discard(a.id)
            await hub.discard(a.id)  # never raises, twice included
            assert a.sink.closed and a.id not in hub.connections
            assert list(hub.rooms) == ["y"] and room_channel("x") not in backend.subscribed_channels
            assert await hub.room_size("x") == 0 and await hub.room_members("y") == [b.id]
            await hub.send_to(a.id, "late")
            await hub.broadcast("y", "after")
            await until(lambda: bool(b.sink.deliveries), "the broadcast to y")
            assert a.sink.deliveries == []

    run(scenario())


def test_the_sink_settings_evict_through_the_hub() -> None:
    # An ASGI sink that overflows calls settings.evict(id): the hub forgets the connection at once.
    async def scenario() -> None:
        async with started(send_queue_size=7) as hub:
            member = FakeMember(hub)
            await hub.join(member, "r")
            settings = member.sink.settings
            assert settings is not None and settings.limit == 7 and settings.stats is hub.stats
            assert settings.evict is not None
            await settings.evict(member.id)
            assert member.id not in hub.connections and "r" not in hub.rooms

    run(scenario())


def test_a_failed_subscribe_leaves_no_phantom_room() -> None:
    class RefusingBackend(MemoryBackend):
        refuse = False

        async def subscribe(self, channel: str) -> None:
            if self.refuse:
                raise BackendUnavailable(f"cannot subscribe {channel!r}")
            await super().subscribe(channel)

    async def scenario() -> None:
        backend = RefusingBackend()
        async with started(backend) as hub:
            member = FakeMember(hub)
            backend.refuse = True
            with pytest.raises(BackendUnavailable):
                await hub.join(member, "r")
            assert "r" not in hub.rooms and hub.rooms_of(member.id) == ()
            backend.refuse = False
            await hub.join(member, "r")
            assert hub.rooms_of(member.id) == ("r",)

    run(scenario())


def test_bad_bytes_on_a_channel_are_counted_and_the_next_message_still_arrives() -> None:
    async def scenario() -> None:
        async with started() as hub:
            member = FakeMember(hub)
            await hub.join(member, "r")
            hub.on_message(room_channel("r"), b"\xc1 not msgpack")
            hub.on_message(room_channel("r"), b"")
            await hub.broadcast("r", "fine")
            await until(lambda: bool(member.sink.deliveries), "the good message")
            assert hub.stats.invalid_envelopes == 2 and member.sink.payloads() == [b"fine"]

    run(scenario())


def test_a_hub_without_a_presence_store_is_refused() -> None:
    class NoPresence(MemoryBackend):
        def __init__(self) -> None:
            super().__init__()
            self.presence = None

    with pytest.raises(TypeError, match="keeps no presence"):
        Hub(NoPresence())
    store = MemoryBackend().presence
    assert store is not None
    assert Hub(NoPresence(), presence=store).presence is store


# -- the relay is not trusted --------------------------------------------------------------


def test_the_101st_room_is_refused_and_leaving_makes_room_again() -> None:
    async def scenario() -> None:
        async with started(max_rooms_per_connection=100) as hub:
            member = FakeMember(hub)
            for n in range(100):
                await hub.join(member, f"r{n}")
            with pytest.raises(TooManyRooms, match="max_rooms_per_connection") as error:
                await hub.join(member, "one-too-many")
            assert isinstance(error.value, PubSubError) and isinstance(error.value, ValueError)
            await hub.join(member, "r5")  # already in: fine
            await hub.leave(member.id, "r0")
            await hub.join(member, "one-too-many")
            assert len(hub.rooms_of(member.id)) == 100

    run(scenario())


async def relay_checks(
    backend: MemoryBackend | str,
    publish_raw: Callable[[str, bytes], Awaitable[Any]],
    secret: str,
    send_signed: Callable[[Hub], Awaitable[Any]],
) -> None:
    """Envelopes that are misrouted, oversized, undecodable or unsigned are dropped and counted;
    a signed message still reaches the room."""
    async with started(backend, relay_secret=secret, max_message_size=1000) as hub:
        member = FakeMember(hub)
        await hub.join(member, "room")
        invalid = hub.stats.invalid_envelopes
        _, unsigned = prepare("unsigned", room="room", origin="intruder", max_size=1000)
        _, wrong_key = prepare("wrong key", room="room", origin="intruder", max_size=1000, secret=b"guess")
        _, elsewhere = prepare("for another room", room="other", origin="x", max_size=1000, secret=secret.encode())
        for channel, data in (
            (room_channel("room"), unsigned),
            (room_channel("room"), wrong_key),
            (room_channel("room"), elsewhere),  # signed, but not for this channel
            (worker_channel(hub.worker_id), elsewhere),  # a broadcast on a worker channel
            (room_channel("room"), b"\x91" * 100_000),  # a nesting bomb
            (room_channel("room"), b"x" * (1000 + ENVELOPE_OVERHEAD + 1)),  # over the size limit
        ):
            await publish_raw(channel, data)
        await send_signed(hub)
        await until(lambda: bool(member.sink.deliveries), "the signed message")
        await until(lambda: hub.stats.invalid_envelopes - invalid == 6, "six rejections counted")
        assert member.sink.payloads() == [b"signed"]
        assert hub.stats.listener_errors == 0


def test_the_hub_drops_what_it_cannot_trust_from_memory() -> None:
    backend = MemoryBackend()

    async def publish_raw(channel: str, data: bytes) -> None:
        await backend.publish(channel, data)

    async def send_signed(hub: Hub) -> None:
        await hub.broadcast("room", "signed")

    run(relay_checks(backend, publish_raw, "s3cret", send_signed))


def test_the_hub_drops_what_it_cannot_trust_from_a_writable_redis(redis_server: RedisServer) -> None:
    async def publish_raw(channel: str, data: bytes) -> None:
        await asyncio.to_thread(redis_server.admin.publish, f"fasterapi:{channel}", data)

    async def send_signed(hub: Hub) -> None:
        async with Publisher(redis_server.url, relay_secret="new-key") as publisher:  # another process's view
            await publisher.broadcast("room", "signed")

    run(relay_checks(redis_server.url, publish_raw, "new-key,old-key", send_signed))


def test_a_key_rotation_accepts_both_secrets() -> None:
    async def scenario() -> None:
        async with started(relay_secret="new,old") as hub:
            member = FakeMember(hub)
            await hub.join(member, "r")
            backend = hub.backend
            for secret in ("old", "new"):
                _, message = prepare(secret, room="r", origin="publisher", max_size=1024, secret=secret.encode())
                await backend.publish(room_channel("r"), message)
            await until(lambda: len(member.sink.deliveries) == 2, "both")
            assert member.sink.payloads() == [b"old", b"new"]

    run(scenario())


def test_a_closing_connection_leaves_every_room_with_one_presence_call() -> None:
    class Counting(MemoryBackend):
        pass

    async def scenario() -> None:
        backend = Counting()
        calls = {"remove": 0, "remove_everywhere": 0}
        store = backend.presence
        original_remove, original_everywhere = store.remove, store.remove_everywhere

        async def remove(room: str, members: Any) -> None:
            calls["remove"] += 1
            await original_remove(room, members)

        async def remove_everywhere(member: str, rooms: Any) -> None:
            calls["remove_everywhere"] += 1
            await original_everywhere(member, rooms)

        store.remove = remove  # type: ignore[method-assign]
        store.remove_everywhere = remove_everywhere  # type: ignore[method-assign]
        async with started(backend, max_rooms_per_connection=2000) as hub:
            member, other = FakeMember(hub), FakeMember(hub)
            for n in range(2000):
                await hub.join(member, f"r{n}")
            await hub.join(other, "r7")
            await hub.discard(member.id)
            assert calls == {"remove": 0, "remove_everywhere": 1}
            assert list(hub.rooms) == ["r7"] and await hub.room_members("r7") == [other.id]
            assert await hub.room_size("r8") == 0

    run(scenario())


def test_control_messages_go_to_the_handlers_never_to_sinks() -> None:
    async def scenario() -> None:
        async with started() as hub:
            member, outsider = FakeMember(hub), FakeMember(hub)
            await hub.join(member, "lobby")
            hub.add(outsider)
            seen: list[tuple[str, str, str, bytes]] = []
            hub.control_handlers.append(lambda e: seen.append((e.room, e.target, e.exclude, e.payload)))
            await hub.send_control(b"to the room", room="lobby", exclude=member.id)
            await hub.send_control(b"to a connection", target=outsider.id)
            await hub.send_control(b"nobody here", room="empty")  # no local member: not subscribed
            await until(lambda: len(seen) == 2, "both control messages")
            assert seen == [("lobby", "", member.id, b"to the room"), ("", outsider.id, "", b"to a connection")]
            assert member.sink.deliveries == [] and outsider.sink.deliveries == []
            with pytest.raises(TypeError, match="control message is bytes"):
                await hub.send_control("text", room="lobby")  # type: ignore[arg-type]

    run(scenario())


def test_a_failing_control_handler_is_counted_and_the_others_still_run() -> None:
    async def scenario() -> None:
        async with started() as hub:
            member = FakeMember(hub)
            await hub.join(member, "lobby")
            seen: list[bytes] = []

            def broken(envelope: Any) -> None:
                raise RuntimeError("boom")

            hub.control_handlers.extend([broken, lambda e: seen.append(e.payload)])
            await hub.send_control(b"x", room="lobby")
            await until(lambda: seen == [b"x"], "the second handler")
            assert hub.stats.listener_errors == 1

    run(scenario())


def test_deliveries_know_their_room_and_position_and_share_derived_forms() -> None:
    from FasterAPI.pubsub.history import History

    async def scenario() -> None:
        async with started(history=History(size=10, ttl=60)) as hub:
            a, b = FakeMember(hub), FakeMember(hub)
            await hub.join(a, "kept")
            await hub.join(b, "kept")
            await hub.broadcast("kept", {"n": 1})
            await hub.broadcast("kept", "text")
            await until(lambda: len(b.sink.deliveries) == 2, "both broadcasts")
            first, second = a.sink.deliveries
            assert (first.room, first.offset, first.is_json) == ("kept", 1, True)
            assert (second.offset, second.is_json, second.epoch) == (2, False, first.epoch) and first.epoch
            made: list[Delivery] = []

            def wrap(delivery: Delivery) -> Delivery:
                made.append(delivery)
                return Delivery(b"[" + delivery.payload + b"]", False)

            assert first.derived(wrap) is b.sink.deliveries[0].derived(wrap)  # one per worker
            assert made == [first]

    run(scenario())


def test_presence_of_gives_each_members_metadata() -> None:
    async def scenario() -> None:
        async with started() as hub:
            a, b, c = FakeMember(hub), FakeMember(hub), FakeMember(hub)
            await hub.join(a, "lobby", metadata=b'{"name":"a"}')
            await hub.join(b, "lobby")
            await hub.join(c, "lobby", metadata=b"not json")
            assert await hub.presence_of("lobby") == {a.id: {"name": "a"}, b.id: None, c.id: None}
            await hub.join(a, "lobby", metadata=b'{"name":"A"}')  # already in: only the metadata changes
            assert (await hub.presence_of("lobby"))[a.id] == {"name": "A"}
            # A lapsed heartbeat writes the members back with their metadata.
            hub.presence.clear()  # type: ignore[attr-defined]
            await hub._heartbeat()
            assert await hub.presence_of("lobby") == {a.id: {"name": "A"}, b.id: None, c.id: None}
            await hub.leave(a.id, "lobby")
            await hub.discard(c.id)
            assert await hub.presence_of("lobby") == {b.id: None}
            assert hub._metadata == {}

    run(scenario())
