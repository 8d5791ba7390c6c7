"""Where an idle WebSocket's memory goes, by source line, for two stacks side by side.

``fanout.py``'s memory scenario says how many KiB of worker RSS each idle connection costs;
this says which lines allocated them. Each stack's app from ``benchmarks/stacks/`` is served
by one uvicorn server in this process, with the WebSocket protocol its gunicorn worker class
would load (``FasterWorker``: our protocol; ``UvicornWorker``: uvicorn's websockets-sansio).
A client process opens warm-up connections, then ``--connections`` more; ``tracemalloc``
compares the Python heap before and after those, and the per-connection difference is
printed per line, with the lines where the two stacks differ most.

    .bench-venv/bin/python benchmarks/connection_memory.py                  # fasterapi vs bare-asgi
    .bench-venv/bin/python benchmarks/connection_memory.py --stacks fasterapi-asgi,bare-asgi

Traced bytes leave out allocator overhead and the kernel's socket buffers, so they come out
somewhat under the RSS figures; the differences between stacks are what this is for.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.fanout import STACKS  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402
from tests.servers import free_port  # noqa: E402

WARM_UP = 100
PROTOCOLS = {
    "FasterAPI.server.worker.FasterWorker": "FasterAPI.server.protocol:FasterWebSocketProtocol",
    "uvicorn_worker.UvicornWorker": "websockets-sansio",
}
SITE = ("site-packages/", f"python{sys.version_info.major}.{sys.version_info.minor}/", str(ROOT) + "/")


def _where(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for marker in SITE:
        if marker in name:
            name = name.split(marker, 1)[1]
            break
    return f"{name}:{frame.lineno}"


async def _client(port: int, path: str, count: int) -> None:
    """Open ``WARM_UP`` connections, say so, then ``count`` more on a line from stdin; hold them."""
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}{path}"
    # No permessage-deflate: the benchmark's client (picows) does not offer it either.
    sockets = [await connect(url, compression=None) for _ in range(WARM_UP)]
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("warm", flush=True)
    await reader.readline()
    sockets += [await connect(url, compression=None) for _ in range(count)]
    print("open", flush=True)
    await reader.readline()
    for socket in sockets:
        await socket.close()


async def measure(stack_name: str, connections: int, redis_url: str) -> dict[str, float]:
    """Bytes per connection allocated by each source line while ``connections`` sockets opened."""
    import importlib

    import uvicorn

    stack = STACKS[stack_name]
    os.environ["BENCH_REDIS_URL"] = redis_url
    module_name, _, attribute = stack.app.partition(":")
    app = getattr(importlib.import_module(module_name), attribute)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, ws=PROTOCOLS[stack.worker_class], log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.02)
    client = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", str(port), stack.recv_path, str(connections),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert client.stdin is not None and client.stdout is not None
    try:
        if (await client.stdout.readline()).strip() != b"warm":
            raise RuntimeError("the client could not open its warm-up connections")
        await asyncio.sleep(0.5)  # every handler reaches its first receive
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        client.stdin.write(b"go\n")
        if (await client.stdout.readline()).strip() != b"open":
            raise RuntimeError("the client could not open its connections")
        await asyncio.sleep(1.0)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        client.stdin.write(b"close\n")
        await client.stdin.drain()
        await client.wait()
        server.should_exit = True
        await serving
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    per_line: dict[str, float] = {}
    for stat in after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno"):
        where = _where(stat.traceback[0])
        per_line[where] = per_line.get(where, 0.0) + stat.size_diff / connections
    return per_line


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def report(results: dict[str, dict[str, float]], top: int) -> None:
    for name, per_line in results.items():
        print(f"\n{name}: {sum(per_line.values()):,.0f} traced bytes per idle connection; largest lines:")
        for where, size in sorted(per_line.items(), key=lambda item: -item[1])[:top]:
            print(f"  {size:8.0f}  {where}")
    if len(results) == 2:
        (first, a), (second, b) = results.items()
        print(f"\n{first} minus {second}, per connection, lines differing by 16 bytes or more:")
        rows = sorted(((a.get(k, 0.0) - b.get(k, 0.0), k) for k in a.keys() | b.keys()), reverse=True)
        for diff, where in rows:
            if abs(diff) >= 16:
                print(f"  {diff:+8.0f}  {where}")


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["--client"]:
        asyncio.run(_client(int(args[1]), args[2], int(args[3])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", default="fasterapi,bare-asgi", help="one or two of: " + ", ".join(STACKS))
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25, help="lines listed per stack")
    options = parser.parse_args(args)
    names = [name for name in options.stacks.split(",") if name]
    if any(name not in STACKS for name in names) or not 1 <= len(names) <= 2:
        parser.error(f"--stacks takes one or two of {', '.join(STACKS)}")
    redis_server = RedisServer().start()
    results: dict[str, dict[str, float]] = {}
    try:
        for name in names:
            redis_server.admin.flushall()
            # The workers' loop (uvicorn's "auto" picks uvloop when installed): its transports
            # and timers are part of what a connection costs.
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                results[name] = runner.run(measure(name, options.connections, redis_server.url))
    finally:
        redis_server.stop()
    report(results, options.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
