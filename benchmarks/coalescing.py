"""Write coalescing in one real worker: write calls and server CPU per delivery, by ``write_delay``.

Runs ``fasterapi run benchmarks.stacks.fasterapi_app:app`` (one worker, memory backend) once
per delay, connects ``--receivers`` sockets to the room and publishes ``--messages`` messages
``--interval`` seconds apart, then reports per delivery the worker's write system calls
(``syscw`` in ``/proc/<pid>/io``) and CPU time (``/proc/<pid>/stat``)::

    .venv/bin/python benchmarks/coalescing.py --delays 0,0.005,0.05 --rounds 2

Messages closer together than the delay share a write; farther apart, they cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
FASTERAPI = Path(sys.executable).parent / "fasterapi"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, write system calls) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return cpu, int(io["syscw"])


async def run(delay: float, receivers: int, messages: int, interval: float) -> str:
    port = free_port()
    env = {**os.environ, "FASTERAPI_WRITE_DELAY": str(delay), "BENCH_REDIS_URL": "memory://"}
    command = [str(FASTERAPI), "run", "benchmarks.stacks.fasterapi_app:app", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--log-level", "warning"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        sockets = [await connect(f"ws://127.0.0.1:{port}/ws", compression=None) for _ in range(receivers)]
        publisher = await connect(f"ws://127.0.0.1:{port}/pub", compression=None)
        await asyncio.sleep(1)
        received = [0] * receivers

        async def read(index: int, ws: ClientConnection) -> None:
            async for message in ws:
                received[index] += 1
                if message == "end":
                    return

        readers = [asyncio.create_task(read(index, ws)) for index, ws in enumerate(sockets)]
        cpu_before, writes_before = usage(server.pid)
        started = time.monotonic()
        for n in range(messages):
            await publisher.send(f"message {n}")
            await asyncio.sleep(interval)
        await publisher.send("end")
        await asyncio.wait_for(asyncio.gather(*readers), 300)
        cpu_after, writes_after = usage(server.pid)
        deliveries = sum(received)
        for ws in [*sockets, publisher]:
            await ws.close()
        return (
            f"write_delay {delay:g}: {deliveries:,} deliveries in {time.monotonic() - started:.1f}s, "
            f"{(writes_after - writes_before) / deliveries:.3f} write calls and "
            f"{(cpu_after - cpu_before) * 1e6 / deliveries:.2f} µs of server CPU per delivery"
        )
    finally:
        server.terminate()
        server.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--delays", default="0,0.005,0.05", help="comma-separated write_delay values (seconds)")
    parser.add_argument("--receivers", type=int, default=20)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.002, help="seconds between published messages")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.rounds):
        for delay in (float(value) for value in args.delays.split(",")):
            print(await run(delay, args.receivers, args.messages, args.interval), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
