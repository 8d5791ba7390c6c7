"""Admission: a worker stops accepting short of its open-files limit and resumes below it.

In-process with a real listening socket (the pause and resume themselves), then ``fasterapi
run`` under a low open-files limit, as one process and as two gunicorn workers, with real
clients: connections over the limit wait in the backlog instead of being refused, a sibling
worker takes them, and a worker at its limit still serves the ones it has.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from FasterAPI.server.admission import (
    RESERVE_FILES,
    Admission,
    AdmissionState,
    AdmittedConnections,
    connection_limit,
)
from tests.cluster.processes import wait_until
from tests.deploy.stack import Served, fasterapi_run
from tests.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 30
#: Low enough that a few hundred sockets reach the limit, high enough to boot a worker.
OPEN_FILES = 400


def test_the_limit_keeps_a_reserve_for_files_opened_later() -> None:
    assert connection_limit(20_000, 30) == 20_000 - 30 - RESERVE_FILES - 400
    assert connection_limit(1_024, 24) == 1_024 - 24 - RESERVE_FILES - 20
    assert connection_limit(200, 100) == 1  # never zero: a worker that accepts nothing is no worker


class Accepted(asyncio.Protocol):
    """Counts the connections a server made, in an AdmittedConnections set."""

    def __init__(self, connections: AdmittedConnections, made: asyncio.Queue[Accepted]) -> None:
        self.connections = connections
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.connections.add(self)
        self.made.put_nowait(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)


def _loops() -> list[Any]:
    loops: list[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        return loops
    return [*loops, pytest.param(uvloop.new_event_loop, id="uvloop")]


#: The in-process tests run on both event loops a worker may use.
on_each_loop = pytest.mark.parametrize("new_loop", _loops())


def run(new_loop: Callable[[], asyncio.AbstractEventLoop], scenario: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(scenario())


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


class Gated:
    """A real server on ``listening`` whose connections an Admission of ``limit`` counts."""

    def __init__(self) -> None:
        self.connections = AdmittedConnections()
        self.made: asyncio.Queue[Accepted] = asyncio.Queue()
        self.servers: list[asyncio.AbstractServer] = []

    @classmethod
    async def start(cls, listening: socket.socket, limit: int) -> tuple[Gated, Admission]:
        gated = cls()
        gated.servers.append(await gated.listen(listening))
        admission = gated.connections.admission = Admission(limit, gated.servers, gated.listen)
        return gated, admission

    async def listen(self, sock: socket.socket) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: Accepted(self.connections, self.made), sock=sock)


@on_each_loop
def test_at_the_limit_connections_wait_in_the_backlog_until_there_is_room(
    listening: socket.socket, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    async def scenario() -> None:
        address = listening.getsockname()
        gated, admission = await Gated.start(listening, 3)
        connections, made, servers = gated.connections, gated.made, gated.servers
        assert admission.resume_below == 2
        clients: list[socket.socket] = []
        try:
            # One at a time: asyncio's loop accepts every connection waiting at once.
            accepted = []
            for _ in range(3):
                clients.append(socket.create_connection(address))
                accepted.append(await asyncio.wait_for(made.get(), TIMEOUT))
            assert admission.state is AdmissionState.PAUSED and admission.pauses == 1
            clients.append(socket.create_connection(address))
            # The fourth sits in the listening socket's queue: nobody takes it while paused.
            await asyncio.to_thread(wait_until, lambda: accept_queue(address[1]) == 1, TIMEOUT, "a queued connection")
            assert made.empty()
            # One closed: 2 left, not below the resume mark.
            accepted[0].transport.close()
            await wait_for(lambda: len(connections) == 2)
            assert admission.state is AdmissionState.PAUSED
            # Two closed: below it; the queued connection is accepted by the resumed server.
            accepted[1].transport.close()
            fourth = await asyncio.wait_for(made.get(), TIMEOUT)
            assert admission.state is AdmissionState.ACCEPTING
            assert servers[0].is_serving() and len(servers) == 1
            # The list of servers was updated in place: closing it closes the one listening.
            fourth.transport.close()
            accepted[2].transport.close()
            admission.close()
            for server in servers:
                server.close()
            assert accept_queue(address[1]) is None  # nothing listens on the port any more
        finally:
            for client in clients:
                client.close()

    run(new_loop, scenario)


@on_each_loop
def test_closing_while_paused_never_listens_again(
    listening: socket.socket, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    async def scenario() -> None:
        port = listening.getsockname()[1]
        gated, admission = await Gated.start(listening, 1)
        connections, made = gated.connections, gated.made
        client = socket.create_connection(("127.0.0.1", port))
        try:
            first = await asyncio.wait_for(made.get(), TIMEOUT)
            assert admission.state is AdmissionState.PAUSED
            admission.close()  # shutdown begins
            first.transport.close()
            await wait_for(lambda: not connections)
            assert admission.state is AdmissionState.CLOSED
            assert accept_queue(port) is None
        finally:
            client.close()

    run(new_loop, scenario)


# -- fasterapi run under a low open-files limit ------------------------------------------------


def test_one_process_at_its_limit_serves_its_clients_and_queues_the_next(redis_server: RedisServer) -> None:
    with fasterapi_run("--backend", redis_server.url, open_files=OPEN_FILES) as served:
        (limit,) = limits(served)

        async def scenario() -> None:
            clients = await join_all(served, limit)
            try:
                await asyncio.to_thread(wait_until, lambda: "Not accepting" in served.output(), TIMEOUT, "the pause")
                extra = asyncio.ensure_future(join(served, "extra"))
                await asyncio.to_thread(wait_until, lambda: accept_queue(served.port) == 1, TIMEOUT, "a queued one")
                # At its limit, the worker still delivers (through Redis) to every client it has.
                await clients[0][0].send("at the limit")
                await asyncio.gather(*(receive_until(ws, "at the limit") for ws, _ in clients))
                assert not extra.done()
                # Room again: the waiting client is served, not refused.
                await asyncio.gather(*(ws.close() for ws, _ in clients[:2]))
                ws, hello = await asyncio.wait_for(extra, TIMEOUT)
                assert hello["type"] == "hello"
                clients.append((ws, hello))
            finally:
                await asyncio.gather(*(ws.close() for ws, _ in clients), return_exceptions=True)

        asyncio.run(scenario())
        assert "Accepting connections again" in served.output()
        assert "Traceback" not in served.output()


def test_two_workers_fill_each_other_up_to_their_limits(redis_server: RedisServer) -> None:
    with fasterapi_run("--workers", "2", "--backend", redis_server.url, open_files=OPEN_FILES) as served:
        wait_until(lambda: len(limits(served)) == 2, TIMEOUT, "both workers' limits")
        capacity = sum(limits(served))

        async def scenario() -> None:
            clients = await join_all(served, capacity)
            try:
                per_worker = Counter(hello["pid"] for _, hello in clients)
                # Whichever worker the kernel favoured, neither went past its limit: the other took the rest.
                assert sorted(per_worker.values()) == sorted(limits(served)), per_worker
                extra = asyncio.ensure_future(join(served, "extra"))
                await asyncio.to_thread(wait_until, lambda: accept_queue(served.port) == 1, TIMEOUT, "a queued one")
                await clients[0][0].send("both full")
                await asyncio.gather(*(receive_until(ws, "both full") for ws, _ in clients))
                leaving = [ws for ws, hello in clients if hello["pid"] == clients[0][1]["pid"]][:2]
                await asyncio.gather(*(ws.close() for ws in leaving))
                ws, hello = await asyncio.wait_for(extra, TIMEOUT)
                assert hello["pid"] == clients[0][1]["pid"]
                clients.append((ws, hello))
            finally:
                await asyncio.gather(*(ws.close() for ws, _ in clients), return_exceptions=True)

        asyncio.run(scenario())
        assert served.output().count("Not accepting") >= 2  # each worker reached its limit
        assert "Traceback" not in served.output()


# -- helpers ---------------------------------------------------------------------------------------


def limits(served: Served) -> list[int]:
    """Each worker's limit, from its startup line."""
    return [int(n) for n in re.findall(r"Accepting at most (\d+) connections", served.output())]


def accept_queue(port: int) -> int | None:
    """Connections waiting to be accepted on the socket listening on ``port``; None if none listens.

    The kernel's own count (``/proc/net/tcp``: a listening socket's rx_queue is its accept queue).
    """
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            return int(queues.split(":")[1], 16)
    return None


async def wait_for(predicate: Any) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), TIMEOUT)


async def join(served: Served, name: str) -> tuple[ClientConnection, dict[str, Any]]:
    # Unbounded: clients that read only some frames must still see the close handshake at once.
    ws = await connect(f"{served.ws_url}/ws/admission?name={name}", open_timeout=None, max_queue=None)
    hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return ws, hello


async def join_all(served: Served, count: int) -> list[tuple[ClientConnection, dict[str, Any]]]:
    joined = await asyncio.gather(*(join(served, f"n{n}") for n in range(count)), return_exceptions=True)
    clients = [client for client in joined if not isinstance(client, BaseException)]
    failed = [client for client in joined if isinstance(client, BaseException)]
    if failed:
        await asyncio.gather(*(ws.close() for ws, _ in clients), return_exceptions=True)
        raise AssertionError(f"{len(failed)} of {count} could not join: {failed[0]!r}")
    return clients


async def receive_until(ws: ClientConnection, text: str) -> None:
    """Wait for the room's chat message ``text`` on ``ws``."""

    async def scan() -> None:
        while json.loads(await ws.recv()).get("text") != text:
            pass

    await asyncio.wait_for(scan(), TIMEOUT)
