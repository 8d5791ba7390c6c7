"""Write coalescing's timers: one shared flush per window against one timer per connection.

``FasterWebSocketProtocol`` with ``write_delay`` collects each connection's broadcasts and
writes them when the window ends. Centrifugo arms a timer per connection; ours arms one per
worker (event loop) and flushes every connection that has frames. This measures only what
differs, the loop's cost of scheduling and running the flushes, in CPU µs per connection per
window, on asyncio's loop and on uvloop::

    .venv/bin/python benchmarks/flush_timers.py --connections 5000 --windows 200
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

DELAY = 0.005


class Connection:
    """Just what a flush touches: the batch."""

    __slots__ = ("batch",)

    def __init__(self) -> None:
        self.batch: bytes | None = None

    def flush(self) -> None:
        self.batch = None


async def shared_timer(connections: list[Connection], windows: int) -> None:
    loop = asyncio.get_running_loop()
    dirty: list[Connection] = []

    def flush() -> None:
        nonlocal dirty
        flushing, dirty = dirty, []
        for connection in flushing:
            connection.flush()

    for _ in range(windows):
        for connection in connections:
            if connection.batch is None:
                connection.batch = b"frame"
                if not dirty:
                    loop.call_later(DELAY, flush)
                dirty.append(connection)
        await asyncio.sleep(DELAY * 1.5)


async def timer_per_connection(connections: list[Connection], windows: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(windows):
        for connection in connections:
            if connection.batch is None:
                connection.batch = b"frame"
                loop.call_later(DELAY, connection.flush)
        await asyncio.sleep(DELAY * 1.5)


def measure(
    strategy: Callable[[list[Connection], int], Coroutine[Any, Any, None]],
    count: int,
    windows: int,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> float:
    """CPU µs per connection per window."""
    connections = [Connection() for _ in range(count)]
    started = time.process_time()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(strategy(connections, windows))
    return (time.process_time() - started) * 1e6 / (count * windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]] = [("asyncio", None)]
    try:
        import uvloop

        loops.append(("uvloop", uvloop.new_event_loop))
    except ImportError:
        pass
    for loop_name, factory in loops:
        for name, strategy in (("shared timer", shared_timer), ("timer per connection", timer_per_connection)):
            results = sorted(measure(strategy, args.connections, args.windows, factory) for _ in range(args.rounds))
            print(
                f"{loop_name:8s} {name:21s} {results[len(results) // 2]:.3f} µs per connection-window "
                f"(median of {args.rounds}; {args.connections} connections x {args.windows} windows)"
            )


if __name__ == "__main__":
    main()
