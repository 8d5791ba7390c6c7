"""WebSocket fan-out across workers through Redis: FasterAPI side by side with its peers.

Every stack is served by gunicorn (granian for the granian rows) with 2 worker processes on
one port, all against one ``redis-server`` that this runner starts on a free loopback port
(``FLUSHALL`` before every run). The load generator (``benchmarks/fanout_client.py``, picows on uvloop) connects the
receivers, which every stack puts in one room, and one publisher socket whose messages the
server broadcasts to the room with the stack's own idiom.

Stacks (``benchmarks/stacks/``), all with uvicorn's settings from ``uvicorn_worker``
(httptools, uvloop, websockets-sansio), log level warning:

=====================  ============================================================  =======
fasterapi              FasterAPI, Redis backend, ``FasterAPI.server.worker.FasterWorker``  ours
                       (frame-once writes)
fasterapi-history      the fasterapi row with room history on (size 1000, ttl 300 s)   ours
fasterapi-realtime     the fasterapi row through ``app.realtime`` (protocol frames)    ours
fasterapi-coalesced    the fasterapi row with write coalescing (``write_delay`` 5 ms)   ours
fasterapi-asgi         the same app under ``uvicorn_worker.UvicornWorker`` (ASGI path)  ours
fastapi-broadcaster    FastAPI + encode/broadcaster, a subscriber task per socket     peer
litestar-channels      Litestar ChannelsPlugin, Redis pub/sub backend                 peer
socketio               python-socketio AsyncServer + AsyncRedisManager, WebSocket only  peer
bare-asgi              one Redis subscription per worker, ``await send`` per socket   ceiling
fasterapi-cluster      the fasterapi row on a 3-primary Redis Cluster                  ours
                       (``redis+cluster://``, sharded pub/sub)
=====================  ============================================================  =======

The cluster row runs against its own Redis Cluster (three primaries, three replicas, started
once per session beside the single redis-server); its "redis" CPU is the six nodes' sum. The
benchmark's one room lives in one slot, so one shard carries it: the row measures what the
cluster path costs per publish and per delivery, not how shards add up (``docs/scaling.md``).
The same FasterAPI app (ASGI path) and bare-asgi app also run on the two other servers a
speed-minded user would try: ``fasterapi-asgi-gunicorn`` / ``bare-asgi-gunicorn`` on gunicorn's
own asyncio ASGI worker (``-k asgi``, gunicorn >= 24; uvloop), and ``fasterapi-asgi-granian`` /
``bare-asgi-granian`` on granian (Rust HTTP and WebSockets, ASGI interface, uvloop, 2 workers
of its own process manager instead of gunicorn's).

Scenarios: ``saturation`` (500 receivers; the publisher keeps ``--window`` messages in flight,
a message being in flight until every receiver of the publisher's process has it),
``500x100`` (500 receivers, 100 msg/s), ``2000x50`` (2,000 receivers, 50 msg/s) and
``memory`` (2,000 idle receivers in the room: worker RSS after connecting minus before, per
connection, summed over the workers; the baseline is taken after 20 warm-up connections came
and went, so one-time imports and caches are not charged to the connections).

Each throughput run: boot, wait for every worker, connect, probe until every receiver has a
message (so everyone is subscribed), then publish for ``--warmup`` + ``--duration`` seconds;
the measured window is the last ``--duration``. Reported per run: deliveries received in the
window per second; p50/p99/max latency (publisher's send to receiver's arrival, over every
message sent in the window); lost (sent in the window, not received after ``--drain``),
duplicated and reordered messages; CPU seconds over the window of the server's workers
(utime+stime from ``/proc/<pid>/stat``), redis-server, the clients, and the whole machine
(``/proc/stat``: "other" is everything else running, i.e. noise); server CPU µs per delivery.

Runs are interleaved: round 1 runs every scenario for every stack, then round 2..., with the
stack order rotated each round; the tables report the median per stack and scenario.

    .bench-venv/bin/python benchmarks/fanout.py                     # 3 rounds, everything
    .bench-venv/bin/python benchmarks/fanout.py --quick             # smoke run, ~2 minutes
    .bench-venv/bin/python benchmarks/fanout.py --stacks fasterapi,bare-asgi --scenarios saturation

Every process started here (redis-server, gunicorn, clients) is stopped at the end of its run,
on errors and on Ctrl-C; they also die with the runner (``PR_SET_PDEATHSIG``) if it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The tests' throwaway redis-server and Redis Cluster: free loopback ports, no persistence.
from tests.redis_cluster import RedisCluster  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.servers import die_with_parent, free_port  # noqa: E402

CLIENT = HERE / "fanout_client.py"
GUNICORN_CONF = HERE / "gunicorn_conf.py"
RESULTS = HERE / "results"
WORKERS = 2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# -- what is run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """One server stack: its app, its gunicorn worker class and how clients talk to it."""

    name: str
    app: str
    worker_class: str
    role: str  # "ours", "peer" or "ceiling"
    recv_path: str = "/ws"
    pub_path: str = "/pub"
    protocol: str = "plain"
    description: str = ""
    #: Extra environment of the server (``FASTERAPI_*`` settings).
    env: tuple[tuple[str, str], ...] = ()
    #: The relay it runs against: "redis" (one redis-server) or "cluster" (a Redis Cluster).
    relay: str = "redis"


UVICORN_WORKER = "uvicorn_worker.UvicornWorker"
#: gunicorn's own asyncio ASGI worker (gunicorn >= 24, ``-k asgi``), WebSockets included.
GUNICORN_ASGI_WORKER = "asgi"
#: Not a gunicorn worker class: the stack is served by granian (Rust HTTP, ASGI interface)
#: with its own process manager, also 2 workers.
GRANIAN = "granian"
#: Not a gunicorn worker class: the stack is served by ``fasterapi run --workers 2`` (gunicorn
#: with FasterWorker), with this directory's gunicorn_conf.py for the readiness markers.
FASTERAPI_RUN = "fasterapi-run"
SOCKETIO_PATH = "/socket.io/?EIO=4&transport=websocket"

STACKS: dict[str, Stack] = {
    stack.name: stack
    for stack in (
        Stack(
            "fasterapi",
            "benchmarks.stacks.fasterapi_app:app",
            "FasterAPI.server.worker.FasterWorker",
            "ours",
            description="FasterAPI, Redis backend, FasterWorker (frame-once)",
        ),
        Stack(
            "fasterapi-history",
            "benchmarks.stacks.fasterapi_app:app",
            "FasterAPI.server.worker.FasterWorker",
            "ours",
            description="the fasterapi row with room history on (History(size=1000, ttl=300))",
            env=(("FASTERAPI_HISTORY_SIZE", "1000"), ("FASTERAPI_HISTORY_TTL", "300")),
        ),
        Stack(
            "fasterapi-realtime",
            "benchmarks.stacks.fasterapi_realtime_app:app",
            "FasterAPI.server.worker.FasterWorker",
            "ours",
            protocol="realtime",
            description="the fasterapi row through app.realtime (join frames in, message frames out)",
        ),
        Stack(
            "fasterapi-coalesced",
            "benchmarks.stacks.fasterapi_app:app",
            "FasterAPI.server.worker.FasterWorker",
            "ours",
            description="the fasterapi row with write coalescing (write_delay=0.005)",
            env=(("FASTERAPI_WRITE_DELAY", "0.005"),),
        ),
        Stack(
            "fasterapi-asgi",
            "benchmarks.stacks.fasterapi_app:app",
            UVICORN_WORKER,
            "ours",
            description="the same FasterAPI app under UvicornWorker (plain ASGI path)",
        ),
        Stack(
            "fastapi-broadcaster",
            "benchmarks.stacks.fastapi_broadcaster_app:app",
            UVICORN_WORKER,
            "peer",
            description="FastAPI + broadcaster (Redis), a subscriber task per socket",
        ),
        Stack(
            "litestar-channels",
            "benchmarks.stacks.litestar_app:app",
            UVICORN_WORKER,
            "peer",
            recv_path="/ws/bench",
            description="Litestar ChannelsPlugin, Redis pub/sub backend",
        ),
        Stack(
            "socketio",
            "benchmarks.stacks.socketio_app:app",
            UVICORN_WORKER,
            "peer",
            recv_path=SOCKETIO_PATH,
            pub_path=SOCKETIO_PATH,
            protocol="socketio",
            description="python-socketio AsyncServer + AsyncRedisManager, WebSocket transport",
        ),
        Stack(
            "bare-asgi",
            "benchmarks.stacks.bare_asgi_app:app",
            UVICORN_WORKER,
            "ceiling",
            description="hand-written ASGI: one Redis subscription per worker, await send per socket",
        ),
        Stack(
            "fasterapi-cluster",
            "benchmarks.stacks.fasterapi_app:app",
            "FasterAPI.server.worker.FasterWorker",
            "ours",
            description="the fasterapi row on a 3-primary Redis Cluster (redis+cluster://, sharded pub/sub)",
            relay="cluster",
        ),
        Stack(
            "fasterapi-asgi-gunicorn",
            "benchmarks.stacks.fasterapi_app:app",
            GUNICORN_ASGI_WORKER,
            "ours",
            description="the same FasterAPI app under gunicorn's own ASGI worker (plain ASGI path)",
        ),
        Stack(
            "bare-asgi-gunicorn",
            "benchmarks.stacks.bare_asgi_app:app",
            GUNICORN_ASGI_WORKER,
            "ceiling",
            description="the bare-asgi app under gunicorn's own ASGI worker",
        ),
        Stack(
            "fasterapi-asgi-granian",
            "benchmarks.stacks.granian_apps:fasterapi",
            GRANIAN,
            "ours",
            description="the same FasterAPI app on granian's ASGI interface (plain ASGI path)",
        ),
        Stack(
            "bare-asgi-granian",
            "benchmarks.stacks.granian_apps:bare_asgi",
            GRANIAN,
            "ceiling",
            description="the bare-asgi app on granian's ASGI interface",
        ),
    )
}
OURS = "fasterapi"
OURS_ASGI = "fasterapi-asgi"
OURS_HISTORY = "fasterapi-history"
OURS_CLUSTER = "fasterapi-cluster"
OURS_COALESCED = "fasterapi-coalesced"
CEILING = "bare-asgi"
PEERS = tuple(name for name, stack in STACKS.items() if stack.role == "peer")


@dataclass(frozen=True)
class Scenario:
    """A load shape: ``saturate`` (bounded in flight), ``rate`` (fixed msg/s) or ``idle``."""

    name: str
    mode: str
    receivers: int
    rate: float | None = None

    def title(self, window: int) -> str:
        if self.mode == "saturate":
            return f"saturation: {self.receivers:,} receivers, {window} messages in flight"
        if self.mode == "rate":
            return f"{self.receivers:,} receivers x {self.rate:g} msg/s"
        return f"memory: {self.receivers:,} idle connections"


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("saturation", "saturate", 500),
        Scenario("500x100", "rate", 500, 100.0),
        Scenario("2000x50", "rate", 2000, 50.0),
        Scenario("memory", "idle", 2000),
    )
}
THROUGHPUT_SCENARIOS = ("saturation", "500x100", "2000x50")
QUICK_RECEIVERS = {"saturation": 50, "500x100": 50, "2000x50": 100, "memory": 100}


@dataclass
class Settings:
    """Everything a session's runs share (recorded in the JSON)."""

    rounds: int = 3
    duration: float = 10.0
    warmup: float = 2.0
    drain: float = 10.0
    window: int = 32
    client_procs: int = 1
    connect_concurrency: int = 1
    receivers: int | None = None  # overrides every scenario's receivers
    quick: bool = False
    memory_settle: float = 2.0
    balance: bool = True  # even out the receivers between the workers before measuring
    profile: bool = False  # py-spy every worker over the measured window
    boot_timeout: float = 60.0
    connect_timeout: float = 180.0
    stacks: list[str] = field(default_factory=lambda: list(STACKS))
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))

    def scenario(self, name: str) -> Scenario:
        base = SCENARIOS[name]
        receivers = base.receivers
        if self.quick:
            receivers = QUICK_RECEIVERS[name]
        if self.receivers is not None:
            receivers = self.receivers
        return Scenario(base.name, base.mode, receivers, base.rate)

    def run_limit(self) -> float:
        """The most one run may take, start to end, before it is stopped as failed."""
        return self.boot_timeout + self.connect_timeout + self.warmup + self.duration + self.drain + 60.0


# -- processes ----------------------------------------------------------------------------


class Children:
    """Every process group this runner started, so that all of them can be killed at once."""

    def __init__(self) -> None:
        self.groups: set[int] = set()

    def add(self, pgid: int) -> None:
        self.groups.add(pgid)

    def kill(self, pgid: int, *, grace: float = 10.0) -> None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL whatever is left."""
        self.groups.discard(pgid)
        members = _group_members(pgid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        _, alive = psutil.wait_procs(members, timeout=grace)
        if alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=5)

    def kill_all(self) -> None:
        for pgid in list(self.groups):
            self.kill(pgid, grace=3.0)


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid:
                members.append(process)
    return members


CHILDREN = Children()
atexit.register(CHILDREN.kill_all)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def raise_nofile() -> int:
    """Raise the open-files soft limit to the hard one (inherited by gunicorn and the clients)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Gunicorn:
    """A gunicorn master and its booted workers."""

    process: subprocess.Popen[bytes]
    port: int
    workers: list[int]
    log_path: Path

    def log_tail(self, size: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return "(no log)"

    def error_lines(self) -> int:
        """Lines of the server's log that report an error (a traceback counts once)."""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return sum(1 for line in text.splitlines() if "[ERROR]" in line or line.startswith("Traceback"))
        return 0


def server_command(stack: Stack, port: int, redis_url: str = "") -> list[str]:
    """The command that serves ``stack`` with ``WORKERS`` workers on ``port``."""
    bin_dir = Path(sys.executable).parent
    if stack.worker_class == GRANIAN:
        # --backpressure: granian admits at most backlog/workers requests per worker by
        # default, and an open WebSocket counts as one (the 2,000-receiver runs would hang).
        return [
            str(bin_dir / "granian"), stack.app,
            "--interface", "asgi", "--workers", str(WORKERS), "--loop", "uvloop",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--backlog", "4096", "--backpressure", "1000000", "--workers-kill-timeout", "5",
        ]  # fmt: skip
    if stack.worker_class == FASTERAPI_RUN:
        return [
            str(bin_dir / "fasterapi"), "run", stack.app, "--workers", str(WORKERS),
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--config", str(GUNICORN_CONF),
            *(["--backend", redis_url] if redis_url else []),
        ]  # fmt: skip
    return [
        str(bin_dir / "gunicorn"),
        stack.app,
        "--workers", str(WORKERS),
        "--worker-class", stack.worker_class,
        "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning",
        "--graceful-timeout", "5",
        "--timeout", "120",
        "--config", str(GUNICORN_CONF),
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def gunicorn(stack: Stack, redis_url: str, log_path: Path, boot_timeout: float) -> AsyncIterator[Gunicorn]:
    """Run ``stack`` under gunicorn until the block ends; yields once every worker serves."""
    port = free_port()
    ready_dir = Path(tempfile.mkdtemp(prefix="fanout-ready-"))
    command = server_command(stack, port, redis_url)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
        "BENCH_REDIS_URL": redis_url,
        "BENCH_READY_DIR": str(ready_dir),
        **dict(stack.env),
    }
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    CHILDREN.add(process.pid)
    try:
        server = Gunicorn(process, port, [], log_path)
        deadline = time.monotonic() + boot_timeout
        master = psutil.Process(process.pid)
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{server.log_tail()}")
            children = [child.pid for child in master.children()]
            ready = {int(name) for name in os.listdir(ready_dir)}
            if len(children) == WORKERS and ready >= set(children):
                server.workers = sorted(children)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{stack.name}: workers not ready in {boot_timeout}s:\n{server.log_tail()}")
            await asyncio.sleep(0.05)
        yield server
    finally:
        CHILDREN.kill(process.pid, grace=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1)
        shutil.rmtree(ready_dir, ignore_errors=True)


class ClientProcess:
    """One ``fanout_client.py`` process: JSON commands in, JSON events out."""

    def __init__(self, process: asyncio.subprocess.Process, index: int, log_path: Path) -> None:
        self.process = process
        self.index = index
        self.log_path = log_path

    @classmethod
    async def start(cls, index: int, args: Sequence[str], log_path: Path) -> ClientProcess:
        with open(log_path, "wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(CLIENT),
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=die_with_parent(),
                limit=1 << 24,
            )
        CHILDREN.add(process.pid)
        return cls(process, index, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, command: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"cmd": command, **fields}) + "\n").encode())

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next event, which must be ``event``, within ``timeout`` seconds."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self.process.stdout.readline()
        except TimeoutError:
            raise RuntimeError(f"client {self.index}: no {event!r} within {timeout:g}s") from None
        if not line:
            await asyncio.sleep(0.2)
            raise RuntimeError(f"client {self.index} exited (waiting for {event!r}):\n{self.log_tail()}")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") != event:
            raise RuntimeError(f"client {self.index}: expected {event!r}, got {message}")
        return message

    def log_tail(self, size: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return "(no log)"

    async def stop(self) -> None:
        """Let the client exit (EOF on its stdin ends it), then make sure of it."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                await self.process.wait()
        CHILDREN.kill(self.pid, grace=2)
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            async with asyncio.timeout(2):
                await self.process.wait()


# -- measuring ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (``/proc/<pid>/stat``), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle since boot, summed over cores (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def established(pid: int, port: int) -> int:
    """Established TCP connections that ``pid`` accepted on ``port``."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)


@dataclass
class CpuSnapshot:
    """CPU seconds of every process that matters, at one moment."""

    at: float
    per_pid: dict[int, float]
    machine: float

    @classmethod
    def take(cls, pids: Iterable[int]) -> CpuSnapshot:
        per_pid = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                per_pid[pid] = cpu_seconds(pid)
        return cls(time.monotonic(), per_pid, machine_busy_seconds())

    def since(self, earlier: CpuSnapshot, pids: Iterable[int]) -> float:
        return sum(self.per_pid.get(pid, 0.0) - earlier.per_pid.get(pid, 0.0) for pid in pids)


def merge_histograms(results: Sequence[dict[str, Any]]) -> tuple[dict[int, int], float, int]:
    """The clients' latency histograms summed; (bins, bin width as log10, total)."""
    merged: dict[int, int] = {}
    for result in results:
        for key, count in result["latency_hist"].items():
            merged[int(key)] = merged.get(int(key), 0) + count
    return merged, 1.0 / results[0]["hist_bins_per_decade"], sum(merged.values())


def percentile(hist: dict[int, int], step: float, minimum: float, total: int, q: float) -> float | None:
    """The ``q`` quantile from a log histogram (geometric middle of its bin), in seconds."""
    if total == 0:
        return None
    target = q * total
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= target:
            return float(minimum * 10 ** ((index + 0.5) * step))
    return None


async def sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# -- profiles -----------------------------------------------------------------------------


async def start_profilers(
    workers: Sequence[int], settings: Settings, log_prefix: Path
) -> list[tuple[asyncio.subprocess.Process, Path]]:
    """``py-spy record`` (sampling, non-blocking) on every worker for the measured window."""
    py_spy = Path(sys.executable).parent / "py-spy"
    profilers = []
    for index, pid in enumerate(workers):
        path = log_prefix.with_name(f"{log_prefix.name}.worker{index}.pyspy.txt")
        process = await asyncio.create_subprocess_exec(
            str(py_spy), "record", "--pid", str(pid), "--duration", str(max(1, int(settings.duration))),
            "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(path),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent(),
        )  # fmt: skip
        CHILDREN.add(process.pid)
        profilers.append((process, path))
    return profilers


async def finish_profilers(profilers: Sequence[tuple[asyncio.subprocess.Process, Path]]) -> dict[str, Any]:
    """Wait for the profilers; the hottest frames (self time) over all workers, and the files."""
    for process, _ in profilers:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                await process.wait()
        CHILDREN.kill(process.pid, grace=1)
    return {"files": [str(path) for _, path in profilers], "top_self": hottest_frames([p for _, p in profilers])}


def hottest_frames(paths: Iterable[Path], top: int = 25) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks: the frames with the most samples on top, in % of samples."""
    self_samples: dict[str, int] = {}
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                leaf = stack.rsplit(";", 1)[-1]
                self_samples[leaf] = self_samples.get(leaf, 0) + int(count)
                total += int(count)
    ranked = sorted(self_samples.items(), key=lambda item: -item[1])[:top]
    return [(frame, round(100.0 * count / total, 2)) for frame, count in ranked] if total else []


# -- one run ------------------------------------------------------------------------------


def client_args(
    stack: Stack, scenario: Scenario, settings: Settings, port: int, receivers: int, publisher: bool
) -> list[str]:
    args = [
        "--base-url", f"ws://127.0.0.1:{port}",
        "--recv-path", stack.recv_path,
        "--pub-path", stack.pub_path,
        "--protocol", stack.protocol,
        "--receivers", str(receivers),
        "--mode", scenario.mode,
        "--window", str(settings.window),
        "--connect-concurrency", str(settings.connect_concurrency),
    ]  # fmt: skip
    if scenario.rate is not None:
        args += ["--rate", str(scenario.rate)]
    if publisher:
        args.append("--publisher")
    return args


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def start_clients(
    stack: Stack, scenario: Scenario, settings: Settings, port: int, receivers: int, procs: int, log_prefix: Path
) -> list[ClientProcess]:
    clients = []
    for index, count in enumerate(split(receivers, procs)):
        args = client_args(stack, scenario, settings, port, count, publisher=index == 0)
        clients.append(
            await ClientProcess.start(index, args, log_prefix.with_name(f"{log_prefix.name}.client{index}.log"))
        )
    return clients


async def connect_and_subscribe(
    clients: Sequence[ClientProcess], settings: Settings, server: Gunicorn | None
) -> tuple[list[dict[str, Any]], list[int], int]:
    """Connect every client, even out the workers' shares (if ``server``), probe until subscribed.

    Returns the clients' "connected" events, the receivers per worker, and how many
    receivers were moved.
    """
    connected = await asyncio.gather(*(c.expect("connected", settings.connect_timeout) for c in clients))
    failures = sum(c["failures"] for c in connected)
    if failures:
        raise RuntimeError(f"{failures} receivers could not connect")
    shares: list[int] = []
    moved = 0
    if server is not None:
        ports = [set(event["ports"]) for event in connected]
        shares, moved = await balance(clients, ports, server, settings)
    for client in clients:
        client.send("watch")
    clients[0].send("probe")
    await asyncio.gather(*(c.expect("subscribed", 60) for c in clients))
    return connected, shares, moved


def receivers_by_worker(server: Gunicorn, ports: Sequence[set[int]]) -> list[list[tuple[int, int]]]:
    """For each worker, the (client index, local port) of the receivers it accepted."""
    owner: dict[int, int] = {}
    for position, pid in enumerate(server.workers):
        for connection in psutil.Process(pid).net_connections(kind="tcp"):
            if (
                connection.status == psutil.CONN_ESTABLISHED
                and connection.laddr.port == server.port
                and connection.raddr
            ):
                owner[connection.raddr.port] = position
    held: list[list[tuple[int, int]]] = [[] for _ in server.workers]
    for client, client_ports in enumerate(ports):
        for port in client_ports:
            if port in owner:
                held[owner[port]].append((client, port))
    return held


async def balance(
    clients: Sequence[ClientProcess], ports: list[set[int]], server: Gunicorn, settings: Settings
) -> tuple[list[int], int]:
    """Reconnect receivers of the busiest worker until the workers' shares are within 1%.

    Workers sharing one listening socket accept whatever they win; a run where one worker
    holds 60% of the receivers measures that worker. A reconnected receiver lands on either
    worker, so half the excess is moved each pass (a few passes at most).
    """
    total = sum(len(p) for p in ports)
    tolerance = max(1, round(total * 0.01))
    moved = 0
    for _ in range(12):
        held = receivers_by_worker(server, ports)
        shares = [len(h) for h in held]
        heavy = max(range(len(held)), key=lambda i: shares[i])
        light = min(range(len(held)), key=lambda i: shares[i])
        if shares[heavy] - shares[light] <= tolerance or not settings.balance:
            return shares, moved
        chosen = random.sample(held[heavy], (shares[heavy] - shares[light]) // 2)
        per_client: dict[int, list[int]] = {}
        for client, port in chosen:
            per_client.setdefault(client, []).append(port)
        for client, client_ports in per_client.items():
            clients[client].send("reconnect", ports=client_ports)
        for client in per_client:
            ports[client] = set((await clients[client].expect("reconnected", settings.connect_timeout))["ports"])
        moved += len(chosen)
    held = receivers_by_worker(server, ports)
    return [len(h) for h in held], moved


async def warm_up_connections(stack: Stack, settings: Settings, port: int, log_prefix: Path) -> None:
    """20 receivers connect, get a probe and leave: one-time costs are paid before the baseline."""
    warm = Scenario("warmup", "idle", 20)
    clients = await start_clients(stack, warm, settings, port, 20, 1, log_prefix.with_name(log_prefix.name + ".warmup"))
    try:
        await connect_and_subscribe(clients, settings, None)
        clients[0].send("finish", s_lo=1, s_hi=0, drain=0)
        await clients[0].expect("result", 30)
    finally:
        for client in clients:
            await client.stop()


class Relays:
    """The relays of a session: one redis-server, and a Redis Cluster if a stack needs one."""

    def __init__(self, stacks: Iterable[Stack]) -> None:
        self.redis = RedisServer().start()
        self.cluster: RedisCluster | None = None
        try:
            if any(stack.relay == "cluster" for stack in stacks):
                self.cluster = RedisCluster().start()
        except BaseException:
            self.stop()
            raise

    def _servers(self, relay: str) -> list[RedisServer]:
        if relay == "cluster":
            assert self.cluster is not None
            return self.cluster.nodes
        return [self.redis]

    def url(self, relay: str) -> str:
        return self.cluster.url if relay == "cluster" and self.cluster is not None else self.redis.url

    def pids(self, relay: str) -> list[int]:
        """The relay's server processes (their CPU is the run's "redis" CPU)."""
        return [server.process.pid for server in self._servers(relay) if server.process is not None]

    def flushall(self, relay: str) -> None:
        if relay == "cluster":
            assert self.cluster is not None
            self.cluster.flushall()
        else:
            self.redis.admin.flushall()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.redis.stop()


async def run_once(
    stack: Stack, scenario: Scenario, settings: Settings, relays: Relays, log_prefix: Path
) -> dict[str, Any]:
    """One stack x scenario: boot, connect, measure, stop. Returns the run's record."""
    relays.flushall(stack.relay)
    record: dict[str, Any] = {"receivers": scenario.receivers, "rate": scenario.rate, "mode": scenario.mode}
    redis_pids = relays.pids(stack.relay)
    procs = max(1, min(settings.client_procs, scenario.receivers))
    async with gunicorn(
        stack, relays.url(stack.relay), log_prefix.with_name(log_prefix.name + ".gunicorn.log"), settings.boot_timeout
    ) as server:
        workers = server.workers
        if scenario.mode == "idle":
            await warm_up_connections(stack, settings, server.port, log_prefix)
            await asyncio.sleep(0.5)
            rss_before = {pid: rss_bytes(pid) for pid in workers}
        clients = await start_clients(stack, scenario, settings, server.port, scenario.receivers, procs, log_prefix)
        try:
            connected, shares, moved = await connect_and_subscribe(clients, settings, server)
            record["connect_s"] = max(c["seconds"] for c in connected)
            record["receivers_per_worker"] = shares
            record["rebalanced"] = moved
            record["conns_per_worker"] = [established(pid, server.port) for pid in workers]
            if scenario.mode == "idle":
                await asyncio.sleep(settings.memory_settle)
                rss_after = {pid: rss_bytes(pid) for pid in workers}
                for client in clients:
                    client.send("finish", s_lo=1, s_hi=0, drain=0)
                await asyncio.gather(*(c.expect("result", 30) for c in clients))
                growth = sum(rss_after.values()) - sum(rss_before.values())
                record["memory"] = {
                    "rss_before": sum(rss_before.values()),
                    "rss_after": sum(rss_after.values()),
                    "rss_per_worker_after": [rss_after[pid] for pid in workers],
                    "bytes_per_conn": growth / scenario.receivers,
                }
                record["kib_per_conn"] = growth / scenario.receivers / 1024
                record["server_log_errors"] = server.error_lines()
                return record
            client_pids = [c.pid for c in clients]
            master_pid = server.process.pid
            everyone = [*workers, *redis_pids, *client_pids, master_pid, os.getpid()]
            t0 = time.monotonic() + settings.warmup + 0.1
            t1 = t0 + settings.duration
            for client in clients:
                client.send("go", t0=t0, t1=t1)
            await sleep_until(t0)
            before = CpuSnapshot.take(everyone)
            profilers = await start_profilers(workers, settings, log_prefix) if settings.profile else []
            await sleep_until(t1)
            after = CpuSnapshot.take(everyone)
            if profilers:
                record["profile"] = await finish_profilers(profilers)
            published = await clients[0].expect("published", 30)
            s_lo, s_hi = published["s_lo"], published["s_hi"]
            for client in clients:
                client.send("finish", s_lo=s_lo, s_hi=s_hi, drain=settings.drain)
            results = await asyncio.gather(*(c.expect("result", settings.drain + 30) for c in clients))
            if sorted(child.pid for child in psutil.Process(master_pid).children()) != workers:
                raise RuntimeError(f"a worker restarted during the run:\n{server.log_tail()}")
        finally:
            for client in clients:
                await client.stop()
        record["server_log_tail"] = server.log_tail(1500).strip()
        record["server_log_errors"] = server.error_lines()
    window = after.at - before.at
    server_cpu = after.since(before, workers)
    redis_cpu = after.since(before, redis_pids)
    client_cpu = after.since(before, client_pids)
    harness_cpu = after.since(before, [master_pid, os.getpid()])
    machine_cpu = after.machine - before.machine
    per_client = [after.since(before, [pid]) for pid in client_pids]
    cpu: dict[str, Any] = {
        "server": server_cpu,
        "workers": [after.since(before, [pid]) for pid in workers],
        "redis": redis_cpu,
        "clients": client_cpu,
        "client_procs": per_client,
        "harness": harness_cpu,
        "machine": machine_cpu,
        "other": machine_cpu - server_cpu - redis_cpu - client_cpu - harness_cpu,
    }
    delivered = sum(r["received_in_window"] for r in results)
    hist, step, counted = merge_histograms(results)
    minimum = results[0]["hist_min_s"]
    maxima = [r["latency_max_s"] for r in results if r["latency_max_s"] is not None]

    def ms(q: float) -> float | None:
        value = percentile(hist, step, minimum, counted, q)
        return None if value is None else value * 1000

    expected = sum(r["expected"] for r in results)
    lost = sum(r["lost"] for r in results)
    record.update(
        window_s=window,
        published=s_hi - s_lo + 1,
        published_per_s=(s_hi - s_lo + 1) / settings.duration,
        delivered=delivered,
        delivered_per_s=delivered / window,
        expected=expected,
        lost=lost,
        lost_pct=100.0 * lost / expected if expected else 0.0,
        duplicates=sum(r["duplicates"] for r in results),
        reordered=sum(r["reordered"] for r in results),
        disconnects=sum(r["disconnects"] for r in results),
        drained=all(r["drained"] for r in results),
        fell_behind=not all(r["drained"] for r in results),
        drain_s=max(r["drain_s"] for r in results),
        window_stalls=published.get("window_stalls", 0),
        p50_ms=ms(0.50),
        p99_ms=ms(0.99),
        p999_ms=ms(0.999),
        max_ms=max(maxima) * 1000 if maxima else None,
        mean_ms=1000 * sum(r["latency_sum_s"] for r in results) / counted if counted else None,
        cpu_s=cpu,
        server_cores=server_cpu / window,
        client_cores=client_cpu / window,
        redis_cores=redis_cpu / window,
        other_cores=cpu["other"] / window,
        client_bound=any(c / window > 0.9 for c in per_client),
        server_cpu_us_per_delivery=server_cpu / delivered * 1e6 if delivered else None,
    )
    return record


# -- the session --------------------------------------------------------------------------


def machine_info(redis_server: RedisServer) -> dict[str, Any]:
    cpu_model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": str(redis_server.admin.info("server")["redis_version"]),
        "loadavg_at_start": list(os.getloadavg()),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def source_state() -> dict[str, Any]:
    """The commit the tree is at and the files that differ from it (what was measured)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
            ).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "HEAD") or None, "modified": changed}


def package_versions() -> dict[str, str]:
    """Every distribution installed in this interpreter's environment (the .bench-venv)."""
    versions = {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions()}
    return dict(sorted(versions.items(), key=lambda item: item[0].lower()))


#: The per-run metrics whose medians are reported.
NUMERIC_KEYS = tuple(
    """delivered_per_s published_per_s server_cpu_us_per_delivery p50_ms p99_ms p999_ms max_ms mean_ms
    lost lost_pct duplicates reordered disconnects server_cores client_cores redis_cores other_cores
    kib_per_conn connect_s window_stalls drain_s rebalanced""".split()
)


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """stack -> scenario -> {metric: median over the successful runs, runs, failed}."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["stack"], run["scenario"]), []).append(run)
    for (stack, scenario), group in groups.items():
        ok = [run for run in group if run["ok"]]
        entry: dict[str, Any] = {"runs": len(ok), "failed": len(group) - len(ok)}
        for key in NUMERIC_KEYS:
            values = [run[key] for run in ok if run.get(key) is not None]
            if values:
                entry[key] = statistics.median(values)
        entry["client_bound"] = any(run.get("client_bound") for run in ok)
        entry["fell_behind"] = any(run.get("drained") is False for run in ok)
        entry["receivers"] = group[0]["receivers"]
        entry["rate"] = group[0]["rate"]
        table.setdefault(stack, {})[scenario] = entry
    return table


def _ratio(ours: float | None, other: float | None) -> float | None:
    if ours is None or other is None or other == 0:
        return None
    return ours / other


def _best(
    table: dict[str, dict[str, dict[str, Any]]], scenario: str, key: str, pick: Callable[..., Any]
) -> tuple[str, float] | None:
    candidates = [
        (name, table[name][scenario][key])
        for name in PEERS
        if scenario in table.get(name, {}) and table[name][scenario].get(key) is not None
    ]
    return pick(candidates, key=lambda item: item[1]) if candidates else None


def ratios(table: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """FasterAPI against the best peer (and against the bare-ASGI ceiling where asked)."""
    rows: list[dict[str, Any]] = []

    def ours(scenario: str, key: str, stack: str = OURS) -> float | None:
        value = table.get(stack, {}).get(scenario, {}).get(key)
        return None if value is None else float(value)

    def add(
        what: str, scenario: str, key: str, against: tuple[str, float] | None, better: str, stack: str = OURS
    ) -> None:
        mine = ours(scenario, key, stack)
        if against is None or mine is None:
            return
        rows.append(
            {
                "what": what,
                "scenario": scenario,
                "metric": key,
                "fasterapi": mine,
                "against": against[0],
                "their_value": against[1],
                "ratio": _ratio(mine, against[1]),
                "better": better,
            }
        )

    for scenario in THROUGHPUT_SCENARIOS:
        add(
            "server CPU per delivery vs best peer",
            scenario,
            "server_cpu_us_per_delivery",
            _best(table, scenario, "server_cpu_us_per_delivery", min),
            "lower",
        )
    for scenario in THROUGHPUT_SCENARIOS:
        add(
            "delivered msg/s vs best peer",
            scenario,
            "delivered_per_s",
            _best(table, scenario, "delivered_per_s", max),
            "higher",
        )
    ceiling_p99 = ours("2000x50", "p99_ms", CEILING)
    add(
        "p99 latency vs bare-asgi",
        "2000x50",
        "p99_ms",
        None if ceiling_p99 is None else (CEILING, ceiling_p99),
        "lower",
    )
    add("p99 latency vs best peer", "500x100", "p99_ms", _best(table, "500x100", "p99_ms", min), "lower")
    ceiling_mem = ours("memory", "kib_per_conn", CEILING)
    add(
        "memory per connection vs bare-asgi",
        "memory",
        "kib_per_conn",
        None if ceiling_mem is None else (CEILING, ceiling_mem),
        "lower",
    )
    for key, better in (("server_cpu_us_per_delivery", "lower"), ("delivered_per_s", "higher")):
        asgi = ours("saturation", key, OURS_ASGI)
        add(f"frame-once vs ASGI path ({key})", "saturation", key, None if asgi is None else (OURS_ASGI, asgi), better)
    # Our ASGI path (the fallback under any other server) on gunicorn's own worker and on
    # granian, against the same app on uvicorn's: which server to advise without FasterWorker.
    for other in ("fasterapi-asgi-gunicorn", "fasterapi-asgi-granian"):
        for scenario, key, better in (
            ("saturation", "server_cpu_us_per_delivery", "lower"),
            ("saturation", "delivered_per_s", "higher"),
            ("memory", "kib_per_conn", "lower"),
        ):
            on_uvicorn = ours(scenario, key, OURS_ASGI)
            against = None if on_uvicorn is None else (OURS_ASGI, on_uvicorn)
            add(f"ASGI path, {other} vs uvicorn ({key})", scenario, key, against, better, stack=other)
    # The frame-once path against every row that is not FasterWorker's (peers, ceilings, our
    # ASGI path on any server): it must stay the cheapest per delivery.
    for scenario in THROUGHPUT_SCENARIOS:
        others = [
            (name, float(table[name][scenario]["server_cpu_us_per_delivery"]))
            for name in table
            if name in STACKS
            and STACKS[name].worker_class != STACKS[OURS].worker_class
            and table[name].get(scenario, {}).get("server_cpu_us_per_delivery") is not None
        ]
        cheapest = min(others, key=lambda item: item[1]) if others else None
        add("server CPU per delivery vs cheapest other row", scenario, "server_cpu_us_per_delivery", cheapest, "lower")
    # Room history on against off (same app and worker): the cost of exact delivery.
    for key, better in (("server_cpu_us_per_delivery", "lower"), ("delivered_per_s", "higher")):
        off = ours("saturation", key)
        against = None if off is None else (OURS, off)
        add(f"history on vs off ({key})", "saturation", key, against, better, stack=OURS_HISTORY)
    # A 3-primary Redis Cluster (sharded pub/sub) against one Redis (same app and worker).
    for key, better in (
        ("published_per_s", "higher"),
        ("server_cpu_us_per_delivery", "lower"),
        ("delivered_per_s", "higher"),
    ):
        one = ours("saturation", key)
        against = None if one is None else (OURS, one)
        add(f"3-shard cluster vs one Redis ({key})", "saturation", key, against, better, stack=OURS_CLUSTER)
    # Write coalescing (write_delay 5 ms) against latency-first writes, and against the best peer.
    for key, better in (("server_cpu_us_per_delivery", "lower"), ("delivered_per_s", "higher")):
        uncoalesced = ours("saturation", key)
        against = None if uncoalesced is None else (OURS, uncoalesced)
        add(f"coalesced vs not ({key})", "saturation", key, against, better, stack=OURS_COALESCED)
    add(
        "coalesced: server CPU per delivery vs best peer",
        "saturation",
        "server_cpu_us_per_delivery",
        _best(table, "saturation", "server_cpu_us_per_delivery", min),
        "lower",
        stack=OURS_COALESCED,
    )
    uncoalesced_p99 = ours("500x100", "p99_ms")
    add(
        "coalesced: p99 latency vs not",
        "500x100",
        "p99_ms",
        None if uncoalesced_p99 is None else (OURS, uncoalesced_p99),
        "lower",
        stack=OURS_COALESCED,
    )
    return rows


def _fmt(value: Any, digits: int = 1, thousands: bool = False) -> str:
    if value is None:
        return "-"
    if thousands:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def markdown(
    table: dict[str, dict[str, dict[str, Any]]], ratio_rows: Sequence[dict[str, Any]], settings: Settings
) -> str:
    """The medians and ratios as markdown tables."""
    out: list[str] = []
    stacks = [name for name in STACKS if name in table]
    for name in settings.scenarios:
        scenario = settings.scenario(name)
        present = [stack for stack in stacks if name in table[stack]]
        if not present:
            continue
        out.append(f"#### {scenario.title(settings.window)}\n")
        if scenario.mode == "idle":
            out.append("| stack | KiB per connection | runs |")
            out.append("|---|---:|---:|")
            for stack in present:
                entry = table[stack][name]
                out.append(f"| {stack} | {_fmt(entry.get('kib_per_conn'))} | {_runs(entry)} |")
            out.append("")
            continue
        out.append(
            "| stack | delivered msg/s | server CPU µs/msg | p50 ms | p99 ms | max ms | lost | dup | reord "
            "| server cores | redis cores | client cores | other cores | runs |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for stack in present:
            e = table[stack][name]
            flag = " (client-bound)" if e.get("client_bound") else ""
            late = " (late)" if e.get("fell_behind") else ""
            out.append(
                f"| {stack} | {_fmt(e.get('delivered_per_s'), thousands=True)} "
                f"| {_fmt(e.get('server_cpu_us_per_delivery'), 2)} | {_fmt(e.get('p50_ms'), 2)} "
                f"| {_fmt(e.get('p99_ms'), 2)} | {_fmt(e.get('max_ms'), 1)} "
                f"| {_fmt(e.get('lost'), thousands=True)}{late} "
                f"| {_fmt(e.get('duplicates'), thousands=True)} | {_fmt(e.get('reordered'), thousands=True)} "
                f"| {_fmt(e.get('server_cores'), 2)} | {_fmt(e.get('redis_cores'), 2)} "
                f"| {_fmt(e.get('client_cores'), 2)}{flag} | {_fmt(e.get('other_cores'), 2)} | {_runs(e)} |"
            )
        out.append("")
    out.append(
        "*lost*: messages sent in the window that a receiver did not have when the drain ended "
        f"({settings.drain:g} s after the window); *(late)*: in some run the stack was still delivering "
        "then, i.e. it could not keep up with the offered rate, so these messages may be late rather "
        "than lost. *(client-bound)*: a load-generator process used over 90% of a core, so the "
        "throughput is partly the client's. *cores*: CPU seconds per second of the window (2 cores "
        "in all); *other*: everything else the machine ran meanwhile (noise).\n"
    )
    if ratio_rows:
        out.append("#### FasterAPI ratios (medians)\n")
        out.append("| comparison | scenario | FasterAPI | against | theirs | FasterAPI / theirs | better is |")
        out.append("|---|---|---:|---|---:|---:|---|")
        for row in ratio_rows:
            out.append(
                f"| {row['what']} | {row['scenario']} | {_value(row['fasterapi'])} | {row['against']} "
                f"| {_value(row['their_value'])} | {_fmt(row['ratio'], 2)}x | {row['better']} |"
            )
        out.append("")
    return "\n".join(out)


def _value(value: float | None) -> str:
    """A ratio table cell: thousands separators for large numbers, 2 decimals for small ones."""
    return _fmt(value, thousands=True) if value is not None and abs(value) >= 1000 else _fmt(value, 2)


def _runs(entry: dict[str, Any]) -> str:
    return f"{entry['runs']}" + (f" ({entry['failed']} failed)" if entry["failed"] else "")


def one_line(run: dict[str, Any]) -> str:
    """A progress line for one finished run."""
    head = f"[{run['round']}] {run['scenario']:<10} {run['stack']:<20}"
    if run.get("server_log_errors"):
        head += f" ({run['server_log_errors']} ERROR lines in the server log)"
    if not run["ok"]:
        return f"{head} FAILED: {run['error'].splitlines()[0] if run['error'] else '?'}"
    if run["mode"] == "idle":
        return f"{head} {run['kib_per_conn']:.1f} KiB/conn, receivers/worker {run['receivers_per_worker']}"
    return (
        f"{head} {run['delivered_per_s']:>10,.0f} msg/s  {_fmt(run['server_cpu_us_per_delivery'], 2):>6} µs/msg  "
        f"p50 {_fmt(run['p50_ms'], 2)} p99 {_fmt(run['p99_ms'], 2)} max {_fmt(run['max_ms'], 1)} ms  "
        f"lost {run['lost']} dup {run['duplicates']} reord {run['reordered']}  "
        f"cores srv {run['server_cores']:.2f} redis {run['redis_cores']:.2f} cli {run['client_cores']:.2f} "
        f"other {run['other_cores']:.2f}  receivers/worker {run['receivers_per_worker']} (moved {run['rebalanced']})"
    )


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; 1 with --quick)")
    parser.add_argument("--stacks", default=",".join(STACKS), help=f"comma-separated, from {','.join(STACKS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from {','.join(SCENARIOS)}")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 10; 3 with --quick)")
    parser.add_argument("--warmup", type=float, help="publishing seconds before the window (default 2; 1 with --quick)")
    parser.add_argument("--drain", type=float, default=10.0, help="max seconds to wait for late messages")
    parser.add_argument("--window", type=int, default=32, help="messages in flight in the saturation scenario")
    parser.add_argument("--client-procs", type=int, default=1, help="load-generator processes sharing the receivers")
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=1,
        help="handshakes in flight per client (1: workers of a shared socket get even shares)",
    )
    parser.add_argument("--receivers", type=int, help="override every scenario's receiver count")
    parser.add_argument("--profile", action="store_true", help="py-spy each worker over the window (logs/*.pyspy.txt)")
    parser.add_argument(
        "--no-balance", action="store_true", help="keep whatever share of the receivers each worker accepted"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 50-100 receivers, 3 s, 1 round")
    parser.add_argument("--out", type=Path, default=RESULTS / "fanout.json", help="the JSON results file")
    args = parser.parse_args(argv)
    stacks = [name.strip() for name in args.stacks.split(",") if name.strip()]
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    for name in stacks:
        if name not in STACKS:
            parser.error(f"unknown stack {name!r}; choose from {', '.join(STACKS)}")
    for name in scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    quick = args.quick
    settings = Settings(
        rounds=args.rounds or (1 if quick else 3),
        duration=args.duration or (3.0 if quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        drain=args.drain,
        window=args.window,
        client_procs=args.client_procs,
        connect_concurrency=args.connect_concurrency,
        receivers=args.receivers,
        quick=quick,
        memory_settle=1.0 if quick else 2.0,
        balance=not args.no_balance,
        profile=args.profile,
        stacks=stacks,
        scenarios=scenarios,
    )
    return settings, args


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=1))
    temporary.replace(path)


async def session(settings: Settings, out: Path, argv: Sequence[str]) -> int:
    logs = out.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    try:
        relays = Relays(STACKS[name] for name in settings.stacks)
    except RuntimeError as error:
        raise SystemExit(f"{error} (apt-get install redis-server redis-tools)") from error
    redis_server = relays.redis
    started = datetime.datetime.now().astimezone()
    document: dict[str, Any] = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "command": " ".join(["python", "benchmarks/fanout.py", *argv]),
            "settings": asdict(settings),
            "workers": WORKERS,
            "machine": machine_info(redis_server),
            "versions": package_versions(),
            "source": source_state(),
            "stacks": {name: asdict(STACKS[name]) for name in settings.stacks},
            "scenarios": {name: asdict(settings.scenario(name)) for name in settings.scenarios},
            "client": "picows + uvloop (benchmarks/fanout_client.py)",
        },
        "runs": [],
    }
    print(
        f"redis-server {document['meta']['machine']['redis_server']} on port {redis_server.port}; "
        f"{settings.rounds} round(s) of {len(settings.stacks)} stacks x {len(settings.scenarios)} scenarios; "
        f"window {settings.duration:g}s after {settings.warmup:g}s warm-up",
        flush=True,
    )
    try:
        for round_number in range(1, settings.rounds + 1):
            shift = (round_number - 1) % len(settings.stacks)
            order = settings.stacks[shift:] + settings.stacks[:shift]
            for scenario_name in settings.scenarios:
                scenario = settings.scenario(scenario_name)
                for stack_name in order:
                    stack = STACKS[stack_name]
                    run: dict[str, Any] = {"stack": stack_name, "scenario": scenario_name, "round": round_number}
                    prefix = logs / f"r{round_number}-{scenario_name}-{stack_name}"
                    begun = time.monotonic()
                    try:
                        async with asyncio.timeout(settings.run_limit()):
                            run.update(await run_once(stack, scenario, settings, relays, prefix))
                        run["ok"], run["error"] = True, None
                    except (Exception, TimeoutError) as error:
                        run.update(
                            ok=False,
                            error=f"{type(error).__name__}: {error}",
                            receivers=scenario.receivers,
                            rate=scenario.rate,
                            mode=scenario.mode,
                        )
                    run["seconds"] = round(time.monotonic() - begun, 1)
                    document["runs"].append(run)
                    write_json(out, document)
                    print(one_line(run), flush=True)
    finally:
        relays.stop()
        table = medians(document["runs"])
        ratio_rows = ratios(table)
        text = markdown(table, ratio_rows, settings)
        document["meta"]["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        document["summary"] = {"medians": table, "ratios": ratio_rows, "markdown": text}
        write_json(out, document)
    print()
    print(text)
    print(f"results: {out}")
    return 0 if all(run["ok"] for run in document["runs"]) else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings, args = parse_args(argv)
    raise_nofile()
    # Ctrl-C must stop the session even when started from a shell that ignores SIGINT
    # in background jobs (asyncio.run only turns SIGINT into a cancel if this is installed).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        return asyncio.run(session(settings, args.out, argv))
    except KeyboardInterrupt:
        print("interrupted; every process this run started is stopped", file=sys.stderr)
        return 130
    finally:
        CHILDREN.kill_all()


if __name__ == "__main__":
    sys.exit(main())
