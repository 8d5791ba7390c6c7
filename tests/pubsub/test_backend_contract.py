"""The behaviour every backend promises (``FasterAPI.pubsub.backends.base``), run against each.

Backends: memory, RedisBackend on fakeredis, RedisBackend on a real redis-server (started by
the ``redis_server`` fixture on a free port), Redis behind Sentinel, a 3-primary Redis Cluster
(sharded pub/sub), NATS. Synchronisation is by events and
poll-until-deadline, never by fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
from fakeredis import FakeServer
from fakeredis.aioredis import FakeAsyncRedisConnection

from FasterAPI.pubsub.backends.base import Backend, BackendUnavailable, PresenceStore
from FasterAPI.pubsub.backends.memory import MemoryBackend
from FasterAPI.pubsub.backends.nats import NatsBackend
from FasterAPI.pubsub.backends.redis import RedisBackend
from FasterAPI.pubsub.backends.redis_cluster import RedisClusterBackend
from FasterAPI.pubsub.backends.redis_sentinel import RedisSentinelBackend
from FasterAPI.pubsub.envelope import decode, prepare
from FasterAPI.pubsub.history import Position, Retention
from tests.nats_server import NatsServer
from tests.redis_cluster import RedisCluster
from tests.redis_sentinel import SentinelSet

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coro`` on a fresh event loop, with an overall deadline."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


class RecordingListener:
    """A BackendListener that records everything and lets a test await a condition."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.events: list[str] = []  # "lost" / "restored", in order
        self.errors: list[BaseException | None] = []
        self._changed = asyncio.Event()

    def on_message(self, channel: str, data: bytes) -> None:
        self.messages.append((channel, data))
        self._changed.set()

    def on_connection_lost(self, error: BaseException | None) -> None:
        self.events.append("lost")
        self.errors.append(error)
        self._changed.set()

    def on_connection_restored(self) -> None:
        self.events.append("restored")
        self._changed.set()

    def on(self, channel: str) -> list[bytes]:
        """Payloads received on ``channel``, in order."""
        return [data for name, data in self.messages if name == channel]

    async def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
        """Wait until ``predicate()`` holds (re-checked on every callback); return the wait time."""
        start = time.monotonic()
        deadline = start + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self._changed.clear()
            if predicate():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
        return time.monotonic() - start

    async def wait_events(self, expected: list[str], timeout: float = 10.0) -> float:
        """Wait until the connection events are exactly ``expected``."""
        return await self.wait_for(lambda: self.events == expected, f"events {expected}", timeout)


class RaisingListener(RecordingListener):
    """Raises from on_message for payloads starting with b"boom" (after recording them)."""

    def on_message(self, channel: str, data: bytes) -> None:
        super().on_message(channel, data)
        if data.startswith(b"boom"):
            raise RuntimeError("listener bug")


async def poll_until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll an async condition until it holds or the deadline passes (for clock-driven state)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


BackendFactory = Callable[[], Backend]


@pytest.fixture(params=["memory", "fakeredis", "redis", "sentinel", "cluster", "nats"])
def make_backend(request: pytest.FixtureRequest) -> BackendFactory:
    """Builds fresh, unstarted backends of one kind; all built by one test share one relay."""
    return _factory(request, request.param)


@pytest.fixture(params=["memory", "fakeredis", "redis", "sentinel", "cluster"])
def make_history_backend(request: pytest.FixtureRequest) -> BackendFactory:
    """Backends that keep room history (``keeps_history``)."""
    return _factory(request, request.param)


@pytest.fixture(params=["fakeredis", "redis", "sentinel", "cluster"])
def make_shared_history_backend(request: pytest.FixtureRequest) -> BackendFactory:
    """Backends that keep room history, whose separate instances share one relay."""
    return _factory(request, request.param)


@pytest.fixture(params=["fakeredis", "redis", "sentinel", "cluster", "nats"])
def make_shared_backend(request: pytest.FixtureRequest) -> BackendFactory:
    """Backends whose separate instances share one relay, as separate workers do."""
    return _factory(request, request.param)


def _factory(request: pytest.FixtureRequest, kind: str) -> BackendFactory:
    prefix = f"contract{os.getpid()}:"
    if kind == "memory":
        return MemoryBackend
    if kind == "fakeredis":
        fake = FakeServer()

        def fake_redis() -> Backend:
            return RedisBackend(
                "redis://fakeredis:6379/0",
                prefix=prefix,
                startup_wait=5.0,
                pool_options={"connection_class": FakeAsyncRedisConnection, "server": fake},
            )

        return fake_redis
    if kind == "nats":
        nats: NatsServer = request.getfixturevalue("nats_server")

        def over_nats() -> Backend:
            return NatsBackend.from_url(nats.url, prefix=prefix.replace(":", "."), startup_wait=5.0)

        return over_nats
    if kind == "sentinel":
        sentinels: SentinelSet = request.getfixturevalue("sentinel_set")
        sentinels.primary.admin.flushall()  # one set serves the whole module

        def behind_sentinel() -> Backend:
            return RedisSentinelBackend.from_url(sentinels.url, prefix=prefix, startup_wait=5.0)

        return behind_sentinel
    if kind == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster.flushall()  # one cluster serves the whole module

        def on_cluster() -> Backend:
            return RedisClusterBackend.from_url(cluster.url, prefix=prefix, startup_wait=5.0, health_check_interval=2.0)

        return on_cluster
    server = request.getfixturevalue("redis_server")

    def real_redis() -> Backend:
        return RedisBackend(server.url, prefix=prefix, startup_wait=5.0, health_check_interval=2.0)

    return real_redis


@contextlib.asynccontextmanager
async def started(backend: Backend, listener: RecordingListener) -> AsyncIterator[Backend]:
    await backend.start(listener)
    try:
        assert backend.available, "backend should be available once start() returned"
        yield backend
    finally:
        await backend.stop()


def presence(backend: Backend) -> PresenceStore:
    """The store the backend brings (each backend under test brings one)."""
    assert isinstance(backend.presence, PresenceStore), f"{type(backend).__name__} brings no presence store"
    return backend.presence


async def settle(backend: Backend, listener: RecordingListener, channel: str = "marker") -> None:
    """Publish a marker on a subscribed channel and wait for it: everything sent before has
    been processed by the relay. (Messages on one connection arrive in order.)"""
    await backend.subscribe(channel)
    token = os.urandom(8)
    await backend.publish(channel, token)
    await listener.wait_for(lambda: token in listener.on(channel), f"marker on {channel!r}")


def test_publish_reaches_subscriber(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        async with started(make_backend(), listener) as backend:
            await backend.subscribe("room:a")
            await backend.publish("room:a", b"hello")
            await listener.wait_for(lambda: listener.messages == [("room:a", b"hello")], "hello")

    run(main())


def test_subscribe_before_start_takes_effect(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        backend = make_backend()
        await backend.subscribe("early")
        async with started(backend, listener):
            await backend.publish("early", b"x")
            await listener.wait_for(lambda: listener.on("early") == [b"x"], "message on early")

    run(main())


def test_order_preserved_across_1000_messages(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        async with started(make_backend(), listener) as backend:
            await backend.subscribe("seq")
            expected = [str(i).encode() for i in range(1000)]
            for payload in expected:
                await backend.publish("seq", payload)
            await listener.wait_for(lambda: len(listener.on("seq")) >= 1000, "1000 messages")
            assert listener.on("seq") == expected

    run(main())


def test_two_workers_see_each_other(make_shared_backend: BackendFactory) -> None:
    make_backend = make_shared_backend

    async def main() -> None:
        a_listener, b_listener = RecordingListener(), RecordingListener()
        async with started(make_backend(), a_listener) as a, started(make_backend(), b_listener) as b:
            await a.subscribe("room")
            await b.subscribe("room")
            await settle(a, a_listener)
            await settle(b, b_listener)
            await a.publish("room", b"from a")
            await b_listener.wait_for(lambda: b_listener.on("room") == [b"from a"], "a's message at b")
            await a_listener.wait_for(lambda: a_listener.on("room") == [b"from a"], "a's own message")

    run(main())


def test_subscription_is_in_force_when_subscribe_returns(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        async with started(make_backend(), listener) as backend:
            for i in range(100):
                await backend.subscribe(f"fresh:{i}")
                await backend.publish(f"fresh:{i}", b"first")
            await listener.wait_for(lambda: len(listener.messages) == 100, "every first message")

    run(main())


def test_concurrent_subscribe_and_unsubscribe(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        async with started(make_backend(), listener) as backend:
            channels = [f"c:{i}" for i in range(50)]
            await asyncio.gather(*(backend.subscribe(channel) for channel in channels * 2))
            await asyncio.gather(*(backend.unsubscribe(channel) for channel in channels[::2]))
            for channel in channels:
                await backend.publish(channel, channel.encode())
            await settle(backend, listener)
            assert sorted(name for name, _ in listener.messages if name != "marker") == sorted(channels[1::2])

    run(main())


def test_unsubscribe_stops_delivery(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        async with started(make_backend(), listener) as backend:
            await backend.subscribe("a")
            await backend.subscribe("b")
            await backend.publish("a", b"1")
            await listener.wait_for(lambda: listener.on("a") == [b"1"], "first message")
            await backend.unsubscribe("a")
            await backend.unsubscribe("a")  # idempotent
            await backend.unsubscribe("never-subscribed")
            await backend.publish("a", b"2")
            await backend.publish("b", b"after")
            await listener.wait_for(lambda: listener.on("b") == [b"after"], "message on b")
            await settle(backend, listener)
            assert listener.on("a") == [b"1"]

    run(main())


def test_subscribe_is_idempotent(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        async with started(make_backend(), listener) as backend:
            await backend.subscribe("a")
            await backend.subscribe("a")
            await backend.publish("a", b"once")
            await settle(backend, listener)
            assert listener.on("a") == [b"once"]
            # One unsubscribe undoes any number of subscribes.
            await backend.unsubscribe("a")
            await backend.publish("a", b"gone")
            await settle(backend, listener)
            assert listener.on("a") == [b"once"]

    run(main())


def test_bytes_pass_through_untouched(make_backend: BackendFactory) -> None:
    payloads = [
        b"",
        b"\x00",
        bytes(range(256)),
        b"\xff\xfe\xfd not utf-8 \xc3\x28",
        "naïve - 日本".encode(),
        b"*3\r\n$7\r\nmessage\r\n",  # looks like RESP
        os.urandom(256 * 1024),
    ]

    async def main() -> None:
        listener = RecordingListener()
        async with started(make_backend(), listener) as backend:
            await backend.subscribe("bin")
            for payload in payloads:
                await backend.publish("bin", payload)
            await listener.wait_for(lambda: len(listener.on("bin")) == len(payloads), "all payloads")
            received = listener.on("bin")
            assert received == payloads
            assert all(type(data) is bytes for data in received)

    run(main())


def test_channel_names_pass_through(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        names = ["room:lobby", "room:caf\u00e9", "w:1234:abcd", "with space", "*", "a.b?c[d]"]
        async with started(make_backend(), listener) as backend:
            for name in names:
                await backend.subscribe(name)
            for name in names:
                await backend.publish(name, name.encode())
            await listener.wait_for(lambda: len(listener.messages) == len(names), "one message per channel")
            assert listener.messages == [(name, name.encode()) for name in names]

    run(main())


def test_presence_add_members_count_remove(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        async with started(make_backend(), listener) as backend:
            store = presence(backend)
            assert await store.heartbeat("w1", 30) is True  # never set before
            assert await store.heartbeat("w1", 30) is False
            assert await store.members("lobby") == []
            assert await store.count("lobby") == 0
            await store.add("lobby", ["w1.1", "w1.2"])
            await store.add("lobby", iter(["w1.3"]))
            await store.add("lobby", ["w1.1"])  # not a duplicate
            await store.add("other", ["w1.9"])
            assert sorted(await store.members("lobby")) == ["w1.1", "w1.2", "w1.3"]
            assert await store.count("lobby") == 3
            await store.remove("lobby", ["w1.2", "w1.404"])
            assert sorted(await store.members("lobby")) == ["w1.1", "w1.3"]
            assert await store.count("lobby") == 2
            await store.add("a", ["w1.5"])
            await store.add("b", ["w1.5", "w1.6"])
            await store.remove_everywhere("w1.5", ["a", "b", "never-joined"])
            assert await store.members("a") == [] and await store.members("b") == ["w1.6"]
            await store.remove("lobby", ["w1.1", "w1.3"])
            await store.remove("empty-room", ["w1.1"])
            await store.add("lobby", [])
            assert await store.members("lobby") == []
            assert await store.count("lobby") == 0
            assert await store.members("other") == ["w1.9"]

    run(main())


def test_presence_keeps_each_members_metadata(make_backend: BackendFactory) -> None:
    async def main() -> None:
        async with started(make_backend(), RecordingListener()) as backend:
            store = presence(backend)
            await store.heartbeat("w1", 30)
            assert await store.described("lobby") == {}
            await store.add("lobby", ["w1.1", "w1.2"], {"w1.1": b'{"name":"ann"}'})
            await store.add("lobby", ["w1.3"])
            assert await store.described("lobby") == {"w1.1": b'{"name":"ann"}', "w1.2": b"", "w1.3": b""}
            # Metadata of a member not being added is ignored; a re-add without metadata keeps it.
            await store.add("lobby", ["w1.2"], {"w1.2": b"[2]", "w1.404": b"x"})
            await store.add("lobby", ["w1.1"])
            assert await store.described("lobby") == {"w1.1": b'{"name":"ann"}', "w1.2": b"[2]", "w1.3": b""}
            await store.add("lobby", ["w1.1"], {"w1.1": b'{"name":"bob"}'})  # replaced
            await store.remove("lobby", ["w1.2"])
            await store.remove_everywhere("w1.3", ["lobby"])
            assert await store.described("lobby") == {"w1.1": b'{"name":"bob"}'}
            assert sorted(await store.members("lobby")) == ["w1.1"]
            # Leaving forgets the metadata: joining again starts without it.
            await store.remove("lobby", ["w1.1"])
            await store.add("lobby", ["w1.1"])
            assert await store.described("lobby") == {"w1.1": b""}
            await store.add("other", ["dead.1"], {"dead.1": b"1"})  # its worker never beat
            assert await store.described("other") == {}

    run(main())


def test_presence_counts_members_only_while_their_worker_beats(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        async with started(make_backend(), listener) as backend:
            store = presence(backend)
            await store.heartbeat("alive", 30)
            await store.heartbeat("dying", 0.2)
            await store.add("room", ["alive.1", "dying.1", "dying.2", "never.1"])
            assert sorted(await store.members("room")) == ["alive.1", "dying.1", "dying.2"]  # never beat

            async def only_the_living() -> bool:
                return await store.count("room") == 1

            await poll_until(only_the_living, "the dying worker's heartbeat to run out", timeout=5)
            assert await store.members("room") == ["alive.1"]
            # Its heartbeat lapsed, so its members may have been swept: it is told to add them again.
            assert await store.heartbeat("dying", 30) is True
            await store.add("room", ["dying.1"])
            assert sorted(await store.members("room")) == ["alive.1", "dying.1"]
            await store.retire("alive")  # a clean stop: its members stop counting at once
            assert await store.members("room") == ["dying.1"]

    run(main())


def test_operations_before_start_raise_unavailable(make_backend: BackendFactory) -> None:
    async def main() -> None:
        backend = make_backend()
        store = presence(backend)
        assert not backend.available
        with pytest.raises(BackendUnavailable):
            await backend.publish("a", b"x")
        with pytest.raises(BackendUnavailable):
            await store.add("room", ["w.1"])
        with pytest.raises(BackendUnavailable):
            await store.heartbeat("w", 1)
        with pytest.raises(BackendUnavailable):
            await store.retire("w")
        with pytest.raises(BackendUnavailable):
            await store.members("room")
        with pytest.raises(BackendUnavailable):
            await store.count("room")
        with pytest.raises(BackendUnavailable):
            await store.remove("room", ["m"])
        await backend.stop()  # stopping a never-started backend is fine

    run(main())


def test_stop_is_idempotent_and_final(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        backend = make_backend()
        await backend.start(listener)
        await backend.subscribe("a")
        await backend.stop()
        assert not backend.available
        await backend.stop()
        with pytest.raises(BackendUnavailable):
            await backend.publish("a", b"x")
        with pytest.raises(BackendUnavailable):
            await presence(backend).count("room")
        assert listener.events == []  # a stop is not a lost connection

    run(main())


def test_raising_listener_does_not_stop_delivery(make_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RaisingListener()
        async with started(make_backend(), listener) as backend:
            await backend.subscribe("a")
            await backend.publish("a", b"boom 1")
            await backend.publish("a", b"fine 1")
            await backend.publish("a", b"boom 2")
            await backend.publish("a", b"fine 2")
            await listener.wait_for(lambda: len(listener.on("a")) == 4, "all four messages")
            assert listener.on("a") == [b"boom 1", b"fine 1", b"boom 2", b"fine 2"]
            assert getattr(backend, "callback_errors", 2) == 2
            await settle(backend, listener)
            assert backend.available

    run(main())


def test_memory_delivery_is_not_reentrant() -> None:
    """publish() queues the delivery: the listener runs after the publisher's step, in order."""

    async def main() -> None:
        listener = RecordingListener()
        async with started(MemoryBackend(), listener) as backend:
            await backend.subscribe("a")
            await backend.publish("a", b"1")
            await backend.publish("a", b"2")
            assert listener.messages == []
            await listener.wait_for(lambda: len(listener.messages) == 2, "both messages")
            assert listener.on("a") == [b"1", b"2"]
            await backend.publish("a", b"3")
            await backend.unsubscribe("a")  # wins over the queued delivery
            await settle(backend, listener)
            assert listener.on("a") == [b"1", b"2"]

    run(main())


def test_memory_from_url() -> None:
    assert isinstance(MemoryBackend.from_url("memory://"), MemoryBackend)
    with pytest.raises(ValueError):
        MemoryBackend.from_url("redis://localhost")
    with pytest.raises(TypeError):
        MemoryBackend.from_url("memory://", prefix="x")


def test_presence_is_shared_between_workers(make_shared_backend: BackendFactory) -> None:
    async def main() -> None:
        async with (
            started(make_shared_backend(), RecordingListener()) as a,
            started(make_shared_backend(), RecordingListener()) as b,
        ):
            await presence(a).heartbeat("a", 30)
            await presence(b).heartbeat("b", 30)
            await presence(a).add("lobby", ["a.1"])
            await presence(b).add("lobby", ["b.1"], {"b.1": b'{"from":"b"}'})
            assert sorted(await presence(a).members("lobby")) == ["a.1", "b.1"]
            assert await presence(a).described("lobby") == {"a.1": b"", "b.1": b'{"from":"b"}'}
            await presence(b).remove("lobby", ["a.1"])
            assert await presence(a).count("lobby") == 1

    run(main())


def test_backend_from_url_picks_the_backend_by_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    from FasterAPI.pubsub.backends import BACKENDS, backend_from_url

    assert isinstance(backend_from_url("memory://"), MemoryBackend)
    redis_backend = backend_from_url("REDISS://127.0.0.1:1/0?prefix=x:", startup_wait=0.5)
    assert isinstance(redis_backend, RedisBackend)
    assert (redis_backend.prefix, redis_backend.startup_wait) == ("x:", 0.5)
    with pytest.raises(ValueError, match=r"memory://, nats://, redis://, redis\+cluster://, redis\+sentinel://, rediss://"):
        backend_from_url("kafka://127.0.0.1:9092")
    monkeypatch.setitem(BACKENDS, "missing", "FasterAPI.pubsub.backends.not_installed:Nothing")
    with pytest.raises(ImportError, match=r"pip install 'fasterapi-hub\[redis\]'"):
        backend_from_url("missing://x")


# -- room history (Backend.keeps_history) -------------------------------------------------


def kept(n: int) -> bytes:
    """An unstamped envelope, as the hub's publish step makes them."""
    return prepare(f"m{n}", room="h", origin="contract", max_size=1024)[1]


def test_history_positions_stamps_and_reads(make_history_backend: BackendFactory) -> None:
    async def main() -> None:
        listener = RecordingListener()
        async with started(make_history_backend(), listener) as backend:
            assert backend.keeps_history
            retention = Retention("h", 3, 60.0)
            empty = await backend.read_history(retention, 0, 10)
            assert (empty.top, empty.entries) == (0, []) and empty.epoch
            await backend.subscribe("room:h")
            positions = [await backend.publish("room:h", kept(n), retention) for n in range(1, 6)]
            assert positions == [Position(n, empty.epoch) for n in range(1, 6)]  # the read's epoch, kept
            await listener.wait_for(lambda: len(listener.on("room:h")) == 5, "five stamped messages")
            live = [decode(data) for data in listener.on("room:h")]
            expected = [(n, empty.epoch, f"m{n}".encode()) for n in range(1, 6)]
            assert [(e.offset, e.epoch, e.payload) for e in live] == expected
            found = await backend.read_history(retention, 0, 10)
            assert found.top == 5 and [decode(d).offset for d in found.entries] == [3, 4, 5]  # size 3
            assert found.entries == listener.on("room:h")[2:]  # stored exactly as published
            assert [decode(d).offset for d in (await backend.read_history(retention, 3, 1)).entries] == [4]
            assert (await backend.read_history(retention, 5, 10)).entries == []
            tops = await backend.history_tops(["h", "never"])
            assert tops == {"h": Position(5, empty.epoch), "never": None}
            with pytest.raises(ValueError, match="envelope"):
                await backend.publish("room:h", b"not an envelope", retention)
            assert (await backend.history_tops(["h"]))["h"] == Position(5, empty.epoch)  # nothing kept

    run(main())


def test_history_expires_after_ttl_and_comes_back_with_a_new_epoch(make_history_backend: BackendFactory) -> None:
    async def main() -> None:
        async with started(make_history_backend(), RecordingListener()) as backend:
            retention = Retention("t", 10, 0.3)
            first = await backend.publish("room:t", kept(1), retention)
            assert first is not None and first.offset == 1

            async def gone() -> bool:
                return (await backend.history_tops(["t"]))["t"] is None

            await poll_until(gone, "the history to expire")
            again = await backend.publish("room:t", kept(2), retention)
            assert again is not None and again.offset == 1 and again.epoch != first.epoch
            assert [decode(d).payload for d in (await backend.read_history(retention, 0, 10)).entries] == [b"m2"]

    run(main())


def test_history_is_shared_by_every_worker(make_shared_history_backend: BackendFactory) -> None:
    async def main() -> None:
        async with (
            started(make_shared_history_backend(), RecordingListener()) as one,
            started(make_shared_history_backend(), RecordingListener()) as two,
        ):
            retention = Retention("s", 10, 60.0)
            a = await one.publish("room:s", kept(1), retention)
            b = await two.publish("room:s", kept(2), retention)
            assert a is not None and b is not None and (a.offset, b.offset) == (1, 2) and a.epoch == b.epoch
            assert (await one.history_tops(["s"]))["s"] == b

    run(main())
