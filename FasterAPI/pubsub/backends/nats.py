"""A NATS backend: workers share rooms through NATS core subjects, presence in a JetStream KV bucket.

``nats://[user:password@]host:port[,host:port...][?prefix=...]`` (port 4222 when omitted). This
is the only module besides ``nats_presence`` that imports ``nats`` (the ``nats`` extra).

Each logical channel is one subject, ``prefix`` + the channel with ``.``, ``*``, ``>``, ``%`` and
whitespace escaped (``%2E``...), so a room name can never reach another room's subject or a
wildcard. nats-py's own reconnect gives up after 60 tries by default; it is switched off and
our :class:`~._reconnect.Supervisor` keeps the connection instead, for ever, with full-jitter
backoff: a lost connection ends the session, the next one resubscribes every wanted subject
and waits for the server to confirm (a barrier after the SUBs, see :meth:`_Session.barrier`)
before the listener hears it is back. nats-py pings every ``health_check_interval`` and drops
a link that misses two pongs. Each connection also subscribes its own barrier subject,
``prefix`` + ``barrier.`` + a random id: two tokens, where a room's subject has one.

Room history is not kept on NATS yet (``keeps_history`` is False: ``history=`` needs Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Self
from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError, SlowConsumerError
from nats.errors import Error as NatsError

from ._reconnect import Backoff, Supervisor
from ._url import only_backend_options, redact_url, require_positive
from .base import Backend, BackendListener, BackendUnavailable, describe_error
from .nats_presence import NatsPresence

__all__ = ["NatsBackend", "subject_token"]

log = logging.getLogger("fasterapi.backends.nats")

DEFAULT_PORT = 4222

#: Backend options that may also be given in the URL query (``nats://h?prefix=app1.``).
URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "prefix": str,
    **dict.fromkeys(("health_check_interval", "connect_timeout", "backoff_base", "backoff_cap", "startup_wait"), float),
}

_UNSAFE = frozenset(".*>%")


def subject_token(channel: str) -> str:
    """``channel`` as one subject token: ``.``, ``*``, ``>``, ``%``, whitespace and controls escaped."""
    out: list[str] = []
    for char in channel:
        if char in _UNSAFE or char.isspace() or ord(char) < 33 or ord(char) == 127:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        else:
            out.append(char)
    return "".join(out)


class _Session:
    """One NATS connection, a future that completes when it is lost, and its barriers."""

    def __init__(self) -> None:
        self.client: NatsClient | None = None
        self.ended: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self._barrier_subject = ""
        self._last_token = 0
        #: The barrier on its way to the server and back (its token), and the one that will
        #: follow it, shared by every caller meanwhile: at most one is in flight.
        self._in_flight: tuple[int, asyncio.Future[None]] | None = None
        self._next: asyncio.Future[None] | None = None

    async def open(self, client: NatsClient, barrier_subject: str) -> None:
        """Adopt ``client``: subscribe to ``barrier_subject`` (its own), where barriers come back."""
        self.client = client
        self._barrier_subject = barrier_subject
        await client.subscribe(barrier_subject, cb=self._barrier_returned)

    def end(self, error: BaseException) -> None:
        if not self.ended.done():
            self.ended.set_result(error)
        waiting = [self._next, self._in_flight[1] if self._in_flight else None]
        self._in_flight = self._next = None
        for waiter in waiting:
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionClosedError())

    async def barrier(self, timeout: float) -> None:
        """Return once the server has read every command sent on this connection before the call.

        nats-py's ``flush()`` cannot promise that: it writes its PING straight to the socket
        while SUB and PUB wait in the client's buffer for its flusher task (2.6 to 2.16), so
        the PONG can come back before the server has read them. Under load a worker announced
        its subscriptions restored and missed the next message. A message to this connection's
        own subject waits in that buffer behind them instead, and the server handles one
        connection's commands in order, so its echo proves the rest arrived.

        Callers share barriers (a group commit): with one in flight, later callers wait for the
        next, sent when it returns; so a burst of publishes costs two round trips, not one each.
        Raises TimeoutError after ``timeout``, or nats' ConnectionClosedError if the connection
        ends first.
        """
        if self._in_flight is None:
            waiter = await self._send_barrier(asyncio.get_running_loop().create_future())
        else:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            waiter = self._next
        async with asyncio.timeout(timeout):
            await asyncio.shield(waiter)  # a caller that gives up leaves the barrier to the others

    async def _send_barrier(self, waiter: asyncio.Future[None]) -> asyncio.Future[None]:
        # Retrieved here, so that a barrier every caller gave up on fails without a log line.
        waiter.add_done_callback(lambda done: done.cancelled() or done.exception())
        client = self.client
        if client is None:
            waiter.set_exception(ConnectionClosedError())
            return waiter
        self._last_token += 1
        self._in_flight = (self._last_token, waiter)
        try:
            await client.publish(self._barrier_subject, b"%d" % self._last_token)
        except Exception as err:
            self._in_flight = None
            if not waiter.done():
                waiter.set_exception(err)
        return waiter

    async def _barrier_returned(self, msg: Msg) -> None:
        try:
            token = int(msg.data)
        except ValueError:
            log.warning("ignored a message on this worker's barrier subject that is not a barrier: %r", msg.data[:64])
            return
        if self._in_flight is None or self._in_flight[0] != token:
            return  # from a session's past: a barrier that was failed already
        _, waiter = self._in_flight
        self._in_flight = None
        if not waiter.done():
            waiter.set_result(None)
        following, self._next = self._next, None
        if following is not None:
            await self._send_barrier(following)


class NatsBackend(Backend):
    """Pub/sub over NATS core (see the module docstring); presence in JetStream KV."""

    def __init__(
        self,
        servers: list[str] | str = "nats://127.0.0.1:4222",
        *,
        prefix: str = "fasterapi.",
        health_check_interval: float = 5.0,
        connect_timeout: float = 5.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        startup_wait: float = 5.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        require_positive(health_check_interval=health_check_interval, connect_timeout=connect_timeout)
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        if not self.servers:
            raise ValueError("NatsBackend needs at least one server")
        self.prefix = prefix
        self.health_check_interval = health_check_interval
        self.connect_timeout = connect_timeout
        self.available = False
        #: How many times ``listener.on_message`` raised.
        self.callback_errors = 0
        self.backoff = Backoff(backoff_base, backoff_cap)
        self._connect_options = dict(connect_options or {})
        if self._connect_options.get("no_echo"):
            # Barriers (see _Session.barrier) are this connection's own messages coming back.
            raise ValueError("NatsBackend needs its own messages echoed: connect_options no_echo is not supported")
        self._wanted: dict[str, Subscription | None] = {}
        self._listener: BackendListener | None = None
        self._session: _Session | None = None
        self.presence: NatsPresence = NatsPresence(prefix, self._connected_client)
        self._supervisor: Supervisor[_Session] = Supervisor(
            self,
            name="NATS",
            target=",".join(redact_url(server) for server in self.servers),
            detail=f"prefix {prefix!r}",
            connect=self._connect,
            listen=self._listen,
            abandon=self._abandon,
            backoff=self.backoff,
            startup_wait=startup_wait,
            stop_timeout=max(1.0, connect_timeout),
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``nats://[user:password@]h1:p1,h2:p2[?prefix=...]``."""
        clean, from_query = only_backend_options(url, URL_OPTIONS, backend="NATS")
        parts = urlsplit(clean)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        servers = []
        for address in filter(None, hosts.split(",")):
            host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
            if port and not port.isdigit():
                raise ValueError(f"Bad NATS server address {address!r} in {url!r}")
            auth = f"{userinfo}@" if userinfo else ""
            servers.append(f"nats://{auth}{host}:{port or DEFAULT_PORT}")
        if not servers:
            raise ValueError(f"A NATS URL names at least one server: {url!r}")
        return cls(servers, **{**from_query, **options})

    @property
    def subscribed_channels(self) -> set[str]:
        return set(self._wanted)

    @property
    def connection_losses(self) -> int:
        return self._supervisor.connection_losses

    def subject(self, channel: str) -> str:
        return self.prefix + subject_token(channel)

    def _connected_session(self) -> _Session:
        session = self._session
        if not self.available or session is None or session.client is None or not session.client.is_connected:
            raise BackendUnavailable("NATS is unavailable")
        return session

    def _connected_client(self) -> NatsClient:
        client = self._connected_session().client
        assert client is not None  # checked by _connected_session
        return client

    # Lifecycle

    async def start(self, listener: BackendListener) -> None:
        """Connect and start the supervisor; returns once connected or after ``startup_wait``."""
        if self._supervisor.running:
            raise RuntimeError("NatsBackend is already started")
        self._listener = listener
        await self._supervisor.start(listener)

    async def stop(self) -> None:
        """Stop the supervisor and close the connection. Idempotent; bounded."""
        await self._supervisor.stop()
        await self._abandon()
        self._listener = None

    async def _connect(self) -> _Session:
        session = self._session = _Session()

        async def lost() -> None:
            session.end(ConnectionError("the NATS connection was lost"))

        async def error(err: Exception) -> None:
            # A refused SUB or PUB (the user's permissions) and messages nats-py dropped for a
            # full subscription queue lose messages without ending the connection: say so.
            # The rest (EOF and the like) end the session, which the supervisor reports.
            if isinstance(err, SlowConsumerError) or "permissions violation" in str(err).lower():
                log.warning("NATS: %s", describe_error(err))
            else:
                log.debug("NATS error: %s", describe_error(err))

        client = await nats.connect(
            self.servers,
            allow_reconnect=False,  # the supervisor reconnects, for ever
            connect_timeout=max(1, round(self.connect_timeout)),
            ping_interval=max(1, round(self.health_check_interval)),
            max_outstanding_pings=2,
            disconnected_cb=lost,
            closed_cb=lost,
            error_cb=error,
            name=f"{self.prefix}worker",
            **self._connect_options,
        )
        # Under the prefix, which the worker may already use (a user allowed only the prefix's
        # subjects could not publish to _INBOX); two tokens there, where a room has one.
        await session.open(client, f"{self.prefix}barrier.{uuid.uuid4().hex}")
        for channel in list(self._wanted):
            self._wanted[channel] = await client.subscribe(self.subject(channel), cb=self._handler(channel))
        await session.barrier(self.connect_timeout)  # the server has every SUB
        return session

    async def _listen(self, session: _Session) -> BaseException:
        # The callbacks end the session; polling the client's state as well covers nats-py
        # releases that close a non-reconnecting client without calling them.
        while True:
            done, _ = await asyncio.wait({session.ended}, timeout=min(1.0, self.health_check_interval))
            if done:
                return session.ended.result()
            client = session.client
            if client is None or client.is_closed or not client.is_connected:
                return ConnectionError("the NATS connection was closed")

    async def _abandon(self) -> None:
        session, self._session = self._session, None
        for channel in self._wanted:
            self._wanted[channel] = None
        if session is not None and session.client is not None and not session.client.is_closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.connect_timeout):
                    await session.client.close()

    def _handler(self, channel: str) -> Callable[[Msg], Any]:
        async def on_message(msg: Msg) -> None:
            listener = self._listener
            if listener is None or channel not in self._wanted:
                return  # unsubscribed while in flight
            try:
                listener.on_message(channel, msg.data)
            except Exception:
                self.callback_errors += 1
                log.exception("listener.on_message raised for channel %r", channel)

        return on_message

    # Pub/sub

    async def publish(self, channel: str, data: bytes, retention: Any = None) -> None:
        """Publish ``data`` on ``channel``'s subject and wait for the server to have it.

        Raises BackendUnavailable when NATS is down (or does not answer in ``connect_timeout``).
        """
        if retention is not None:
            raise BackendUnavailable("NATS keeps no room history (history= needs the Redis backend)")
        session = self._connected_session()
        assert session.client is not None  # checked by _connected_session
        try:
            await session.client.publish(self.subject(channel), data)
            # nats-py only buffers a publish; the barrier makes it return once the server has
            # it, as a Redis PUBLISH does, so that publishes from different workers that follow
            # one another (one after the other's return) reach subscribers in order.
            await session.barrier(self.connect_timeout)
        except (TimeoutError, NatsError) as err:
            raise BackendUnavailable(f"NATS failed to publish to {channel!r}: {describe_error(err)}") from err

    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``; returns once the server confirmed it (while connected)."""
        if channel in self._wanted:
            return
        self._wanted[channel] = None
        session = self._session
        if not self.available or session is None or session.client is None:
            return  # the reconnect subscribes it
        try:
            self._wanted[channel] = await session.client.subscribe(self.subject(channel), cb=self._handler(channel))
            await session.barrier(self.connect_timeout)
        except (TimeoutError, NatsError) as err:
            log.debug("SUB %r not confirmed (%s); the reconnect will apply it", channel, describe_error(err))

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; messages for it still in flight are dropped."""
        if channel not in self._wanted:
            return
        subscription = self._wanted.pop(channel)
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
