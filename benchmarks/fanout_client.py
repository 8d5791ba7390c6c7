"""Load generator for ``benchmarks/fanout.py``: receivers (and maybe the publisher) of one process.

The runner starts one or more of these (``--client-procs``) and steers them with JSON lines on
stdin; each answers with JSON lines on stdout (logs go to stderr):

1. It connects its ``--receivers`` (a semaphore keeps at most ``--connect-concurrency``
   handshakes in flight), and the publisher socket if ``--publisher``: ``{"event":
   "connected", "ports": [...]}``, the receivers' local ports.
2. ``{"cmd": "reconnect", "ports": [...]}`` (any number of times): close the receivers on
   those local ports and connect them again; ``{"event": "reconnected", "ports": [...]}``.
   The runner uses it to even out the receivers between the server's workers.
3. ``{"cmd": "watch"}``, then ``{"cmd": "probe"}`` (publisher process only): the publisher
   sends probe messages (negative sequence numbers) every 20 ms (``--probe-interval``) until
   ``go``; every process says ``{"event": "subscribed"}`` once each of its receivers has seen
   a probe, i.e. is really in the room on the server.
   ``{"cmd": "quiet"}`` stops the probes before ``go`` (an idle measurement wants silence).
4. ``{"cmd": "go", "t0": ..., "t1": ...}``: the publisher publishes from now until ``t1``
   (CLOCK_MONOTONIC seconds, shared by every process on the machine), then says
   ``{"event": "published", "s_lo": ..., "s_hi": ...}``: the sequence numbers it sent in
   ``[t0, t1)``. ``--mode rate`` sends ``--rate`` messages/s on a fixed schedule; ``--mode
   saturate`` keeps at most ``--window`` messages in flight, where a message is in flight until
   *every* receiver of the publisher's process has it (a lost message stalls the window for at
   most 1 s, counted as ``window_stalls``). ``--mode idle`` never publishes (memory scenario).
5. ``{"cmd": "finish", "s_lo": ..., "s_hi": ..., "drain": ...}``: wait until every receiver
   has ``s_hi`` (at most ``drain`` seconds), then ``{"event": "result", ...}`` and exit.

Every message is ~100 bytes of JSON, ``{"seq": n, "ts": t, "pad": "..."}``, where ``ts`` is
``time.monotonic()`` at the publisher's send; Socket.IO wraps it as ``42["pub", {...}]`` /
``42["msg", {...}]``. Per receiver the client keeps the last sequence number and the gaps, so
it counts duplicates and reordered messages; per process it counts the deliveries *received*
in ``[t0, t1)`` (throughput) and records the latency of every distinct message *sent* in
``[t0, t1)`` (anything of those not received by the end of the drain is lost). Latencies are
returned as a log histogram (200 bins per decade from 1 µs) plus the exact maximum.

Socket.IO (``--protocol socketio``) is Engine.IO v4 / Socket.IO v5 over a raw WebSocket:
the server opens with ``0{...}``, the client connects the namespace with ``40`` (the publisher
with ``40{"role":"pub"}``), the server answers ``40{...}``, pings ``2`` are answered ``3``.

The client is picows (Cython WebSocket frames, callbacks instead of tasks) on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from array import array
from typing import Any

import msgspec
import numpy as np
from picows import WSCloseCode, WSError, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

#: Latency histogram: ``index = floor(log10(latency / HIST_MIN_S) * HIST_BINS_PER_DECADE)``.
HIST_MIN_S = 1e-6
HIST_BINS_PER_DECADE = 200
HIST_DECADES = 9  # 1 µs .. 1000 s
PROBE_INTERVAL = 0.02
WINDOW_STALL_TIMEOUT = 1.0
PAYLOAD_BYTES = 100

monotonic = time.monotonic
TEXT = WSMsgType.TEXT
CLOSE = WSMsgType.CLOSE


class Msg(msgspec.Struct):
    """The fields of a benchmark message that the receivers read (``pad`` is skipped)."""

    seq: int
    ts: float


class RealtimeMessage(msgspec.Struct):
    """A realtime ``message`` frame (its other fields are skipped)."""

    data: Msg


_decode_plain = msgspec.json.Decoder(Msg).decode
_decode_realtime = msgspec.json.Decoder(RealtimeMessage).decode
REALTIME_MESSAGE = b'{"op":"message"'
REALTIME_JOIN = b'{"op":"join","id":1,"room":"bench"}'
REALTIME_PING = b'{"op":"ping"}'
REALTIME_PONG = b'{"op":"pong"}'
_decode_event = msgspec.json.Decoder(tuple[str, Msg]).decode


def emit(event: str, **fields: Any) -> None:
    """One JSON line for the runner."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def log(text: str) -> None:
    sys.stderr.write(f"fanout_client: {text}\n")
    sys.stderr.flush()


def raise_nofile() -> int:
    """Raise the open-files soft limit to the hard limit (2,000 sockets need more than 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def make_payload(seq: int, ts: float, socketio: bool) -> bytes:
    """A ~100-byte JSON message (with the Socket.IO event framing when ``socketio``)."""
    head = f'{{"seq":{seq},"ts":{ts:.6f},"pad":"'
    body = head + "x" * max(0, PAYLOAD_BYTES - len(head) - 2) + '"}'
    return (f'42["pub",{body}]' if socketio else body).encode()


class Window:
    """The process's measurement window and its counters (shared by all its receivers)."""

    def __init__(self) -> None:
        self.t0 = float("inf")
        self.t1 = float("inf")
        self.received_in_window = 0  # deliveries whose arrival is in [t0, t1)
        self.duplicates = 0
        self.reordered = 0
        self.latencies: array[float] = array("d")  # distinct messages sent in [t0, t1)


class Client:
    """The receivers of this process, their bookkeeping, and the publisher if it lives here."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.socketio = args.protocol == "socketio"
        self.realtime = args.protocol == "realtime"
        self.window = Window()
        self.receivers: list[Receiver] = []
        self.publisher: Publisher | None = None
        self.connect_failures = 0
        self.disconnects = 0
        self.closing = False
        self.unprobed = 0
        self.all_probed: asyncio.Future[None] | None = None
        # Saturation: a message is acknowledged once every tracking receiver (all of this
        # process's receivers) has it; ``acked`` is the highest seq below which all are.
        self.tracking = args.mode == "saturate" and args.publisher
        self.trackers = 0
        self.counts: dict[int, int] = {}
        self.complete: set[int] = set()
        self.acked = 0
        self.sent_seq = 0
        self.ack_waiter: asyncio.Future[None] | None = None
        self.window_stalls = 0
        # A loopback source address of its own gives each process its own ~28,000 ephemeral
        # ports (net.ipv4.ip_local_port_range) towards the server.
        self.local_addr = (args.source_address, 0) if args.source_address else None

    # -- receivers' callbacks ------------------------------------------------------------

    def probed(self) -> None:
        if self.all_probed is None:
            return
        self.unprobed -= 1
        if self.unprobed == 0 and self.all_probed is not None and not self.all_probed.done():
            self.all_probed.set_result(None)

    def track(self, seq: int) -> None:
        count = self.counts.get(seq, 0) + 1
        if count < self.trackers:
            self.counts[seq] = count
            return
        self.counts.pop(seq, None)
        if seq != self.acked + 1:
            self.complete.add(seq)
            return
        self.acked = seq
        complete = self.complete
        while complete and self.acked + 1 in complete:
            complete.discard(self.acked + 1)
            self.acked += 1
        waiter = self.ack_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def receiver_lost(self, receiver: Receiver) -> None:
        if self.closing or receiver.retired:
            return
        self.disconnects += 1
        if not receiver.probed and self.all_probed is not None:
            self.probed()
        if receiver.tracker:
            receiver.tracker = False
            self.trackers -= 1
            # Messages that now have every remaining tracker complete.
            for seq in [seq for seq, count in self.counts.items() if count >= self.trackers]:
                self.counts[seq] = self.trackers - 1
                self.track(seq)

    # -- connecting ----------------------------------------------------------------------

    async def connect_all(self) -> None:
        args = self.args
        semaphore = self.semaphore = asyncio.Semaphore(args.connect_concurrency)
        url = args.base_url + args.recv_path

        async def one(index: int) -> None:
            receiver = Receiver(self, index)
            if await self._connect(url, receiver, semaphore, auth=None):
                self.receivers.append(receiver)
            else:
                self.connect_failures += 1

        await asyncio.gather(*(one(i) for i in range(args.receivers)))
        self.receivers.sort(key=lambda r: r.index)
        if args.publisher:
            publisher = Publisher(self)
            if not await self._connect(args.base_url + args.pub_path, publisher, semaphore, auth='{"role":"pub"}'):
                raise SystemExit("the publisher could not connect")
            self.publisher = publisher

    def ports(self) -> list[int]:
        """The receivers' local ports (how the runner finds which worker holds each)."""
        return [r.port for r in self.receivers]

    async def reconnect(self, ports: set[int]) -> None:
        """Close the receivers on ``ports`` and connect them again (a new accept, maybe elsewhere)."""
        url = self.args.base_url + self.args.recv_path
        for position, old in enumerate(self.receivers):
            if old.port not in ports:
                continue
            old.retired = True
            if old.transport is not None:
                with contextlib.suppress(Exception):
                    old.transport.send_close(WSCloseCode.OK)
                    old.transport.disconnect()
            new = Receiver(self, old.index)
            if not await self._connect(url, new, self.semaphore, auth=None):
                raise SystemExit(f"receiver {old.index} could not reconnect")
            self.receivers[position] = new

    def watch(self) -> asyncio.Future[None]:
        """A future done once every receiver has seen a probe."""
        self.all_probed = asyncio.get_running_loop().create_future()
        self.unprobed = sum(1 for r in self.receivers if not r.probed)
        if self.unprobed == 0:
            self.all_probed.set_result(None)
        return self.all_probed

    def start_tracking(self) -> None:
        """Saturation: every receiver of the publisher's process is a tracking receiver."""
        if self.tracking:
            self.trackers = len(self.receivers)
            for receiver in self.receivers:
                receiver.tracker = True

    async def _connect(self, url: str, listener: Endpoint, semaphore: asyncio.Semaphore, auth: str | None) -> bool:
        listener.auth = auth
        async with semaphore:
            for attempt in range(6):
                try:
                    transport, _ = await ws_connect(
                        lambda: listener,
                        url,
                        websocket_handshake_timeout=30,
                        enable_auto_ping=False,
                        read_buffer_init_size=self.args.read_buffer,
                        local_addr=self.local_addr,
                    )
                    listener.port = transport.underlying_transport.get_extra_info("sockname")[1]
                    if self.socketio:
                        await asyncio.wait_for(listener.namespace_ready, 30)
                    return True
                except (OSError, WSError, TimeoutError) as error:
                    if attempt == 5:
                        log(f"giving up on {url}: {error!r}")
                        return False
                    listener.reset()
                    await asyncio.sleep(0.1 * 2**attempt)
        return False

    # -- publishing ----------------------------------------------------------------------

    async def probe(self) -> None:
        assert self.publisher is not None
        seq = 0
        while True:
            seq -= 1
            self.publisher.send(seq)
            await asyncio.sleep(self.args.probe_interval)

    async def publish(self, t0: float, t1: float) -> tuple[int, int]:
        """Publish until ``t1``; the first and last sequence numbers sent in ``[t0, t1)``."""
        assert self.publisher is not None
        publisher = self.publisher
        args = self.args
        s_lo = 0
        seq = 0
        loop = asyncio.get_running_loop()
        if args.mode == "rate":
            interval = 1.0 / args.rate
            due = monotonic()
            while True:
                now = monotonic()
                if now < due:
                    await asyncio.sleep(due - now)
                    now = monotonic()
                if now >= t1:
                    break
                seq += 1
                publisher.send(seq, now)
                if s_lo == 0 and now >= t0:
                    s_lo = seq
                due += interval
        else:
            window = args.window
            while True:
                while seq - self.acked >= window:
                    waiter = self.ack_waiter = loop.create_future()
                    try:
                        await asyncio.wait_for(waiter, WINDOW_STALL_TIMEOUT)
                    except TimeoutError:
                        # Someone lost a message: give up on the oldest one in flight.
                        self.window_stalls += 1
                        self.counts.pop(self.acked + 1, None)
                        self.acked += 1
                    finally:
                        self.ack_waiter = None
                now = monotonic()
                if now >= t1:
                    break
                seq += 1
                self.sent_seq = seq
                publisher.send(seq, now)
                if s_lo == 0 and now >= t0:
                    s_lo = seq
        return (s_lo, seq) if s_lo else (1, 0)

    # -- the end -------------------------------------------------------------------------

    async def drain(self, s_hi: int, timeout: float) -> tuple[bool, float]:
        """Wait until every live receiver has ``s_hi``; (all did, seconds waited)."""
        start = monotonic()
        deadline = start + timeout
        while True:
            if all(r.last >= s_hi or r.closed for r in self.receivers):
                return True, monotonic() - start
            if monotonic() >= deadline:
                return False, monotonic() - start
            await asyncio.sleep(0.01)

    def result(self, s_lo: int, s_hi: int, drained: bool, drain_s: float) -> dict[str, Any]:
        window = self.window
        per_receiver = max(0, s_hi - s_lo + 1)
        expected = per_receiver * len(self.receivers)
        latencies = np.frombuffer(window.latencies, dtype=np.float64) if len(window.latencies) else np.zeros(0)
        hist: dict[str, int] = {}
        if latencies.size:
            scaled = np.log10(np.maximum(latencies, HIST_MIN_S) / HIST_MIN_S) * HIST_BINS_PER_DECADE
            index = np.clip(np.floor(scaled).astype(np.int64), 0, HIST_BINS_PER_DECADE * HIST_DECADES - 1)
            counts = np.bincount(index)
            hist = {str(i): int(c) for i, c in enumerate(counts) if c}
        return {
            "receivers": self.args.receivers,
            "connected": len(self.receivers),
            "connect_failures": self.connect_failures,
            "disconnects": self.disconnects,
            "received_in_window": window.received_in_window,
            "window_delivered": int(latencies.size),
            "expected": expected,
            "lost": expected - int(latencies.size),
            "duplicates": window.duplicates,
            "reordered": window.reordered,
            "latency_hist": hist,
            "hist_min_s": HIST_MIN_S,
            "hist_bins_per_decade": HIST_BINS_PER_DECADE,
            "latency_max_s": float(latencies.max()) if latencies.size else None,
            "latency_sum_s": float(latencies.sum()),
            "drained": drained,
            "drain_s": drain_s,
            "window_stalls": self.window_stalls,
        }

    def close(self) -> None:
        self.closing = True
        endpoints: list[Endpoint] = [*self.receivers]
        if self.publisher is not None:
            endpoints.append(self.publisher)
        for endpoint in endpoints:
            transport = endpoint.transport
            if transport is not None and not transport.is_disconnected:
                with contextlib.suppress(Exception):
                    transport.send_close(WSCloseCode.OK)
                    transport.disconnect()


class Endpoint(WSListener):  # type: ignore[misc]
    """A picows listener that also speaks the Engine.IO/Socket.IO handshake when asked to."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.socketio = client.socketio
        self.transport: WSTransport | None = None
        self.auth: str | None = None
        self.port = 0
        self.closed = False
        self.retired = False
        self.namespace_ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def reset(self) -> None:
        self.transport = None
        self.closed = False
        if self.namespace_ready.done():
            self.namespace_ready = asyncio.get_running_loop().create_future()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if not self.namespace_ready.done():
            self.namespace_ready.set_exception(ConnectionError("closed during the Socket.IO handshake"))
            self.namespace_ready.exception()  # mark retrieved

    def control(self, transport: WSTransport, frame: WSFrame) -> bool:
        """Handle a frame that is not a benchmark message; True if it was one of those."""
        if frame.msg_type == CLOSE:
            with contextlib.suppress(Exception):
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return True
        if frame.msg_type != TEXT:
            return True
        if not self.socketio:
            return False
        data = frame.get_payload_as_bytes()
        if data.startswith(b"42"):
            return False
        if data == b"2":  # Engine.IO ping
            transport.send(TEXT, b"3")
        elif data.startswith(b"0"):  # Engine.IO open: connect the default namespace
            transport.send(TEXT, b"40" + (self.auth or "").encode())
        elif data.startswith(b"40") and not self.namespace_ready.done():
            self.namespace_ready.set_result(None)
        elif data.startswith(b"44"):
            log(f"Socket.IO connect refused: {data!r}")
        return True


class Receiver(Endpoint):
    """One receiving socket: order, gaps, duplicates, latency."""

    def __init__(self, client: Client, index: int) -> None:
        super().__init__(client)
        self.index = index
        self.window = client.window
        self.last = 0
        self.missing: set[int] = set()
        self.probed = False
        self.tracker = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        if self.client.realtime:
            transport.send(TEXT, REALTIME_JOIN)  # the probe's first message shows it is in

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        super().on_ws_disconnected(transport)
        self.client.receiver_lost(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        now = monotonic()
        if frame.msg_type != TEXT or self.socketio:
            if self.control(transport, frame):
                return
            msg = _decode_event(frame.get_payload_as_memoryview()[2:])[1]
        elif self.client.realtime:
            data = frame.get_payload_as_bytes()
            if not data.startswith(REALTIME_MESSAGE):
                if data == REALTIME_PING:  # the endpoint closes links that stay silent
                    transport.send(TEXT, REALTIME_PONG)
                return
            msg = _decode_realtime(data).data
        else:
            msg = _decode_plain(frame.get_payload_as_memoryview())
        seq = msg.seq
        window = self.window
        if seq < 0:
            if not self.probed:
                self.probed = True
                self.client.probed()
            return
        last = self.last
        if seq == last + 1:
            self.last = seq
        elif seq > last:
            self.missing.update(range(last + 1, seq))
            self.last = seq
        elif seq in self.missing:
            self.missing.discard(seq)
            window.reordered += 1
        else:
            window.duplicates += 1
            return
        if window.t0 <= now < window.t1:
            window.received_in_window += 1
        ts = msg.ts
        if window.t0 <= ts < window.t1:
            window.latencies.append(now - ts)
        if self.tracker:
            self.client.track(seq)


class Publisher(Endpoint):
    """The publishing socket: it only sends (and answers Engine.IO pings)."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.control(transport, frame)

    def send(self, seq: int, ts: float | None = None) -> None:
        assert self.transport is not None
        self.transport.send(TEXT, make_payload(seq, monotonic() if ts is None else ts, self.socketio))


async def read_commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def next_command(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await reader.readline()
    if not line:
        raise SystemExit("the runner closed stdin")
    command: dict[str, Any] = json.loads(line)
    return command


async def run(args: argparse.Namespace) -> None:
    raise_nofile()
    reader = await read_commands()
    client = Client(args)
    started = monotonic()
    await client.connect_all()
    emit(
        "connected",
        receivers=len(client.receivers),
        failures=client.connect_failures,
        seconds=round(monotonic() - started, 3),
        ports=client.ports(),
    )
    probing: asyncio.Task[None] | None = None
    subscribed_task: asyncio.Task[None] | None = None

    async def announce_subscribed(done: asyncio.Future[None]) -> None:
        await done
        emit("subscribed", receivers=len(client.receivers))

    publishing: asyncio.Task[None] | None = None
    try:
        while True:
            command = await next_command(reader)
            name = command["cmd"]
            if name == "reconnect":
                await client.reconnect(set(command["ports"]))
                emit("reconnected", ports=client.ports())
            elif name == "watch":
                subscribed_task = asyncio.create_task(announce_subscribed(client.watch()))
            elif name == "probe":
                probing = asyncio.create_task(client.probe())
            elif name == "quiet":
                if probing is not None:
                    probing.cancel()
            elif name == "go":
                if probing is not None:
                    probing.cancel()
                client.start_tracking()
                client.window.t0 = command["t0"]
                client.window.t1 = command["t1"]
                if client.publisher is not None and args.mode != "idle":

                    async def publish_then_report(t0: float, t1: float) -> None:
                        s_lo, s_hi = await client.publish(t0, t1)
                        emit("published", s_lo=s_lo, s_hi=s_hi, window_stalls=client.window_stalls)

                    publishing = asyncio.create_task(publish_then_report(command["t0"], command["t1"]))
            elif name == "finish":
                if probing is not None:
                    probing.cancel()
                drained, drain_s = await client.drain(command["s_hi"], command["drain"])
                emit("result", **client.result(command["s_lo"], command["s_hi"], drained, drain_s))
                return
            else:
                raise SystemExit(f"unknown command {name!r}")
    finally:
        for task in (probing, subscribed_task, publishing):
            if task is not None:
                task.cancel()
        client.close()
        await asyncio.sleep(0.2)  # let the close frames go out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", required=True, help="ws://host:port")
    parser.add_argument("--recv-path", required=True, help="the receivers' path (with query)")
    parser.add_argument("--pub-path", default="/pub", help="the publisher's path (with query)")
    parser.add_argument("--protocol", choices=["plain", "socketio", "realtime"], default="plain")
    parser.add_argument("--receivers", type=int, required=True)
    parser.add_argument("--publisher", action="store_true", help="this process also hosts the publisher")
    parser.add_argument("--mode", choices=["saturate", "rate", "idle"], required=True)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s (--mode rate)")
    parser.add_argument("--window", type=int, default=32, help="messages in flight (--mode saturate)")
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument("--source-address", help="local address to connect from, e.g. 127.0.0.2")
    parser.add_argument("--probe-interval", type=float, default=PROBE_INTERVAL, help="seconds between probe broadcasts")
    parser.add_argument("--read-buffer", type=int, default=16384, help="picows's initial read buffer per socket")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is pinned in requirements-peers.txt
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
