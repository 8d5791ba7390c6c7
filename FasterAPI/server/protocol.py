"""``FasterWebSocketProtocol``: uvicorn's websockets-sansio protocol with frame-once writes.

The hub hands every local member of a room the same :class:`~FasterAPI.pubsub.delivery.Delivery`;
as the connection's :class:`~FasterAPI.pubsub.delivery.ServerSink`, this protocol writes its
frame (built once per broadcast by :mod:`.frames`) straight to the transport, instead of one ASGI
``send`` (and one frame encoding) per socket. Frames for one connection that arrive in one
event-loop iteration (a burst read from Redis in one wake-up) go out in one ``write``.

It extends private internals of uvicorn and websockets: ``fasterapi run`` and ``FasterWorker``
load it only after :mod:`.compat` found them as expected.

Guarantees kept from the ASGI path:

- A bounded buffer per connection: while the transport is paused (its write buffer is over
  the high-water mark), frames wait in a backlog of at most ``send_queue_size`` broadcasts;
  a full one goes to the hub's one overflow policy: close with 1013 (the transport is
  aborted shortly after) or drop the oldest broadcast. Both are counted.
- Order: the app's own ASGI sends go through the same queue, so frames and sends keep the
  order in which they were made; so do the frames the protocol writes itself (pongs, pings,
  close frames): broadcasts batched before them are written first.
- Write coalescing (opt-in, ``Faster(write_delay=0.005)`` / ``FASTERAPI_WRITE_DELAY``): a
  connection's broadcasts are collected for up to ``write_delay`` seconds and written in one
  call, by one timer per worker for every connection; the batch counts against
  ``send_queue_size`` like the backlog, so the overflow policy still bounds it. Anything
  else written to the connection (an app send, a pong, a close) writes the batch first, so
  it is never held back by the window.
- Nothing is written after a close frame or on a closing transport.
- permessage-deflate is negotiated without server context takeover, so one compressed
  frame serves every such member; any other negotiated shape uses the ASGI path.

An idle connection is what a worker holds tens of thousands of, so it is kept small (about
7 KiB of worker RSS with uvloop, against uvicorn's 19): its state lives in slots; the app's
task runs the app's own coroutine, with no wrapper frames (:mod:`.handshake`); a waiting
receive is a small object, not a coroutine frame (:mod:`.waiting`); the handshake's request
and response are dropped once answered; header pairs and addresses that repeat across
connections are shared; and keepalive pings run on one timer per worker (:mod:`.keepalive`).

What a client gets wrong costs that client only, and is counted and logged at INFO without a
traceback, at most a line a second (:mod:`.errors`): a handshake over websockets' header
limits is answered (431, or 414 for the request line) and closed, where uvicorn's protocol
builds that answer and never writes it; a message over ``ws_max_size`` (which ``fasterapi
run`` and ``FasterWorker`` set to ``FASTERAPI_MAX_MESSAGE_SIZE``, measured decompressed and
refused while inflating) closes with 1009; an invalid UTF-8 text message with 1007; a frame
that breaks the protocol with 1002.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import struct
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.utils import ClientDisconnected

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError as error:  # uvicorn < 0.35
    from .compat import versions

    raise ImportError(
        f"FasterWebSocketProtocol extends uvicorn's websockets-sansio protocol, which {versions()} lacks. "
        "Install the uvicorn release pyproject.toml admits, or serve with `fasterapi run` or FasterWorker, "
        "which fall back to uvicorn's own protocol."
    ) from error
from websockets.exceptions import PayloadTooBig, ProtocolError, SecurityError
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import CloseCode
from websockets.http11 import Request
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from ..pubsub.delivery import SINK_EXTENSION, Delivery, Encoder, ServerSink, SinkSettings
from ..status import WS_1001_GOING_AWAY, WS_1013_TRY_AGAIN_LATER
from .errors import client_errors, peer
from .flushing import flusher_for
from .frames import deflated_frame, plain_frame
from .handshake import frameless_app, shared_addresses, websocket_scope
from .keepalive import KeepaliveWheel, wheel_for
from .waiting import MessageQueue, Take, WaitFlag

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent, ASGISendEvent

logger = logging.getLogger("fasterapi.server")
#: The logger uvicorn hands websockets' protocol.
_WEBSOCKETS_LOGGER = logging.getLogger("uvicorn.error")

#: How long a connection closed for overflow may take to answer before it is aborted.
OVERFLOW_ABORT_AFTER = 5.0
#: Window bits of our permessage-deflate (uvicorn's choice too).
DEFLATE_WINDOW_BITS = 12


#: The extension factories are stateless (each negotiation makes a new extension object), so
#: every connection shares one list instead of allocating its own.
_DEFLATE = [
    ServerPerMessageDeflateFactory(
        server_no_context_takeover=True,
        server_max_window_bits=DEFLATE_WINDOW_BITS,
        client_max_window_bits=DEFLATE_WINDOW_BITS,
        compress_settings={"memLevel": 5},
    )
]


def _release_handshake_request(conn: ServerProtocol) -> None:
    """Restart ``conn``'s frame parser without the handshake request it keeps alive.

    websockets' ``ServerProtocol.parse()`` reads the request into a local variable and then
    delegates to ``Protocol.parse()`` for the rest of the connection, so the suspended
    generator holds the request and its headers (~2.5 KB) as long as the socket lives. Just
    after the 101 is written the client cannot have sent a frame yet (RFC 6455, 4.1): the
    parser waits at a frame boundary with nothing buffered, and a fresh ``Protocol.parse()``
    is that same state without the request. (websockets itself swaps ``parser`` for
    ``discard()``.) If the parser is in any other shape, it is left alone.
    """
    outer = conn.parser
    inner = getattr(outer, "gi_yieldfrom", None)
    waiting = getattr(inner, "gi_yieldfrom", None)
    if (
        conn.state is State.OPEN
        and not conn.reader.buffer
        and getattr(inner, "gi_code", None) is Protocol.parse.__code__
        and getattr(waiting, "gi_code", None) is StreamReader.at_eof.__code__
    ):
        parser = Protocol.parse(conn)
        next(parser)  # runs up to the same wait for the first frame
        conn.parser = parser
        outer.close()


def _resume_reading_when_drained(protocol: FasterWebSocketProtocol) -> None:
    """After the app took a message: read again once it has taken every one (as uvicorn)."""
    if protocol.read_paused and protocol.queue.empty():
        protocol.read_paused = False
        protocol.transport.resume_reading()


class FasterWebSocketProtocol(WebSocketsSansIOProtocol, ServerSink):
    """uvicorn's sansio WebSocket protocol, and the hub's sink for its connection."""

    # Every attribute in a slot: uvicorn's protocol sets over 40 per connection, more than
    # CPython's shared instance-dict keys hold, so each socket would carry its own ~1.6 KB
    # dict. A subclass's slots take the assignments its base makes too.
    __slots__ = (
        *("config", "app", "loop", "logger", "root_path", "asgi_version", "app_state"),
        *("connections", "tasks", "default_headers", "transport", "server", "client", "scheme"),
        *("queue", "handshake_initiated", "handshake_complete", "close_sent", "disconnected"),
        *("close_timer", "close_timeout", "initial_response", "conn", "read_paused", "writable"),
        *("ping_interval", "ping_timeout", "ping_timer", "pong_timer", "pending_ping_payload"),
        *("ping_sent_at", "last_ping_rtt", "frames", "curr_msg_data_type", "response", "scope"),
        # Ours.
        *("_batch", "_backlog", "_backlog_broadcasts", "_closing", "_settings", "_encoder", "_keepalive_at"),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The app without uvicorn's proxy-headers frame: one coroutine frame less per socket.
        self.app = frameless_app(self.config)
        if self.config.ws_per_message_deflate:
            # Without server context takeover each message is compressed on its own, so a
            # broadcast is compressed once for every member instead of once per socket.
            self.conn = ServerProtocol(
                extensions=_DEFLATE,
                max_size=self.config.ws_max_size,
                logger=_WEBSOCKETS_LOGGER,
            )
        # asyncio's Queue and Event allocate ~3.8 KB of deques per socket up front; these make
        # storage only while it is used (the receive path needs put_nowait/get/empty, the
        # send path set/clear/wait).
        self.queue = MessageQueue()  # type: ignore[assignment]
        self.writable = WaitFlag(True)  # type: ignore[assignment]
        #: Frames to write at the end of this loop iteration: the first one alone, a list
        #: from the second on. A list per member per broadcast would be thousands of
        #: GC-tracked objects alive mid-fan-out; the collector promotes them, and their
        #: promotions trigger full collections (tens of ms with thousands of sockets).
        self._batch: bytes | list[bytes] | None = None
        #: While the transport is paused: (frame, is a hub broadcast) in write order.
        self._backlog: collections.deque[tuple[bytes, bool]] | None = None
        self._backlog_broadcasts = 0
        self._closing = False
        self._settings: SinkSettings | None = None
        #: How this connection's broadcasts are framed (shared by every connection of that shape).
        self._encoder: Encoder = plain_frame
        #: The keepalive wheel's bucket this connection is in (None: not in one).
        self._keepalive_at: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server, self.client = shared_addresses(self.server, self.client)

    # -- what a client gets wrong ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            self._refuse_handshake()

    def _refuse_handshake(self) -> None:
        """Write the answer websockets made for a bad handshake request, and close."""
        error = self.conn.handshake_exc
        if type(error).__name__ == "RequestLineTooLong":
            reason = "request_line_too_long"
        elif isinstance(error, SecurityError):
            reason = "headers_too_large"
        else:
            reason = "invalid_handshake"
        client_errors.report(reason, "Refused a WebSocket handshake from %s: %s", peer(self.client), error)
        self.handshake_initiated = self.handshake_complete = self.close_sent = True
        if not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            frames = self.frames
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            if not data.isascii():  # ASCII is valid UTF-8, and checked without a copy
                try:
                    data.decode()
                except UnicodeDecodeError as error:
                    # uvicorn logs each one as an ERROR with a traceback.
                    self.frames = []
                    self.conn.send_close(CloseCode.INVALID_DATA, f"invalid UTF-8 at byte {error.start}")
                    self.handle_parser_exception()
                    return
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:
        close = self.conn.close_sent
        error = self.conn.parser_exc
        if isinstance(error, PayloadTooBig):
            reason = "message_too_big"
        elif isinstance(error, ProtocolError):
            reason = "bad_frame"
        elif isinstance(error, UnicodeDecodeError) or (close is not None and close.code == CloseCode.INVALID_DATA):
            reason = "invalid_utf8"
        else:
            reason = ""  # not the client's doing (websockets logged it)
        self._flush()  # what the hub handed over before the fault goes out before the close
        if reason and close is not None:
            client_errors.report(
                reason, "Closed the WebSocket from %s with %d: %s", peer(self.client), close.code, close.reason or error
            )
        if error is not None:
            # Its traceback holds the parser's frames, and with them what it was decoding (up
            # to ws_max_size inflated): in a reference cycle through this connection, which
            # only a full collection would free. A bomb a second would pile them up.
            error.__traceback__ = None
        super().handle_parser_exception()

    # -- registration with the hub -------------------------------------------------------

    def handle_connect(self, event: Request) -> None:
        """Answer a refused handshake, or start the app on the handshake's scope.

        As uvicorn's, except that the request is not kept (its parsed headers, ~2.5 KB, are
        never read again: the scope holds the headers the app sees), the scope shares what
        repeats across connections (:mod:`.handshake`), and the app's task runs the app's
        coroutine itself instead of a wrapper coroutine whose frame would stay suspended
        above it for the socket's whole life.
        """
        self.handshake_initiated = True
        response = self.conn.accept(event)
        if response.status_code != 101:
            self.handshake_complete = self.close_sent = True
            self.conn.send_response(response)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
            return
        self.response = response
        scope = websocket_scope(
            event,
            asgi_version=self.asgi_version,
            scheme=self.scheme,
            server=self.server,
            client=self.client,
            root_path=self.root_path,
            app_state=self.app_state,
        )
        scope["extensions"][SINK_EXTENSION] = self
        self.scope = scope  # type: ignore[assignment]
        self.queue.put_nowait({"type": "websocket.connect"})
        task = asyncio.ensure_future(self.app(scope, self.receive, self.send), loop=self.loop)
        task.add_done_callback(self._app_finished)
        self.tasks.add(task)

    def _app_finished(self, task: asyncio.Task[None]) -> None:
        """What uvicorn's ``run_asgi`` does once the app returns or raises."""
        self.tasks.discard(task)
        if task.cancelled():
            pass  # the server's shutdown gave up waiting; uvicorn logs it as an error too
        elif (error := task.exception()) is not None:
            if not isinstance(error, ClientDisconnected):
                self.logger.error("Exception in ASGI application\n", exc_info=error)
                self.send_500_response()
        elif not self.handshake_complete:
            self.logger.error("ASGI callable returned without completing handshake.")
            self.send_500_response()
        elif task.result() is not None:
            self.logger.error("ASGI callable should return None, but returned '%s'.", task.result())
        if self.close_timer is None:
            self.transport.close()

    def attach(self, settings: SinkSettings) -> bool:
        """Serve as the hub's sink for this connection; False leaves it to the ASGI path."""
        if not self.handshake_complete or self.close_sent:
            return False
        for extension in self.conn.extensions:
            if not isinstance(extension, PerMessageDeflate) or not extension.local_no_context_takeover:
                return False  # a shape one shared frame cannot serve
            self._encoder = deflated_frame(extension.local_max_window_bits or 15)
        self._settings = settings
        return True

    # -- the hub's side ------------------------------------------------------------------

    def deliver(self, delivery: Delivery) -> None:
        """Write (or queue) one broadcast; never blocks, never raises."""
        if self._closing or self.close_sent:
            return
        data = delivery.encoded(self._encoder)
        settings = self._settings
        assert settings is not None
        backlog = self._backlog
        if backlog is not None:
            if self._backlog_broadcasts >= settings.limit and not settings.overflow(self):
                return
            backlog.append((data, True))
            self._backlog_broadcasts += 1
        else:
            batch = self._batch
            if batch is None:
                self._batch = data
                flusher_for(self.loop, settings.write_delay).add(self)
            else:
                if settings.write_delay and self.pending >= settings.limit and not settings.overflow(self):
                    return  # coalescing holds frames longer: the bound counts them too
                batch = self._batch  # drop_oldest may have taken one
                if batch is None:
                    self._batch = data
                elif isinstance(batch, bytes):
                    self._batch = [batch, data]
                else:
                    batch.append(data)
        settings.stats.delivered += 1

    def close(self) -> None:
        """The hub forgets this connection: it takes nothing more.

        Broadcasts it already took (counted as delivered) are written now, ahead of the close
        frame the app or the server sends next, as the ones held while paused are.
        """
        self._flush()
        self._closing = True

    @property
    def closed(self) -> bool:
        return self._closing or self.close_sent

    @property
    def pending(self) -> int:
        """Broadcasts batched for this iteration's write or held while the transport is paused."""
        return self._batched() + self._backlog_broadcasts

    @property
    def label(self) -> str:
        return f"WebSocket client {peer(self.client)}"

    def _batched(self) -> int:
        batch = self._batch
        return 0 if batch is None else 1 if isinstance(batch, bytes) else len(batch)

    def drop_oldest(self) -> None:
        """Drop the oldest broadcast held (while paused, or batched); the app's own sends stay."""
        backlog = self._backlog
        if backlog is not None:
            for index, (_, is_broadcast) in enumerate(backlog):
                if is_broadcast:
                    del backlog[index]
                    self._backlog_broadcasts -= 1
                    return
        batch = self._batch
        if isinstance(batch, list) and len(batch) > 1:
            del batch[0]
        else:
            self._batch = None  # its flusher finds nothing to write

    def close_for_overflow(self) -> None:
        self._batch = None
        self._backlog = None
        self._backlog_broadcasts = 0
        self._send_close(WS_1013_TRY_AGAIN_LATER, "send queue overflow", abort_after=OVERFLOW_ABORT_AFTER)

    def _send_close(self, code: int, reason: str, *, abort_after: float) -> None:
        """Write a close frame past any backlog, tell the app, and end the transport soon."""
        self._closing = True
        if self.close_sent or self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        # A peer that does not read will never answer: abort instead of waiting to drain.
        self.close_timer = self.loop.call_later(abort_after, self.transport.abort)
        self.writable.set()  # wake an app send waiting on a buffer that will never drain

    def _flush(self) -> None:
        batch = self._batch
        if batch is None:
            return
        self._batch = None
        if self.close_sent or self.transport.is_closing():
            return
        if self._backlog is not None:
            self._batch = batch
            self._batch_to_backlog()
            return
        self.transport.write(batch if isinstance(batch, bytes) else b"".join(batch))

    # -- frames of our own: batched broadcasts go first -----------------------------------

    def handle_ping(self) -> None:
        self._flush()
        super().handle_ping()

    def keepalive_timeout(self) -> None:
        self._flush()
        super().keepalive_timeout()

    # -- keepalive: every connection of the loop on one timer (.keepalive) ---------------

    def _wheel(self) -> KeepaliveWheel:
        return wheel_for(self.loop, self.ping_interval, self.ping_timeout)

    def start_keepalive(self) -> None:
        if self.ping_interval:
            self._wheel().schedule(self, self.ping_interval)

    def stop_keepalive(self) -> None:
        if self._keepalive_at is not None:
            self._wheel().discard(self)
        super().stop_keepalive()

    def keepalive_due(self) -> None:
        """The wheel's call: the pong is overdue, or the next ping is."""
        if self.pending_ping_payload is not None and self.ping_timeout is not None:
            self.keepalive_timeout()
        else:
            self.send_keepalive_ping()

    def send_keepalive_ping(self) -> None:
        """As uvicorn's (a random payload to match the pong by), with deadlines on the wheel."""
        self._flush()
        if self.close_sent or self.transport.is_closing():
            return
        self.pending_ping_payload = payload = struct.pack("!I", random.getrandbits(32))
        self.ping_sent_at = self.loop.time()
        self.conn.send_ping(payload)
        self.transport.write(b"".join(self.conn.data_to_send()))
        # With a timeout the pong schedules the next ping; without one, the next is due now.
        self._wheel().schedule(self, self.ping_timeout if self.ping_timeout is not None else self.ping_interval or 0)

    def handle_pong(self, event: Any) -> None:
        # Unsolicited and stale pongs (not the payload of the ping in flight) are ignored.
        if self.pending_ping_payload is None or bytes(event.data) != self.pending_ping_payload:
            return
        self.last_ping_rtt = self.loop.time() - self.ping_sent_at
        self.pending_ping_payload = None
        if self.ping_timeout is not None and self.ping_interval:
            self._wheel().schedule(self, max(0.0, self.ping_interval - self.last_ping_rtt))

    def handle_close(self, event: Any) -> None:
        self._flush()
        super().handle_close(event)

    # -- flow control --------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._backlog is None:
            self._backlog = collections.deque()
            self._backlog_broadcasts = 0
            # Broadcasts batched before the pause go ahead of everything queued after it.
            self._batch_to_backlog()

    def _batch_to_backlog(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None and self._backlog is not None:
            frames = [batch] if isinstance(batch, bytes) else batch
            self._backlog.extend((data, True) for data in frames)
            self._backlog_broadcasts += len(frames)

    def resume_writing(self) -> None:
        super().resume_writing()
        backlog, self._backlog = self._backlog, None
        self._backlog_broadcasts = 0
        if backlog and not (self.close_sent or self.transport.is_closing()):
            # May pause again at once; frames after this go to a fresh backlog, in order.
            self.transport.write(b"".join(data for data, _ in backlog))

    # -- the app's side ------------------------------------------------------------------

    def receive(self) -> Take[ASGIReceiveEvent]:
        """The app's next event, as uvicorn's, with no coroutine frame while it waits."""
        queue = cast("MessageQueue[ASGIReceiveEvent]", self.queue)
        return queue.get(_resume_reading_when_drained, self)

    async def send(self, message: ASGISendEvent) -> None:
        kind = message["type"]
        if kind == "websocket.close":
            # Broadcasts after the app's close must not be written, even while it waits.
            self._closing = True
        if self._backlog is not None and kind == "websocket.send" and self.handshake_complete:
            if self.disconnected:
                raise ClientDisconnected()
            if not self.close_sent:
                # Paused behind queued broadcasts: queue this frame after them, then give the
                # app the same backpressure an ordinary send would.
                data: bytes | None = message.get("bytes")  # type: ignore[assignment]
                if data is not None:
                    self.conn.send_binary(data)
                else:
                    text: str = message.get("text") or ""  # type: ignore[assignment]
                    self.conn.send_text(text.encode())
                self._backlog.append((b"".join(self.conn.data_to_send()), False))
                await self.writable.wait()
                if self.disconnected:
                    raise ClientDisconnected()
                return
        # Broadcasts batched before this send go first.
        self._flush()
        if self._closing and self.close_sent and kind == "websocket.send":
            raise ClientDisconnected()  # we closed it (overflow or shutdown) under the app
        await super().send(message)
        if kind == "websocket.accept":
            # The 101 response has been written; uvicorn would keep it (and its headers).
            self.response = None  # type: ignore[assignment]
            _release_handshake_request(self.conn)

    # -- shutdown ------------------------------------------------------------------------

    def go_away(self) -> None:
        """Close with 1001 (going away) as the server shuts down; clients reconnect elsewhere.

        What was already queued for the client is written before the close frame.
        """
        if self.handshake_complete and not self.close_sent and not self.transport.is_closing():
            self._flush()
            backlog, self._backlog = self._backlog, None
            if backlog:
                self.transport.write(b"".join(data for data, _ in backlog))
            self._send_close(WS_1001_GOING_AWAY, "server shutting down", abort_after=self.close_timeout)

    def shutdown(self) -> None:
        self._flush()
        if self.handshake_complete and not self.close_sent and not self.transport.is_closing():
            # uvicorn says 1012 (service restart); a scaled-out client should go elsewhere.
            self.stop_keepalive()
            self.queue.put_nowait({"type": "websocket.disconnect", "code": WS_1001_GOING_AWAY})
            self.conn.send_close(WS_1001_GOING_AWAY, "server shutting down")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.transport.close()
            return
        super().shutdown()
