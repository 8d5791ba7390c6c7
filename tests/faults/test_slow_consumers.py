"""Slow consumers: 200 reading clients and 2 that never read, on one worker.

The stuck clients are hand-made sockets that complete the WebSocket handshake and then never
call ``recv`` (with a tiny receive buffer, so the server's writes back up sooner). A burst of
kilobyte-sized broadcasts then fills the kernel buffers, the server's transport buffer and
finally the stuck connections' bounded queues. The readers must get every message, at about
the rate they get without the stuck clients; the stuck ones are given up on (1013, or with
``drop_oldest`` their oldest messages dropped and counted); the worker's memory stays put.

Both delivery paths: plain ASGI sends through each connection's ``Outbox`` (uvicorn's own
WebSocket protocol) and frame-once writes (``FasterWebSocketProtocol``, as ``FasterWorker``
runs it), each on the memory and the Redis backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.harness import BurstReader, RawWebSocket, ahttp, apoll, rss_mb
from tests.redis_server import RedisServer
from tests.servers import RunningServer, run_uvicorn

pytestmark = pytest.mark.timeout(150)

READERS = 200
STUCK = 2
SIZE = 4096
QUEUE = 512  # FASTERAPI_SEND_QUEUE_SIZE's default
BASELINE = 300
RSS_BOUND_MB = 200


def stuck_burst() -> int:
    """Messages needed to overflow a stuck client: its socket buffers, then its whole outbox."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
        send_buffer_max = int(wmem.read().split()[2])
    return math.ceil((send_buffer_max + 256 * 1024) / SIZE) + QUEUE + 100


#: uvicorn arguments selecting each delivery path.
PATHS = {"asgi": [], "frame-once": ["--ws", "FasterAPI.server.protocol:FasterWebSocketProtocol"]}


@contextlib.contextmanager
def server_with(path: str, backend: str, overflow: str) -> Iterator[RunningServer]:
    with contextlib.ExitStack() as stack:
        url = "memory://"
        if backend == "redis":
            url = stack.enter_context(RedisServer()).url
        env = {"FASTERAPI_BACKEND": url, "FASTERAPI_OVERFLOW": overflow}
        # The stuck clients never answer a ping: on a loaded machine the burst outlasts
        # uvicorn's keepalive (20 s + 20 s), which would close them with 1011 before they read
        # again. Keepalive is not what this test is about.
        args = [*PATHS[path], "--ws-ping-interval", "600", "--ws-ping-timeout", "600"]
        yield stack.enter_context(run_uvicorn("tests.apps.fault_app:app", env=env, extra_args=args))


@pytest.mark.parametrize("overflow", ["close", "drop_oldest"])
@pytest.mark.parametrize("backend", ["memory", "redis"])
@pytest.mark.parametrize("path", list(PATHS))
def test_stuck_clients_do_not_hold_back_readers(path: str, backend: str, overflow: str) -> None:
    with server_with(path, backend, overflow) as server:
        asyncio.run(slow_consumers(server, path, backend, overflow))


async def burst(server: RunningServer, readers: list[BurstReader], count: int, ends: int) -> float:
    """Broadcast ``count`` numbered messages; return the readers' deliveries per second."""
    for reader in readers:
        reader.reset()
    started = time.monotonic()
    reply = await ahttp("POST", f"{server}/burst/room?count={count}&size={SIZE}", timeout=120)
    assert reply.status == 200, reply
    await asyncio.gather(*(reader.wait_end(ends, 60) for reader in readers))
    for reader in readers:
        assert reader.close_code is None, f"a reader was closed with {reader.close_code}"
        assert (reader.expected, reader.out_of_order) == (count, 0)
    last = max(reader.last or started for reader in readers)
    return len(readers) * count / (last - started)


async def slow_consumers(server: RunningServer, path: str, backend: str, overflow: str) -> None:
    readers: list[BurstReader] = []
    stuck: list[RawWebSocket] = []
    try:
        for _ in range(0, READERS, 50):
            readers += await asyncio.gather(*(BurstReader.connect(f"{server.ws_url}/ws/room") for _ in range(50)))
        pid = readers[0].pid
        free_rate = await burst(server, readers, BASELINE, ends=1)

        rss_before = rss_mb(pid)
        stuck = [await asyncio.to_thread(RawWebSocket, server.port, "/ws/room", rcvbuf=4096) for _ in range(STUCK)]

        async def stats() -> dict[str, Any]:
            reply = await ahttp("GET", f"{server}/stats")
            return reply.body  # type: ignore[no-any-return]

        await apoll(lambda: _has(stats, "connections", READERS + STUCK), 10, "the stuck clients to join")
        sink = "Outbox" if path == "asgi" else "FasterWebSocketProtocol"
        assert (await stats())["sinks"] == [sink]

        # While the burst runs, watch the queues and the memory.
        peak = {"queue": 0, "rss": rss_before}
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                current = await stats()
                peak["queue"] = max(peak["queue"], current["max_queue"])
                peak["rss"] = max(peak["rss"], rss_mb(pid))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.1)

        watcher = asyncio.create_task(watch())
        count = stuck_burst()
        try:
            stuck_rate = await burst(server, readers, count, ends=2)
        finally:
            done.set()
            await watcher
        after = await stats()
        rss_after = rss_mb(pid)
        peak["queue"] = max(peak["queue"], after["max_queue"])
        peak["rss"] = max(peak["rss"], rss_after)
        counters = after["stats"]
        print(
            f"\n[{path}, {backend}, overflow={overflow}] {READERS} readers x {count} messages of {SIZE} B: "
            f"{free_rate:,.0f} deliveries/s without stuck clients, {stuck_rate:,.0f} with {STUCK}; "
            f"worker RSS {rss_before:.1f} -> {rss_after:.1f} MB (peak {peak['rss']:.1f}); "
            f"deepest queue seen {peak['queue']}; stats {counters}; "
            f"connections still registered: {after['connections']}"
        )
        assert stuck_rate > 0.5 * free_rate
        assert peak["queue"] <= QUEUE
        assert peak["rss"] - rss_before < RSS_BOUND_MB

        if overflow == "close":
            assert counters["slow_consumer_closes"] == STUCK
            assert counters["dropped"] >= STUCK * QUEUE
            if path == "frame-once":
                # The protocol tells the app at once and aborts the transport soon after: the
                # hub forgets the stuck clients without any help from them.
                await apoll(lambda: _has(stats, "connections", READERS), 10, "the hub to forget the stuck clients")
            # When a stuck client reads again, what was already in its socket comes out, then
            # the 1013 close frame (or, once the server aborted it, the reset).
            outcomes = [await asyncio.to_thread(close_or_reset, ws) for ws in stuck]
            assert outcomes == [1013] * STUCK or (path == "frame-once" and set(outcomes) <= {1013, "reset"})
        else:
            assert counters["slow_consumer_closes"] == 0
            assert after["max_queue"] == QUEUE  # the stuck clients' queues: full, and no longer
            # Each stuck client gets a gapped sequence ending with the newest message, "end";
            # every message it did not get was dropped from its queue, and counted.
            received = [await asyncio.to_thread(read_until_end, ws) for ws in stuck]
            assert counters["dropped"] == sum(count + 1 - n for n in received) > 0
        for ws in stuck:
            ws.close()
        await apoll(lambda: _has(stats, "connections", READERS), 15, "the stuck clients to be cleaned up")
    finally:
        for ws in stuck:
            ws.close()
        await asyncio.gather(*(reader.close() for reader in readers), return_exceptions=True)


async def _has(stats: Any, key: str, value: int) -> bool:
    return (await stats())[key] == value  # type: ignore[no-any-return]


def close_or_reset(ws: RawWebSocket) -> int | str:
    """The close code the server finally sends a stuck client, or "reset" if it aborted."""
    try:
        return ws.close_code()
    except ConnectionError:
        return "reset"


def read_until_end(ws: RawWebSocket) -> int:
    """Messages (after the hello) a stuck client receives up to and including ``end``."""
    received = 0
    hello_seen = False
    while True:
        opcode, payload = ws.recv_frame()
        if opcode in (0x9, 0xA):
            continue  # the server's keepalive ping (a long run outlasts its interval)
        assert opcode == 0x1, (opcode, payload[:50])
        if not hello_seen:
            hello_seen = payload.startswith(b"{")
            if hello_seen:
                continue
        received += 1
        if payload == b"end":
            return received
