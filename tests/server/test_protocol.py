"""FasterWebSocketProtocol against a scripted transport and a real RFC 6455 client parser.

The transport records what the protocol writes and lets a test pause and resume it, so the
order of frames, the bounded backlog and the overflow policy can be checked exactly.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import Protocol
from websockets.uri import parse_uri

from FasterAPI import Faster, WebSocket, WebSocketDisconnect
from FasterAPI.pubsub.envelope import prepare, room_channel
from FasterAPI.server import protocol as protocol_module
from FasterAPI.server.errors import client_errors
from FasterAPI.server.protocol import FasterWebSocketProtocol

pytestmark = pytest.mark.timeout(30)


class ScriptedTransport(asyncio.Transport):
    """Records writes; the test decides when the write buffer is 'full'."""

    def __init__(self, protocol: FasterWebSocketProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.writes = 0
        self.closing = False
        self.aborted = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        assert not self.closing, "write on a closing transport"
        self.written += data
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause(self) -> None:
        self.paused = True
        self.protocol.pause_writing()

    def resume(self) -> None:
        self.paused = False
        self.protocol.resume_writing()


class Peer:
    """The client end: a websockets ClientProtocol fed with what the server wrote."""

    def __init__(self, transport: ScriptedTransport, deflate: bool) -> None:
        self.transport = transport
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        self.client = ClientProtocol(parse_uri("ws://testserver/ws"), extensions=extensions)
        self.client.send_request(self.client.connect())
        self.response: Response | None = None

    def handshake_bytes(self) -> bytes:
        return b"".join(self.client.data_to_send())

    def frames(self) -> list[Frame]:
        self.client.receive_data(bytes(self.transport.written))
        self.transport.written.clear()
        frames: list[Frame] = []
        for event in self.client.events_received():
            if isinstance(event, Response):
                self.response = event
            else:
                frames.append(event)
        return frames

    def texts(self) -> list[str]:
        return [f.data.decode() if f.opcode is Opcode.TEXT else f"<{f.opcode.name}>" for f in self.frames()]

    def send_text(self, text: str) -> None:
        self.client.send_text(text.encode())
        self.transport.protocol.data_received(b"".join(self.client.data_to_send()))


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def make_app(events: list[Any], **options: Any) -> Faster:
    app = Faster(**{"send_queue_size": 3, **options})

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.join("room")
        try:
            while True:
                text = await ws.receive_text()
                if text.startswith("send:"):
                    await ws.send_text(text[5:])
                    events.append(("sent", text[5:]))
                elif text == "close":
                    await ws.close(4000)
        except WebSocketDisconnect as disconnect:
            events.append(("disconnect", disconnect.code))

    return app


@asynccontextmanager
async def connected(
    deflate: bool = False, pipelined: bytes = b"", ws_max_size: int = 1 << 20, **app_options: Any
) -> AsyncIterator[tuple[Faster, ScriptedTransport, Peer]]:
    """One socket through the handshake; ``pipelined`` arrives with the request (a client
    that does not wait for the 101)."""
    events: list[Any] = []
    app = make_app(events, **app_options)
    app.state.events = events
    await app.hub.start()
    transport, peer = await open_socket(app, deflate, pipelined, ws_max_size)
    assert await app.room_size("room") == 1
    try:
        yield app, transport, peer
    finally:
        if not transport.closing:
            transport.close()
        await settle()
        await app.hub.stop()


def new_socket(
    app: Faster, deflate: bool = False, ws_max_size: int = 1 << 20, **config_options: Any
) -> tuple[ScriptedTransport, Peer]:
    """A FasterWebSocketProtocol connection to ``app`` and its client, before the handshake."""
    config = Config(
        app=app,
        ws="FasterAPI.server.protocol:FasterWebSocketProtocol",
        lifespan="off",
        ws_max_size=ws_max_size,
        **config_options,
    )
    config.load()
    protocol = FasterWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    transport = ScriptedTransport(protocol)
    protocol.connection_made(transport)
    return transport, Peer(transport, deflate)


async def open_socket(
    app: Faster, deflate: bool = False, pipelined: bytes = b"", ws_max_size: int = 1 << 20
) -> tuple[ScriptedTransport, Peer]:
    """A FasterWebSocketProtocol connection to ``app``, through the handshake."""
    transport, peer = new_socket(app, deflate, ws_max_size)
    transport.protocol.data_received(peer.handshake_bytes() + pipelined)
    await settle()
    assert peer.frames() == [] and peer.response is not None and peer.response.status_code == 101
    return transport, peer


def test_broadcasts_use_the_direct_path_and_are_framed_once() -> None:
    async def scenario() -> None:
        async with connected() as (app, transport, peer):
            connection = next(iter(app.hub.connections.values()))
            assert isinstance(connection.sink, FasterWebSocketProtocol)
            await app.broadcast("room", "one")
            await app.broadcast("room", b"\x00two")
            await app.broadcast("room", {"three": 3})
            writes_before = transport.writes
            await settle()
            # Three broadcasts dispatched in one loop iteration go out in one write.
            assert transport.writes == writes_before + 1
            frames = peer.frames()
            assert [(f.opcode, f.data) for f in frames] == [
                (Opcode.TEXT, b"one"),
                (Opcode.BINARY, b"\x00two"),
                (Opcode.TEXT, b'{"three":3}'),
            ]

    asyncio.run(scenario())


def test_an_open_connection_keeps_no_handshake_objects_and_no_receive_storage() -> None:
    async def scenario() -> None:
        async with connected() as (_, transport, peer):
            protocol = transport.protocol
            # uvicorn would keep the parsed request and the 101 response for the socket's
            # life, and websockets' handshake parser the request too.
            assert getattr(protocol, "request", None) is None and protocol.response is None
            assert protocol.conn.parser.gi_code is Protocol.parse.__code__
            assert protocol.queue.empty() and protocol.writable.is_set()
            peer.send_text("send:still served")
            await settle()
            assert peer.texts() == ["still served"]

    asyncio.run(scenario())


def test_an_open_connection_keeps_its_state_in_slots_and_runs_the_app_without_wrappers() -> None:
    async def scenario() -> None:
        async with connected() as (_, transport, peer):
            protocol = transport.protocol
            # Nothing in an instance dict: a dict of uvicorn's 40-odd attributes is ~1.6 KB.
            assert vars(protocol) == {}
            # The task runs the app's own coroutine: no frame of uvicorn's run_asgi (or of
            # its proxy-headers middleware) stays suspended above it.
            (task,) = protocol.tasks
            assert task.get_coro().cr_code is Faster.__call__.__code__
            peer.send_text("send:still served")
            await settle()
            assert peer.texts() == ["still served"]

    asyncio.run(scenario())


def test_an_app_that_fails_before_accepting_gets_a_500_and_one_error_log(caplog: pytest.LogCaptureFixture) -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def scenario() -> None:
        transport, peer = new_socket(failing)  # type: ignore[arg-type]
        # After new_socket: loading uvicorn's Config replaces this logger's handlers.
        logging.getLogger("uvicorn.error").addHandler(caplog.handler)
        transport.protocol.data_received(peer.handshake_bytes())
        await settle()
        assert peer.frames() == []
        assert peer.response is not None and peer.response.status_code == 500
        assert transport.closing and not transport.protocol.tasks

    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger("uvicorn.error").removeHandler(caplog.handler)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage().strip() for record in errors] == ["Exception in ASGI application"]
    assert errors[0].exc_info is not None and str(errors[0].exc_info[1]) == "boom"


def test_a_frame_split_across_the_handshake_is_parsed_whole() -> None:
    early = Frame(Opcode.TEXT, b"send:early").serialize(mask=True, extensions=[])

    async def scenario() -> None:
        # Half a frame waits in the parser as the handshake completes: it is left in place.
        async with connected(pipelined=early[:2]) as (_, transport, peer):
            assert transport.protocol.conn.parser.gi_code is not Protocol.parse.__code__
            transport.protocol.data_received(early[2:])
            await settle()
            assert peer.texts() == ["early"]

    asyncio.run(scenario())


def test_a_fan_out_leaves_no_collector_tracked_object_per_member() -> None:
    # Objects alive per member while one broadcast fans out get promoted by the collector,
    # and with thousands of members their promotions trigger a full collection (tens of
    # milliseconds) every few seconds: the tail latency of every broadcast in that time.
    async def scenario() -> None:
        async with connected() as (app, _, peer):
            others = [await open_socket(app) for _ in range(199)]
            assert await app.room_size("room") == 200
            _, message = prepare("tick", room="room", origin="test", max_size=1 << 20)
            app.hub.on_message(room_channel("room"), message)  # warm: the flusher exists
            await settle()
            gc.collect()
            gc.disable()
            try:
                before = gc.get_count()[0]
                app.hub.on_message(room_channel("room"), message)
                tracked = gc.get_count()[0] - before
            finally:
                gc.enable()
            assert tracked < 20, f"{tracked} tracked objects for one broadcast to 200 members"
            await settle()
            assert peer.texts() == ["tick", "tick"]
            assert all(other_peer.texts() == ["tick", "tick"] for _, other_peer in others)
            for other, _ in others:
                other.close()

    asyncio.run(scenario())


def test_large_payloads_get_extended_length_headers() -> None:
    async def scenario() -> None:
        async with connected() as (app, _, peer):
            for size in (125, 126, 65535, 65536, 200_000):
                await app.broadcast("room", "x" * size)
            await settle()
            assert [len(f.data) for f in peer.frames()] == [125, 126, 65535, 65536, 200_000]

    asyncio.run(scenario())


def test_broadcasts_and_app_sends_keep_their_order() -> None:
    async def scenario() -> None:
        async with connected() as (app, _, peer):
            await app.broadcast("room", "b1")
            await settle()  # b1 is dispatched (batched, maybe not yet written)
            peer.send_text("send:a1")  # the app's own send comes after b1
            await app.broadcast("room", "b2")
            await settle()
            assert peer.texts() == ["b1", "a1", "b2"]

    asyncio.run(scenario())


def test_order_is_kept_while_the_transport_is_paused() -> None:
    async def scenario() -> None:
        async with connected() as (app, transport, peer):
            transport.pause()
            await app.broadcast("room", "b1")
            await settle()
            peer.send_text("send:a1")  # blocks in send (paused) but is queued behind b1
            await settle()
            await app.broadcast("room", "b2")
            await settle()
            assert peer.texts() == []  # nothing written while paused
            transport.resume()
            await settle()
            assert peer.texts() == ["b1", "a1", "b2"]
            assert ("sent", "a1") in app.state.events  # the app's send returned after resume

    asyncio.run(scenario())


def test_overflow_closes_with_1013_and_aborts_a_peer_that_never_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol_module, "OVERFLOW_ABORT_AFTER", 0.05)

    async def scenario() -> None:
        async with connected() as (app, transport, peer):
            transport.pause()
            for n in range(4):  # the queue holds 3
                await app.broadcast("room", f"b{n}")
            await settle()
            stats = app.hub.stats
            assert stats.slow_consumer_closes == 1
            frames = peer.frames()
            assert [f.opcode for f in frames] == [Opcode.CLOSE]  # the backlog was dropped, not sent
            assert frames[0].data[:2] == (1013).to_bytes(2, "big")
            await app.broadcast("room", "after")
            await settle()
            assert peer.frames() == []  # nothing after the close frame
            deadline = asyncio.get_running_loop().time() + 2
            while not transport.aborted and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            assert transport.aborted
            await settle()
            assert ("disconnect", 1013) in app.state.events
            assert await app.room_size("room") == 0

    asyncio.run(scenario())


def test_drop_oldest_keeps_the_newest_broadcasts() -> None:
    async def scenario() -> None:
        async with connected(overflow="drop_oldest") as (app, transport, peer):
            transport.pause()
            for n in range(6):
                await app.broadcast("room", f"b{n}")
            await settle()
            transport.resume()
            await settle()
            assert peer.texts() == ["b3", "b4", "b5"]
            assert app.hub.stats.dropped == 3
            assert app.hub.stats.slow_consumer_closes == 0

    asyncio.run(scenario())


def test_nothing_is_written_after_the_app_closes() -> None:
    async def scenario() -> None:
        async with connected() as (app, _, peer):
            peer.send_text("close")
            await settle()
            await app.broadcast("room", "too late")
            await settle()
            frames = peer.frames()
            assert [f.opcode for f in frames] == [Opcode.CLOSE]

    asyncio.run(scenario())


def test_permessage_deflate_members_get_one_shared_compressed_frame() -> None:
    async def scenario() -> None:
        async with connected(deflate=True) as (app, transport, peer):
            assert peer.response is not None
            assert "server_no_context_takeover" in peer.response.headers["Sec-WebSocket-Extensions"]
            text = "compressible " * 50
            await app.broadcast("room", text)
            await app.broadcast("room", "short")
            await settle()
            raw = bytes(transport.written)
            assert raw[0] & 0x40  # RSV1: compressed
            assert len(raw) < len(text)
            assert peer.texts() == [text, "short"]
            peer.send_text("send:from the app")  # the connection's own compressor still works
            await settle()
            assert peer.texts() == ["from the app"]

    asyncio.run(scenario())


# -- what a client gets wrong ------------------------------------------------------------------


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


@pytest.mark.parametrize(
    ("extra", "status", "reason"),
    [
        (b"".join(b"X-%d: a\r\n" % n for n in range(200)), 431, "headers_too_large"),
        (b"X-Long: " + b"a" * 9000 + b"\r\n", 431, "headers_too_large"),
    ],
    ids=["many headers", "long line"],
)
def test_a_handshake_over_the_header_limits_is_answered_and_closed(
    extra: bytes, status: int, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn's protocol has websockets build this answer, then never writes it: the socket
    # would hang open with nothing logged.
    async def scenario() -> None:
        app = make_app([])
        transport, peer = new_socket(app)
        before = client_errors.counts[reason]
        request = peer.handshake_bytes()
        transport.protocol.data_received(request[:-2] + extra + b"\r\n")
        await settle()
        assert bytes(transport.written).startswith(b"HTTP/1.1 %d " % status)
        assert transport.closing
        assert client_errors.counts[reason] == before + 1

    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
    assert errors_logged(caplog) == []


def test_invalid_utf8_closes_with_1007_without_an_error_line(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with connected() as (app, transport, peer):
            before = client_errors.counts["invalid_utf8"]
            peer.client.send_text(b"send:\xff\xfe not UTF-8")
            transport.protocol.data_received(b"".join(peer.client.data_to_send()))
            await settle()
            frames = peer.frames()
            assert [f.opcode for f in frames] == [Opcode.CLOSE]
            assert frames[0].data[:2] == (1007).to_bytes(2, "big")
            assert transport.closing
            assert ("disconnect", 1007) in app.state.events
            assert client_errors.counts["invalid_utf8"] == before + 1

    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
    assert errors_logged(caplog) == []


def test_valid_non_ascii_text_is_received() -> None:
    async def scenario() -> None:
        async with connected() as (_, _transport, peer):
            peer.send_text("send:héllo wörld ✓")
            await settle()
            assert peer.texts() == ["héllo wörld ✓"]

    asyncio.run(scenario())


def test_a_deflate_bomb_is_refused_with_1009_while_inflating(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with connected(deflate=True, ws_max_size=64 * 1024) as (app, transport, peer):
            before = client_errors.counts["message_too_big"]
            peer.client.send_binary(b"\0" * (16 << 20))  # 16 MiB of zeros: ~16 KB compressed
            bomb = b"".join(peer.client.data_to_send())
            assert len(bomb) < 64 * 1024
            transport.protocol.data_received(bomb)
            await settle()
            frames = peer.frames()
            assert [f.opcode for f in frames] == [Opcode.CLOSE]
            assert frames[0].data[:2] == (1009).to_bytes(2, "big")
            assert ("disconnect", 1009) in app.state.events
            assert client_errors.counts["message_too_big"] == before + 1

    caplog.set_level(logging.INFO)
    asyncio.run(scenario())
    assert errors_logged(caplog) == []


def test_a_frame_that_breaks_the_protocol_closes_with_1002() -> None:
    async def scenario() -> None:
        async with connected() as (_, transport, peer):
            before = client_errors.counts["bad_frame"]
            unmasked = Frame(Opcode.TEXT, b"hello").serialize(mask=False, extensions=[])
            transport.protocol.data_received(unmasked)  # a client must mask
            await settle()
            frames = peer.frames()
            assert [f.opcode for f in frames] == [Opcode.CLOSE]
            assert frames[0].data[:2] == (1002).to_bytes(2, "big")
            assert client_errors.counts["bad_frame"] == before + 1

    asyncio.run(scenario())


# -- write coalescing ----------------------------------------------------------------------------

#: Long enough that nothing waiting for the window is written while a test looks.
WINDOW = 0.5


async def written_within(transport: ScriptedTransport, writes: int, timeout: float = 10.0) -> None:
    """Wait until the transport has had ``writes`` writes."""
    deadline = asyncio.get_running_loop().time() + timeout
    while transport.writes < writes:
        assert asyncio.get_running_loop().time() < deadline, f"{transport.writes} writes, expected {writes}"
        await asyncio.sleep(0.01)


def test_coalesced_broadcasts_wait_for_the_window_and_go_out_in_one_write() -> None:
    async def scenario() -> None:
        async with connected(write_delay=WINDOW) as (app, transport, peer):
            writes = transport.writes
            for n in range(3):  # three separate loop iterations
                await app.broadcast("room", f"b{n}")
                await settle()
            assert transport.writes == writes  # held for the window
            assert transport.protocol.pending == 3
            await written_within(transport, writes + 1)
            assert transport.writes == writes + 1
            assert peer.texts() == ["b0", "b1", "b2"]
            assert transport.protocol.pending == 0

    asyncio.run(scenario())


def test_app_sends_pings_and_pongs_flush_the_window_first_and_keep_their_order() -> None:
    async def scenario() -> None:
        async with connected(write_delay=WINDOW) as (app, transport, peer):
            await app.broadcast("room", "b1")
            await settle()
            peer.send_text("send:a1")  # the app's send writes b1 first, without waiting
            await settle()
            assert peer.texts() == ["b1", "a1"]
            await app.broadcast("room", "b2")
            await settle()
            peer.client.send_ping(b"p")  # the pong writes b2 first
            transport.protocol.data_received(b"".join(peer.client.data_to_send()))
            await settle()
            assert peer.texts() == ["b2", "<PONG>"]
            await app.broadcast("room", "b3")
            await settle()
            transport.protocol.send_keepalive_ping()  # so does a keepalive ping of ours
            assert peer.texts() == ["b3", "<PING>"]
            await app.broadcast("room", "b4")
            writes = transport.writes
            await written_within(transport, writes + 1)
            assert peer.texts() == ["b4"]

    asyncio.run(scenario())


def test_nothing_is_lost_across_many_windows() -> None:
    async def scenario() -> None:
        async with connected(write_delay=0.01, send_queue_size=1000) as (app, transport, peer):
            received: list[str] = []
            for n in range(300):
                await app.broadcast("room", f"m{n}")
                if n % 7 == 0:
                    await asyncio.sleep(0.004)
                received += peer.texts()
            deadline = asyncio.get_running_loop().time() + 10
            while len(received) < 300 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
                received += peer.texts()
            assert received == [f"m{n}" for n in range(300)]
            assert transport.writes < 300  # coalesced
            assert app.hub.stats.dropped == 0

    asyncio.run(scenario())


def test_the_batch_counts_against_the_queue_bound_close_policy() -> None:
    async def scenario() -> None:
        async with connected(write_delay=WINDOW) as (app, _, peer):
            for n in range(4):  # the queue holds 3; the transport is not even paused
                await app.broadcast("room", f"b{n}")
            await settle()
            frames = peer.frames()
            assert [f.opcode for f in frames] == [Opcode.CLOSE]
            assert frames[0].data[:2] == (1013).to_bytes(2, "big")
            assert app.hub.stats.slow_consumer_closes == 1

    asyncio.run(scenario())


def test_the_batch_counts_against_the_queue_bound_drop_oldest_policy() -> None:
    async def scenario() -> None:
        async with connected(write_delay=WINDOW, overflow="drop_oldest") as (app, transport, peer):
            writes = transport.writes
            for n in range(6):
                await app.broadcast("room", f"b{n}")
            await settle()
            assert transport.protocol.pending == 3
            await written_within(transport, writes + 1)
            assert peer.texts() == ["b3", "b4", "b5"]
            assert app.hub.stats.dropped == 3

    asyncio.run(scenario())


def test_a_paused_transport_still_takes_the_batch_into_its_backlog_in_order() -> None:
    async def scenario() -> None:
        async with connected(write_delay=0.05, send_queue_size=10) as (app, transport, peer):
            await app.broadcast("room", "b1")
            await settle()
            transport.pause()
            await app.broadcast("room", "b2")
            await asyncio.sleep(0.2)  # the window ends while paused: b1 joins the backlog
            assert peer.texts() == []
            transport.resume()
            await settle()
            assert peer.texts() == ["b1", "b2"]

    asyncio.run(scenario())


@pytest.mark.parametrize("who", ["app", "client", "server"])
def test_a_close_writes_the_batch_first(who: str) -> None:
    async def scenario() -> None:
        async with connected(write_delay=WINDOW) as (app, transport, peer):
            await app.broadcast("room", "last words")
            await settle()
            if who == "app":
                peer.send_text("close")
            elif who == "client":
                peer.client.send_close(1000)
                transport.protocol.data_received(b"".join(peer.client.data_to_send()))
            else:
                transport.protocol.go_away()
            await settle()
            assert peer.texts() == ["last words", "<CLOSE>"]

    asyncio.run(scenario())


def test_the_hub_setting_reaches_the_connection() -> None:
    async def scenario() -> None:
        async with connected(write_delay=0.005) as (app, transport, _):
            settings = transport.protocol._settings
            assert settings is not None and settings.write_delay == 0.005
            assert app.hub.config.write_delay == 0.005

    asyncio.run(scenario())


def test_when_the_hub_forgets_a_connection_its_batch_is_still_written() -> None:
    async def scenario() -> None:
        async with connected(write_delay=WINDOW) as (app, _, peer):
            await app.broadcast("room", "accepted")
            await settle()
            await app.hub.discard(next(iter(app.hub.connections)))  # as when the handler returns
            assert peer.texts() == ["accepted"]
            await app.broadcast("room", "after")
            await asyncio.sleep(WINDOW * 2)
            assert peer.texts() == []

    asyncio.run(scenario())
