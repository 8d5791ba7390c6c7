"""Hostile clients against ``fasterapi run``, as an attacker would try them: raw sockets, real processes.

Half-open requests (slowloris), oversized heads on both the plain HTTP and the WebSocket
upgrade path, a permessage-deflate bomb and a storm of invalid UTF-8: each costs its sender
only, is refused within a documented bound, and is counted in ``/metrics``; the log stays
readable (a line a second at most). The server runs the demo app with a 1 s header deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.cluster.processes import wait_until
from tests.deploy.stack import Served, fasterapi_run, http
from tests.faults.harness import RawWebSocket

pytestmark = pytest.mark.timeout(180)

HEADER_TIMEOUT = 1.0
#: How late past the deadline a close may come on a loaded machine.
SLACK = 10.0
HALF_OPEN = 200


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with fasterapi_run(env={"FASTERAPI_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}) as running:
        yield running


def protocol_errors(served: Served) -> dict[str, float]:
    """``fasterapi_protocol_errors_total`` by reason, scraped from ``/metrics``."""
    text = http(f"{served.base_url}/metrics").body.decode()
    return {
        match.group(1): float(match.group(2))
        for match in re.finditer(r'^fasterapi_protocol_errors_total\{reason="(\w+)"\} (\S+)$', text, re.MULTILINE)
    }


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def wait_all_closed(sockets: list[socket.socket], timeout: float) -> dict[socket.socket, float]:
    """When (``time.monotonic()``) the server closed each socket, as noticed by polling them."""
    started = time.monotonic()
    closed_at: dict[socket.socket, float] = {}
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while len(closed_at) < len(sockets):
            left = timeout - (time.monotonic() - started)
            assert left > 0, f"{len(sockets) - len(closed_at)} of {len(sockets)} sockets still open after {timeout}s"
            for key, _ in selector.select(min(left, 1.0)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                except BlockingIOError:
                    continue
                if not data:
                    closed_at[sock] = time.monotonic()
                    selector.unregister(sock)
    return closed_at


def test_half_open_requests_are_closed_at_the_deadline_while_new_clients_are_served(served: Served) -> None:
    pid = served.process.pid
    baseline = open_fds(pid)
    upgrade = b"GET /ws/lobby?name=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConn"
    sent_at: dict[socket.socket, float] = {}
    try:
        for n in range(HALF_OPEN):
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
            sock.sendall(upgrade if n % 2 else b"GET /healthz HTTP/1.1\r\nHo")
            sent_at[sock] = time.monotonic()

        async def a_new_client() -> None:
            async with connect(f"{served.ws_url}/ws/lobby?name=newcomer", open_timeout=30) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert hello["type"] == "hello"

        started = time.monotonic()
        asyncio.run(a_new_client())
        assert http(f"{served.base_url}/healthz").status == 200
        served_in = time.monotonic() - started
        closed_at = wait_all_closed(list(sent_at), HEADER_TIMEOUT + SLACK + 30)
        latest = max(closed_at[sock] - sent for sock, sent in sent_at.items())
        assert latest < HEADER_TIMEOUT + SLACK, latest
        wait_until(lambda: open_fds(pid) <= baseline + 2, 30, "the server to release the sockets")
        print(f"new client served in {served_in:.2f}s; {HALF_OPEN} half-open closed within {latest:.2f}s")
    finally:
        for sock in sent_at:
            sock.close()
    assert protocol_errors(served).get("header_timeout", 0) >= HALF_OPEN


def handshake(served: Served, extra: bytes) -> bytes:
    """A WebSocket upgrade request for ``/ws/lobby`` with ``extra`` header lines."""
    return (
        b"GET /ws/lobby?name=big HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" % served.port
        + extra
        + b"\r\n"
    )


def answer_to(served: Served, data: bytes) -> bytes:
    """What the server answers to ``data`` before it closes the connection."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
        return answer


@pytest.mark.parametrize(
    "extra",
    [
        b"".join(b"X-Pad-%d: a\r\n" % n for n in range(200)),
        b"X-Long: " + b"a" * 9000 + b"\r\n",
        b"X-Huge: " + b"a" * (20 << 20) + b"\r\n",
    ],
    ids=["200 headers", "9 KB line", "20 MiB line"],
)
def test_oversized_heads_get_431_on_both_paths(served: Served, extra: bytes) -> None:
    before = protocol_errors(served).get("headers_too_large", 0)
    upgrade = answer_to(served, handshake(served, extra))
    assert upgrade.startswith(b"HTTP/1.1 431 "), upgrade[:200]
    plain = answer_to(served, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n")
    assert plain.startswith(b"HTTP/1.1 431 "), plain[:200]
    assert protocol_errors(served)["headers_too_large"] == before + 2
    assert http(f"{served.base_url}/healthz").status == 200


class PeakRss:
    """Samples a process's RSS every few milliseconds in a thread; ``peak`` in KiB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_deflate_bomb_is_refused_with_1009_before_it_costs_memory(served: Served) -> None:
    pid = served.process.pid
    bomb = b"\0" * (16 << 20)  # 16 MiB: about 16 KB once deflated

    async def send(payload: bytes) -> int | None:
        async with connect(f"{served.ws_url}/ws/bombs?name=bomber", compression="deflate", open_timeout=30) as ws:
            assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
            await asyncio.wait_for(ws.recv(), 30)  # hello
            await ws.send(payload)
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    async def bombs() -> list[int | None]:
        return [await send(bomb) for _ in range(20)]

    async def warm_up() -> None:  # the deflate path's own allocations, before measuring
        async with connect(f"{served.ws_url}/ws/bombs?name=warm", compression="deflate", open_timeout=30) as ws:
            await asyncio.wait_for(ws.recv(), 30)
            await ws.send("x" * 1000)

    asyncio.run(warm_up())
    before = protocol_errors(served).get("message_too_big", 0)
    baseline = rss_kib(pid)
    with PeakRss(pid) as rss:
        codes = asyncio.run(bombs())
    assert codes == [1009] * 20
    growth_mib = (rss.peak - baseline) / 1024
    print(f"20 bombs of 16 MiB: peak RSS +{growth_mib:.1f} MiB over {baseline / 1024:.1f} MiB")
    assert growth_mib < 8, f"the worker grew {growth_mib:.1f} MiB"
    assert protocol_errors(served)["message_too_big"] == before + 20


def test_an_invalid_utf8_storm_is_counted_and_logs_a_line_a_second(served: Served) -> None:
    storm = 200
    before = protocol_errors(served).get("invalid_utf8", 0)
    log_before = served.output()
    started = time.monotonic()
    for n in range(storm):
        raw = RawWebSocket(served.port, f"/ws/storm?name=s{n}")
        try:
            assert raw.status == 101
            raw.send_frame(0x1, b"\xff\xfe\xfd not UTF-8")
            assert raw.close_code() == 1007
        finally:
            raw.close()
    elapsed = time.monotonic() - started
    wait_until(
        lambda: protocol_errors(served).get("invalid_utf8", 0) == before + storm, 30, "every refusal to be counted"
    )

    def our_lines() -> list[str]:
        new = served.output()[len(log_before) :]
        return [line for line in new.splitlines() if "invalid UTF-8" in line or "invalid_utf8" in line]

    def logged() -> int:
        """Refusals the log accounts for: each a line of its own, or its count in a summary line."""
        lines = our_lines()
        summarized = sum(int(count) for count in re.findall(r"invalid_utf8 (\d+)", "\n".join(lines)))
        return summarized + sum("Closed the WebSocket" in line for line in lines)

    # The suppressed ones are summarized once their second is over.
    wait_until(lambda: logged() >= storm, 30, "the log to account for every refusal")
    lines = our_lines()
    print(f"{storm} invalid frames in {elapsed:.1f}s: {len(lines)} log lines")
    assert logged() == storm
    assert 1 <= len(lines) <= elapsed + 3, lines
    new_output = served.output()[len(log_before) :]
    assert "Traceback" not in new_output and "ERROR" not in new_output


def test_the_open_file_limit_is_raised_and_logged(served: Served) -> None:
    assert re.search(r"open file limit: soft \d+( raised to \d+)?, hard (\d+|unlimited)", served.output())


def test_gunicorn_workers_keep_the_same_deadline_and_limits() -> None:
    """``fasterapi run --workers 2``: FasterWorker under deploy/gunicorn.conf.py."""
    with fasterapi_run("--workers", "2", env={"FASTERAPI_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}) as cluster:
        with socket.create_connection(("127.0.0.1", cluster.port), timeout=30) as sock:
            sock.sendall(b"GET /ws/lobby HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
            sent = time.monotonic()
            closed_at = wait_all_closed([sock], HEADER_TIMEOUT + SLACK + 30)
            assert closed_at[sock] - sent < HEADER_TIMEOUT + SLACK
        assert answer_to(cluster, handshake(cluster, b"X-Long: " + b"a" * 9000 + b"\r\n")).startswith(b"HTTP/1.1 431 ")
        assert http(f"{cluster.base_url}/healthz").status == 200
        assert re.search(r"open file limit: soft \d+", cluster.output())
