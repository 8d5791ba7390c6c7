"""What the fault tests share: WebSocket clients (real and hand-made), HTTP, Redis and /proc probes.

Synchronisation is by events (a client's waiters are checked on every message it receives)
and by polling until a deadline, never by fixed sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
import random
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.redis_server import RedisServer

TIMEOUT = 15.0


# -- HTTP ---------------------------------------------------------------------------------


@dataclass
class Reply:
    """An HTTP answer: status, decoded JSON body (or text), and how long the request took."""

    status: int
    body: Any
    seconds: float


def http(method: str, url: str, body: bytes | None = None, timeout: float = TIMEOUT) -> Reply:
    """One HTTP request on a fresh connection (so successive requests spread over workers)."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Connection": "close"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    seconds = time.perf_counter() - started
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return Reply(status, parsed, seconds)


async def ahttp(method: str, url: str, body: bytes | None = None, timeout: float = TIMEOUT) -> Reply:
    """:func:`http` without blocking the event loop."""
    return await asyncio.to_thread(http, method, url, body, timeout)


async def apoll(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.02) -> float:
    """Async :func:`tests.cluster.processes.wait_until`."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


# -- WebSocket clients ----------------------------------------------------------------------


def _parse(raw: str | bytes) -> Any:
    if isinstance(raw, bytes):
        return raw
    if raw.startswith("{"):
        with contextlib.suppress(ValueError):
            return json.loads(raw)
    return raw


class Client:
    """A real WebSocket client (the ``websockets`` library) that records what it receives.

    A reader task appends every message (JSON objects decoded, other text as ``str``) to
    :attr:`messages` and wakes the waiters whose predicate it satisfies.
    """

    def __init__(self, ws: ClientConnection, hello: dict[str, Any], early: Sequence[Any] = ()) -> None:
        self.ws = ws
        self.hello = hello
        self.pid: int = hello["pid"]
        self.id: str = hello["id"]
        self.room: str = hello["room"]
        self.messages: list[Any] = list(early)
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._waiters: list[tuple[Callable[[Any], bool], asyncio.Future[Any]]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, **options: Any) -> Client:
        """Connect and wait for the hello, which the app sends once the room is joined.

        A broadcast may overtake the hello; such messages are kept, before the others.
        """
        ws = await connect(url, open_timeout=TIMEOUT, max_queue=None, **options)
        early: list[Any] = []
        async with asyncio.timeout(TIMEOUT):
            while not is_type("hello")(message := _parse(await ws.recv())):
                early.append(message)
        return cls(ws, message, early)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = _parse(raw)
                self.messages.append(message)
                for entry in list(self._waiters):
                    predicate, future = entry
                    if not future.done() and predicate(message):
                        future.set_result(message)
                        self._waiters.remove(entry)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.id} closed with {self.close_code}"))
            self._waiters.clear()

    async def wait_for(self, predicate: Callable[[Any], bool], timeout: float = TIMEOUT, since: int = 0) -> Any:
        """The first message from index ``since`` on that satisfies ``predicate``."""
        for message in self.messages[since:]:
            if predicate(message):
                return message
        if self.closed.is_set():
            raise ConnectionError(f"{self.id} closed with {self.close_code}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove((predicate, future))

    async def status(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Ask this client's own worker for its status (works while the relay is down)."""
        since = len(self.messages)
        await self.ws.send("status")
        status: dict[str, Any] = await self.wait_for(is_type("status"), timeout, since)
        return status

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


def is_type(kind: str) -> Callable[[Any], bool]:
    return lambda message: isinstance(message, dict) and message.get("type") == kind


async def connect_many(urls: Iterable[str], **options: Any) -> list[Client]:
    """Open a client on each URL concurrently; close them all if one fails."""
    results = await asyncio.gather(*(Client.connect(url, **options) for url in urls), return_exceptions=True)
    clients = [r for r in results if isinstance(r, Client)]
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        await close_all(clients)
        raise errors[0]
    return clients


async def connect_spread(
    ws_url: str, rooms: Sequence[str], workers: int, min_clients: int = 0, max_clients: int = 400
) -> list[Client]:
    """Connect clients to ``/ws/{room}`` until every worker has at least one in every room.

    One at a time: a batch of simultaneous connections mostly lands on whichever worker
    wakes first, while successive ones spread over the workers.
    """
    clients: list[Client] = []
    try:
        while True:
            seen = {(c.pid, c.room) for c in clients}
            pids = {c.pid for c in clients}
            covered = len(pids) >= workers and all((pid, room) in seen for pid in pids for room in rooms)
            if covered and len(clients) >= min_clients:
                return clients
            if len(clients) >= max_clients:
                raise AssertionError(f"{len(clients)} clients did not cover {workers} workers x {rooms}: {seen}")
            # A random room still missing somewhere: a fixed rotation can fall in step with the
            # order in which the workers happen to accept.
            missing = [room for room in rooms if any((pid, room) not in seen for pid in pids)]
            room = random.choice(missing or list(rooms))
            clients.append(await Client.connect(f"{ws_url}/ws/{room}"))
    except BaseException:
        await close_all(clients)
        raise


async def close_all(clients: Iterable[Client]) -> None:
    await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def by_worker(clients: Iterable[Client]) -> dict[int, Client]:
    """One client per worker pid (to ask each worker for its status)."""
    chosen: dict[int, Client] = {}
    for client in clients:
        if not client.closed.is_set():
            chosen.setdefault(client.pid, client)
    return chosen


async def statuses(clients: Iterable[Client]) -> dict[int, dict[str, Any]]:
    """Each worker's status, asked through one of its own clients."""
    chosen = by_worker(clients)
    replies = await asyncio.gather(*(client.status() for client in chosen.values()))
    return dict(zip(chosen, replies, strict=True))


async def wait_workers(
    clients: Iterable[Client], predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[int, dict[str, Any]]:
    """Poll every worker's status (through its clients) until ``predicate`` holds for each."""
    chosen = list(clients)
    deadline = time.monotonic() + timeout
    while True:
        current = await statuses(chosen)
        if all(predicate(status) for status in current.values()):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {current}")
        await asyncio.sleep(0.02)


async def equalize_pools(clients: Iterable[Client], n: int) -> None:
    """Make every worker run ``n`` broadcasts at once, so each publish pool holds ``n`` connections.

    The pool keeps as many connections as were ever in use together; counting connections
    before and after a fault is only fair when both counts follow the same peak.
    """
    chosen = by_worker(clients)

    async def one(client: Client) -> None:
        since = len(client.messages)
        await client.ws.send(f"concurrent:{n}")
        await client.wait_for(is_type("concurrent-done"), since=since)

    await asyncio.gather(*(one(client) for client in chosen.values()))


async def measure_recovery(
    clients: Sequence[Client], base_url: str, since: float, timeout: float = 20.0, interval: float = 0.05
) -> float:
    """Broadcast unique probes to every client's room until every client got one after ``since``.

    Returns the seconds from ``since`` (a ``time.monotonic()``) to the moment the last client
    received its first probe. A probe that the relay refuses (503) is simply retried.
    """
    token = os.urandom(4).hex()
    rooms = sorted({c.room for c in clients})
    received: dict[str, float] = {}

    def got_probe(message: Any) -> bool:
        return isinstance(message, str) and message.startswith(f"probe:{token}:")

    async def wait_one(client: Client) -> None:
        await client.wait_for(got_probe, timeout, since=len(client.messages))
        received[client.id] = time.monotonic()

    waiters = asyncio.gather(*(wait_one(c) for c in clients))
    deadline = time.monotonic() + timeout
    n = 0
    try:
        while not waiters.done():
            if time.monotonic() > deadline:
                missing = [c.id for c in clients if c.id not in received]
                raise AssertionError(f"{len(missing)} clients got no probe within {timeout}s: {missing[:5]}")
            for room in rooms:
                n += 1
                await ahttp("POST", f"{base_url}/broadcast/{room}", f"probe:{token}:{n}".encode(), timeout=5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiters), interval)
        await waiters
    finally:
        if not waiters.done():
            waiters.cancel()
            with contextlib.suppress(BaseException):
                await waiters
    return max(received.values()) - since


# -- a hand-made WebSocket client, for frames a real client will not send --------------------


class RawWebSocket:
    """A blocking WebSocket client over a plain socket: the handshake by hand, then raw frames.

    ``rcvbuf`` shrinks the socket's receive buffer (set before connecting, so the window
    is small from the start): a client that then never reads backs the server up quickly.
    """

    def __init__(
        self, port: int, path: str, *, origin: str | None = None, rcvbuf: int | None = None, timeout: float = TIMEOUT
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *([f"Origin: {origin}"] if origin else []),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"handshake: connection closed after {self._buffer!r}")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        """Send one masked frame (a client must mask)."""
        first = (0x80 if fin else 0) | opcode
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", first, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", first, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, size)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def recv_frame(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload)."""
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(size)

    def close_code(self) -> int:
        """Read frames until the server's close frame; return its code."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


# -- Redis and /proc --------------------------------------------------------------------------


def fasterapi_clients(redis: RedisServer, prefix: str = "fasterapi:") -> collections.Counter[str]:
    """The app's connections the server sees, by client name (``fasterapi:sub``/``pub``)."""
    return collections.Counter(
        entry["name"] for entry in redis.admin.client_list() if entry.get("name", "").startswith(prefix)
    )


def sockets_to(port: int) -> collections.Counter[str]:
    """States of local TCP sockets whose remote end is 127.0.0.1:``port`` (the client sides)."""
    names = {"01": "ESTABLISHED", "08": "CLOSE_WAIT", "06": "TIME_WAIT", "07": "CLOSE", "04": "FIN_WAIT1"}
    states: collections.Counter[str] = collections.Counter()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[2] == f"0100007F:{port:04X}":
                states[names.get(fields[3], fields[3])] += 1
    return states


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class BurstReader:
    """A lean reader for ``/burst``: checks that messages come numbered 0, 1, 2... then ``end``.

    Keeps counts and times only (a burst is thousands of kilobyte-sized messages per client).
    """

    def __init__(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.pid: int = hello["pid"]
        self.expected = 0
        self.out_of_order = 0
        self.first: float | None = None
        self.last: float | None = None
        self.ends = 0
        self.close_code: int | None = None
        self._task = asyncio.create_task(self._read())
        self._end = asyncio.Event()

    @classmethod
    async def connect(cls, url: str) -> BurstReader:
        ws = await connect(url, open_timeout=TIMEOUT, max_queue=None, max_size=None)
        hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        return cls(ws, hello)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.monotonic()
                if raw == "end":
                    self.ends += 1
                    self.last = now
                    self._end.set()
                    continue
                if self.first is None:
                    self.first = now
                seq = int(raw[:8])
                if seq != self.expected:
                    self.out_of_order += 1
                self.expected = seq + 1
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self._end.set()

    async def wait_end(self, ends: int, timeout: float) -> None:
        """Wait until the ``ends``-th ``end`` arrived (or the socket closed)."""
        async with asyncio.timeout(timeout):
            while self.ends < ends and self.close_code is None:
                self._end.clear()
                await self._end.wait()

    def reset(self) -> None:
        self.expected = 0
        self.first = self.last = None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
