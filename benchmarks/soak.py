"""A bounded soak: many WebSocket connections, churn and broadcasts for a while, then a verdict.

It starts everything itself: with ``--backend redis`` (the default) its own redis-server on a
free loopback port and gunicorn with 2 workers; with ``--backend memory`` gunicorn with 1
worker. Workers are ``FasterWorker`` (the deploy default) unless ``--worker-class`` says
otherwise. The app is ``tests.apps.fault_app``.

* Stable clients (most of the connections) join one of ``--rooms`` rooms at the start and stay.
* Churners connect, stay a random moment, leave and come back, until the end; half of the
  time to a room of their own, so rooms are also created and dropped on the workers.
* A broadcaster sends numbered messages round-robin to the rooms at ``--rate`` per second,
  each through an HTTP request to whichever worker takes it.

The verdict: messages lost (and duplicated or reordered) by the stable clients, i.e. by the
clients connected for the whole window, and each worker's memory (RSS) at the start, at the
end and at its peak. Exit status 1 if a stable client lost anything.

    .venv/bin/python benchmarks/soak.py                           # 1000 connections, 5 minutes
    .venv/bin/python benchmarks/soak.py -n 2000 --minutes 30 --backend redis
    .venv/bin/python benchmarks/soak.py -n 500 --seconds 60 --backend memory

The suite runs a short one (``tests/faults/test_soak.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import resource
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.cluster.processes import Gunicorn, run_gunicorn  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

APP = "tests.apps.fault_app:app"
FASTER_WORKER = "FasterAPI.server.worker.FasterWorker"


@dataclass
class Result:
    """What a soak saw."""

    seconds: float = 0.0
    stable: int = 0
    churn_cycles: int = 0
    churn_failures: int = 0
    published: int = 0
    refused: int = 0
    expected: int = 0  # deliveries owed to stable clients
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    stable_closed: int = 0
    #: pid -> RSS in MB at the start, after a quarter of the window (warmed up), at the end, at the peak.
    rss_mb: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)

    @property
    def max_growth_mb(self) -> float:
        """The largest growth of a worker's RSS from the start to the end."""
        return max((end - start for start, _, end, _ in self.rss_mb.values()), default=0.0)

    @property
    def max_late_growth_mb(self) -> float:
        """The largest growth once warmed up (the first quarter fills buffers and caches)."""
        return max((end - warm for _, warm, end, _ in self.rss_mb.values()), default=0.0)

    def report(self) -> str:
        lines = [
            f"{self.seconds:.1f}s, {self.stable} stable clients, {self.churn_cycles} churn cycles "
            f"({self.churn_failures} failed), {self.published} broadcasts ({self.refused} refused)",
            f"stable clients: {self.expected} deliveries owed, {self.lost} lost, {self.duplicated} duplicated, "
            f"{self.reordered} out of order, {self.stable_closed} connections dropped",
        ]
        for pid, (start, warm, end, peak) in sorted(self.rss_mb.items()):
            lines.append(
                f"worker {pid}: RSS {start:.1f} -> {end:.1f} MB (peak {peak:.1f}): growth {end - start:+.1f} MB, "
                f"{end - warm:+.1f} MB after the first quarter"
            )
        return "\n".join(lines)


class Stable:
    """A client connected for the whole window: records the sequence numbers it receives."""

    def __init__(self, ws: ClientConnection, room: str, pid: int) -> None:
        self.ws = ws
        self.room = room
        self.pid = pid
        self.seqs: list[int] = []
        self.closed = False
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        prefix = f"s:{self.room}:"
        try:
            async for raw in self.ws:
                if isinstance(raw, str) and raw.startswith(prefix):
                    self.seqs.append(int(raw[len(prefix) :]))
        except ConnectionClosed:
            pass
        self.closed = True


async def _open(url: str) -> tuple[ClientConnection, dict[str, object]]:
    """Connect and wait for the app's hello (it comes once the room is joined).

    A broadcast can overtake the hello; only the stable clients, which connect before any
    broadcast, count what they receive.
    """
    ws = await connect(url, open_timeout=30, max_queue=None)
    async with asyncio.timeout(30):
        while True:
            raw = await ws.recv()
            if isinstance(raw, str) and raw.startswith("{"):
                hello: dict[str, object] = json.loads(raw)
                if hello.get("type") == "hello":
                    return ws, hello


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def soak(
    ws_url: str,
    base_url: str,
    *,
    connections: int = 1000,
    seconds: float = 300.0,
    rooms: int = 10,
    rate: float = 50.0,
    churn: float = 0.2,
    progress: bool = False,
) -> Result:
    """Run the soak against a running server and return what it saw."""
    result = Result()
    room_names = [f"soak{i}" for i in range(rooms)]
    churners = int(connections * churn)
    result.stable = connections - churners

    stable: list[Stable] = []
    for start in range(0, result.stable, 50):  # in batches: many at once would overrun the accept queue
        batch = range(start, min(start + 50, result.stable))
        opened = await asyncio.gather(*(_open(f"{ws_url}/ws/{room_names[i % rooms]}") for i in batch))
        stable += [Stable(ws, str(hello["room"]), int(str(hello["pid"]))) for ws, hello in opened]
    pids = {client.pid for client in stable}
    rss = {pid: [_rss_mb(pid)] * 4 for pid in pids}  # start, warm, end, peak

    started = time.monotonic()
    deadline = started + seconds
    sent: dict[str, list[int]] = {room: [] for room in room_names}

    async def churner(n: int) -> None:
        rng = random.Random(n)
        while time.monotonic() < deadline:
            own_room = rng.random() < 0.5
            room = f"churn{n % max(1, rooms)}" if own_room else rng.choice(room_names)
            try:
                ws, _ = await _open(f"{ws_url}/ws/{room}")
                with contextlib.suppress(TimeoutError, ConnectionClosed):
                    async with asyncio.timeout(rng.uniform(0.1, 1.5)):
                        async for _ in ws:
                            pass
                await ws.close()
                result.churn_cycles += 1
            except (OSError, TimeoutError, WebSocketException):
                result.churn_failures += 1

    async def broadcaster() -> None:
        interval = 1.0 / rate
        seq = 0
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            room = room_names[seq % rooms]
            status = await asyncio.to_thread(_post, f"{base_url}/broadcast/{room}", f"s:{room}:{seq}".encode())
            if status == 200:
                sent[room].append(seq)
                result.published += 1
            else:
                result.refused += 1
            seq += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def sampler() -> None:
        warm = False
        while time.monotonic() < deadline:
            for pid, values in rss.items():
                values[3] = max(values[3], _rss_mb(pid))
                if not warm and time.monotonic() - started >= seconds / 4:
                    values[1] = _rss_mb(pid)
            warm = warm or time.monotonic() - started >= seconds / 4
            if progress:
                elapsed = time.monotonic() - started
                print(
                    f"  {elapsed:6.0f}s  {result.published} sent, {result.churn_cycles} churn cycles, RSS "
                    + ", ".join(f"{pid}: {_rss_mb(pid):.1f} MB" for pid in sorted(rss)),
                    flush=True,
                )
            await asyncio.sleep(min(5.0, max(0.5, seconds / 20)))

    try:
        await asyncio.gather(broadcaster(), sampler(), *(churner(n) for n in range(churners)))
        # Every room gets a last marker; once a stable client has it, it has everything before it.
        for room in room_names:
            await asyncio.to_thread(_post, f"{base_url}/broadcast/{room}", f"s:{room}:-1".encode())
        async with asyncio.timeout(30):
            while not all(client.closed or (client.seqs and client.seqs[-1] == -1) for client in stable):
                await asyncio.sleep(0.05)
    except TimeoutError:
        pass
    finally:
        result.seconds = time.monotonic() - started
        for pid, values in rss.items():
            values[2] = _rss_mb(pid)
            values[3] = max(values[3], values[2])
        result.rss_mb = {pid: (v[0], v[1], v[2], v[3]) for pid, v in rss.items()}
        for client in stable:
            got = [s for s in client.seqs if s != -1]
            owed = sent[client.room]
            result.expected += len(owed)
            result.lost += len(set(owed) - set(got))
            result.duplicated += len(got) - len(set(got))
            result.reordered += sum(1 for a, b in itertools.pairwise(got) if b < a)
            result.stable_closed += client.closed
        await asyncio.gather(*(client.ws.close() for client in stable), return_exceptions=True)
        for client in stable:
            client.task.cancel()
    return result


@contextlib.contextmanager
def server(backend: str, workers: int, worker_class: str = FASTER_WORKER) -> Iterator[Gunicorn]:
    """gunicorn with the soak app, and its own redis-server for ``redis``."""
    with contextlib.ExitStack() as stack:
        url = "memory://"
        if backend == "redis":
            url = stack.enter_context(RedisServer()).url
        env = {"FASTERAPI_BACKEND": url}
        yield stack.enter_context(run_gunicorn(APP, workers=workers, env=env, worker_class=worker_class))


def _raise_fd_limit(connections: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * connections + 256))
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--connections", type=int, default=1000, help="connections (default 1000)")
    duration = parser.add_mutually_exclusive_group()
    duration.add_argument("--minutes", type=float, default=5.0, help="duration in minutes (default 5)")
    duration.add_argument("--seconds", type=float, help="duration in seconds (instead of --minutes)")
    parser.add_argument("--backend", choices=["redis", "memory"], default="redis")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default 2 for redis, 1 for memory)")
    parser.add_argument(
        "--worker-class",
        default=FASTER_WORKER,
        help=f"gunicorn worker class (default {FASTER_WORKER}; uvicorn_worker.UvicornWorker for plain ASGI sends)",
    )
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--rate", type=float, default=50.0, help="broadcasts per second (default 50)")
    parser.add_argument("--churn", type=float, default=0.2, help="share of connections that churn (default 0.2)")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    workers = args.workers or (2 if args.backend == "redis" else 1)
    if args.backend == "memory" and workers != 1:
        parser.error("the memory backend only relays within one process: use --workers 1")

    _raise_fd_limit(args.connections)
    print(
        f"soak: {args.connections} connections, {seconds:g}s, {args.backend} backend, "
        f"{workers} worker(s) of {args.worker_class}"
    )
    with server(args.backend, workers, args.worker_class) as running:
        result = asyncio.run(
            soak(
                running.ws_url,
                running.base_url,
                connections=args.connections,
                seconds=seconds,
                rooms=args.rooms,
                rate=args.rate,
                churn=args.churn,
                progress=True,
            )
        )
    print(result.report())
    return 1 if result.lost or result.stable_closed else 0


if __name__ == "__main__":
    sys.exit(main())
