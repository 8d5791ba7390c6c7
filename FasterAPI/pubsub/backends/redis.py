"""A Redis backend: workers (and hosts) share rooms through Redis pub/sub and sorted sets.

This module and ``redis_presence`` are the only ones of the package that import ``redis``;
they need ``redis>=5`` (the ``redis`` extra), and ``hiredis`` makes parsing faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Self

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..history import HistoryRange, Position, Retention
from ._confirmations import Confirmations
from ._reconnect import Backoff, Supervisor
from ._redis_reader import read_subscriber, send_on
from ._url import redact_url, require_positive, split_options
from .base import Backend, BackendListener, BackendUnavailable, describe_error
from .redis_history import RedisHistory
from .redis_presence import RedisPresence

__all__ = ["RedisBackend"]

log = logging.getLogger("fasterapi.backends.redis")

# Connections at most in one worker's command pool (``?max_connections=`` in the URL changes it).
_PUBLISH_POOL_SIZE = 50

#: Backend options that may also be given in the URL query (``redis://h/0?prefix=app1:``).
URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "prefix": str,
    **dict.fromkeys(
        ("health_check_interval", "socket_timeout", "connect_timeout", "backoff_base", "backoff_cap", "startup_wait"),
        float,
    ),
}

#: What the subscriber session is: the connection, and messages that came before its PONG.
_Session = tuple[PubSub, list[dict[str, Any]]]


class RedisBackend(Backend):
    """Pub/sub, presence and room history over one Redis server (or anything that speaks its protocol).

    Connections: per backend instance (so per worker process) exactly one subscriber
    connection, named ``f"{prefix}sub"``, however many channels are subscribed, and one
    connection pool, named ``f"{prefix}pub"``, shared by ``publish`` and the presence
    commands (at most 50 connections, ``?max_connections=N`` in the URL to change; a burst
    beyond that waits up to ``socket_timeout`` for a free one). Channels and keys are
    namespaced with ``prefix`` so several apps can share one Redis.

    Delivery: one listener task reads the subscriber connection; after each wake-up it drains
    every message already received before waiting again, and hands each to
    ``listener.on_message`` with the prefix stripped. An exception from the listener is logged
    and counted in :attr:`callback_errors`, and delivery goes on.

    Reconnects (run by a :class:`~._reconnect.Supervisor`): when the subscriber connection
    fails (Redis restarted, ``CLIENT KILL``, output buffer limit, network error) the backend
    becomes unavailable, calls ``listener.on_connection_lost`` once, and retries with
    :class:`~._reconnect.Backoff` (exponential with full jitter from ``backoff_base`` up to
    ``backoff_cap``, reset after each success). Once connected again it subscribes every
    wanted channel in one ``SUBSCRIBE``, waits for Redis to confirm it, becomes available and
    calls ``listener.on_connection_restored``. :meth:`start` waits up to ``startup_wait`` for
    the first connection.

    Half-open connections: when nothing has arrived for ``health_check_interval`` seconds the
    listener sends a ``PING`` on the subscriber connection; when nothing at all (the pong or a
    message) arrives within ``health_check_interval`` more seconds the connection is taken for
    dead and replaced. A silently broken TCP path is so detected within
    ``2 * health_check_interval`` (10 s by default). Commands on the pool time out after
    ``socket_timeout`` and connection attempts after ``connect_timeout``.

    Presence (:attr:`presence`, a :class:`~.redis_presence.RedisPresence`) and room history
    (:class:`~.redis_history.RedisHistory`) use the same pool.

    ``pool_options`` are extra keyword arguments for redis-py's ``ConnectionPool.from_url``
    (both pools, and so for each connection); tests use them to plug in fakeredis
    (``{"connection_class": FakeAsyncRedisConnection, "server": FakeServer()}``).
    """

    keeps_history = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "fasterapi:",
        health_check_interval: float = 5.0,
        socket_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        startup_wait: float = 5.0,
        pool_options: Mapping[str, Any] | None = None,
    ) -> None:
        require_positive(
            health_check_interval=health_check_interval, socket_timeout=socket_timeout, connect_timeout=connect_timeout
        )
        self.url = url
        self.prefix = prefix
        self.health_check_interval = health_check_interval
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.startup_wait = startup_wait
        #: How many times ``listener.on_message`` raised.
        self.callback_errors = 0
        #: The reconnect delay policy (reset after every successful connection).
        self.backoff = Backoff(backoff_base, backoff_cap)
        #: Presence in sorted sets, on the command pool, failing fast exactly when publish does.
        self.presence: RedisPresence = RedisPresence(prefix, self._guard)
        self._history = RedisHistory(prefix, self._guard)
        self._supervisor: Supervisor[_Session] = Supervisor(
            self,
            name="Redis",
            target=redact_url(url),
            detail=f"prefix {prefix!r}",
            connect=self._connect,
            listen=self._listen,
            abandon=self._abandon,
            backoff=self.backoff,
            startup_wait=startup_wait,
            stop_timeout=max(1.0, connect_timeout),
        )
        self._pool_options = dict(pool_options or {})
        self._prefix_bytes = prefix.encode()
        self._wanted: set[str] = set()
        self._listener: BackendListener | None = None
        self._sub_pool: ConnectionPool | None = None
        self._pub_pool: ConnectionPool | None = None
        self._client: Redis | None = None
        # The subscriber being set up or in use (owned by the listener task), and the one that
        # subscribe()/unsubscribe() may write to: set from the moment it is connected until the
        # moment it fails, so a SUBSCRIBE is either sent on it or left to the next reconnect.
        self._owned_pubsub: PubSub | None = None
        self._pubsub: PubSub | None = None
        # Subscribers waiting for Redis to confirm a SUBSCRIBE, by prefixed channel.
        self._confirmations = Confirmations("SUBSCRIBE", socket_timeout)

    @property
    def connection_losses(self) -> int:
        """How many times the subscriber connection was lost (a failed first start included)."""
        return self._supervisor.connection_losses

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from a ``redis://`` or ``rediss://`` URL (``unix://`` works too).

        Backend options may sit in the query (``?prefix=app1:&health_check_interval=2``);
        keyword ``options`` win over them. Everything else in the URL (password, TLS, db,
        redis-py query options) goes to redis-py untouched.
        """
        clean, from_query = split_options(url, URL_OPTIONS)
        return cls(clean, **{**from_query, **options})

    @property
    def subscribed_channels(self) -> set[str]:
        """The logical channels wanted (a copy); resubscribed by every reconnect."""
        return set(self._wanted)

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _make_pool(self, role: str) -> ConnectionPool:
        options: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "socket_keepalive": True,
        }
        if role == "sub":
            # No retry and no error hooks: redis-py would otherwise reconnect the subscriber on
            # its own (and resubscribe behind our back); we want every failure to reach the
            # listener loop, which owns reconnecting.
            options["retry"] = Retry(NoBackoff(), 0, supported_errors=())
        else:
            # Zero retries (a publish may have reached Redis already), but the error hook still
            # disconnects a failed connection: one with a half-read reply never goes back.
            options["retry"] = Retry(NoBackoff(), 0)
        options.update(self._pool_options)
        pool = self._new_pool(role, options)
        # Not overridable from the URL: the backend depends on these.
        pool.connection_kwargs["client_name"] = f"{self.prefix}{role}"
        pool.connection_kwargs["decode_responses"] = False
        if role == "sub":
            # The listener sends its own PINGs; redis-py's health check would swallow the pongs.
            pool.connection_kwargs["health_check_interval"] = 0
        return pool

    def _new_pool(self, role: str, options: dict[str, Any]) -> ConnectionPool:
        """The pool for ``role`` ("sub" or "pub"): where the server is found (Sentinel overrides)."""
        if role == "sub":
            return ConnectionPool.from_url(self.url, **options)
        # Bounded, and a burst of publishes waits (up to socket_timeout) for a free connection
        # instead of failing: redis-py's plain pool raises at its limit.
        options.setdefault("max_connections", _PUBLISH_POOL_SIZE)
        options.setdefault("timeout", self.socket_timeout)
        return BlockingConnectionPool.from_url(self.url, **options)

    # Lifecycle

    async def start(self, listener: BackendListener) -> None:
        """Connect and start the listener task; returns once connected or after ``startup_wait``.

        If Redis is not reachable in time, returns anyway with ``available`` False (after
        ``listener.on_connection_lost``); the task keeps retrying and calls
        ``listener.on_connection_restored`` when it gets through.
        """
        if self._supervisor.running:
            raise RuntimeError("RedisBackend is already started")
        self._listener = listener
        self._sub_pool = self._make_pool("sub")
        self._pub_pool = self._make_pool("pub")
        self._client = Redis(connection_pool=self._pub_pool)
        await self._supervisor.start(listener)

    async def stop(self) -> None:
        """Stop the listener and close every connection. Idempotent; each wait is bounded."""
        await self._supervisor.stop()
        await self._abandon()  # the subscriber connection, if the task did not get to close it
        client, self._client = self._client, None
        sub_pool, self._sub_pool = self._sub_pool, None
        self._pub_pool = None
        closers = []
        if client is not None:
            closers.append(client.aclose(close_connection_pool=True))
        if sub_pool is not None:
            closers.append(sub_pool.aclose())
        for closer in closers:
            try:
                async with asyncio.timeout(self._supervisor.stop_timeout):
                    await closer
            except Exception as err:
                log.debug("error closing a Redis pool: %s", describe_error(err))
        self._listener = None

    # The subscriber session, run by the supervisor

    async def _connect(self) -> _Session:
        """Open the subscriber connection, subscribe every wanted channel and see a PONG.

        Returns the pubsub and the messages that arrived before the PONG (to be delivered
        once the listener has heard the connection is back). On failure the supervisor calls
        :meth:`_abandon`, which closes the half-built connection.
        """
        assert self._sub_pool is not None
        pubsub = PubSub(self._sub_pool)
        self._owned_pubsub = pubsub
        async with asyncio.timeout(self.connect_timeout + self.socket_timeout):
            await pubsub.connect()  # type: ignore[no-untyped-call]  # TCP, TLS, AUTH, SETNAME
            # From here on subscribe() writes to this connection itself; the snapshot below is
            # taken in the same step, so no channel falls between the two.
            self._pubsub = pubsub
            channels = [self._key(channel) for channel in self._wanted]
            if channels:
                await self._send(pubsub, "SUBSCRIBE", *channels)
            # Redis answers in order, so the PONG means every SUBSCRIBE before it is in force.
            await self._send(pubsub, "PING")
            early: list[dict[str, Any]] = []
            while True:
                message = await pubsub.get_message(timeout=self.socket_timeout)
                if message is None:
                    raise RedisTimeoutError("no PONG from Redis on the new subscriber connection")
                if message["type"] == "pong":
                    return pubsub, early
                if message["type"] == "message":
                    early.append(message)
                elif message["type"] == "subscribe":
                    self._confirmations.confirm(message["channel"])

    async def _listen(self, session: _Session) -> BaseException:
        """Deliver until the subscriber connection fails; return why (the supervisor abandons it)."""
        pubsub, early = session
        try:
            for message in early:
                self._dispatch(message)
            # type(self)._dispatch(self, message): the same single call per message as before.
            await read_subscriber(pubsub, self, type(self)._dispatch, interval=self.health_check_interval, peer="Redis")
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:
            return err

    async def _abandon(self) -> None:
        """Drop the subscriber connection, if any: failed, half-built, or at stop. Never raises."""
        self._pubsub = None
        pubsub, self._owned_pubsub = self._owned_pubsub, None
        self._confirmations.release_all()
        if pubsub is not None:
            await self._close_pubsub(pubsub)
        await self._drop_idle_pub_connections()

    async def _send(self, pubsub: PubSub, *args: str) -> None:
        """Write a command on the subscriber connection; its reply comes through the listener."""
        await send_on(pubsub, *args)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] != "message":
            if message["type"] == "subscribe":
                self._confirmations.confirm(message["channel"])
            return  # other confirmations, pongs
        raw_channel: bytes = message["channel"]
        if not raw_channel.startswith(self._prefix_bytes):
            return
        channel = raw_channel[len(self._prefix_bytes) :].decode("utf-8", "surrogateescape")
        listener = self._listener
        # An UNSUBSCRIBE takes a round trip to apply; drop what is still in flight.
        if listener is None or channel not in self._wanted:
            return
        try:
            listener.on_message(channel, message["data"])
        except Exception:
            self.callback_errors += 1
            log.exception("listener.on_message raised for channel %r", channel)

    async def _close_pubsub(self, pubsub: PubSub) -> None:
        """Close the subscriber connection and give it back to its pool, in bounded time."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        except Exception as err:
            log.debug("error closing the subscriber connection: %s", describe_error(err))
            connection = pubsub.connection
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)

    async def _drop_idle_pub_connections(self) -> None:
        # After a restart of Redis the pooled connections are dead sockets: close the idle ones
        # now rather than find out on the next publish (a failing command drops its own).
        pool = self._pub_pool
        if pool is None:
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                await pool.disconnect(inuse_connections=False)
        except Exception as err:
            log.debug("error closing idle Redis connections: %s", describe_error(err))

    # Pub/sub

    async def publish(self, channel: str, data: bytes, retention: Retention | None = None) -> Position | None:
        """Publish ``data`` on ``channel``; raises :class:`BackendUnavailable` when Redis is down.

        With ``retention``, one Lua script stores, stamps and publishes it (``redis_history``).
        """
        if retention is not None:
            return await self._history.publish(self._key(channel), data, retention)
        with self._guard("publish to", channel) as client:
            await client.publish(self._key(channel), data)
        return None

    async def read_history(self, retention: Retention, after: int, limit: int) -> HistoryRange:
        return await self._history.read(retention, after, limit)

    async def history_tops(self, rooms: Sequence[str]) -> dict[str, Position | None]:
        return await self._history.tops(rooms)

    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``. Idempotent; never raises for a connection problem.

        While connected it returns once Redis confirmed the subscription (or after
        ``socket_timeout``), so a message published after it returns is received. While
        disconnected it only records the channel: the reconnect subscribes it.
        """
        raw = self._key(channel).encode()
        if channel in self._wanted:
            if self._confirmations.pending(raw):  # subscribed a moment ago: wait for it too
                await self._confirmations.wait(raw, channel)
            return
        self._wanted.add(channel)
        if self._pubsub is None:
            log.debug("SUBSCRIBE %r recorded; sent when Redis is back", channel)
            return
        await self._confirmations.wait(raw, channel, lambda: self._send_if_connected("SUBSCRIBE", channel))

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; messages for it still in flight are dropped."""
        if channel not in self._wanted:
            return
        self._wanted.discard(channel)
        await self._send_if_connected("UNSUBSCRIBE", channel)

    async def _send_if_connected(self, command: str, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            log.debug("%s %r recorded; sent when Redis is back", command, channel)
            return
        try:
            await self._send(pubsub, command, self._key(channel))
        except Exception as err:
            # A failed write closes the connection, which the listener sees and replaces; the
            # reconnect then subscribes from the wanted set, which is already up to date.
            log.debug("%s %r not sent (%s); the reconnect will apply it", command, channel, describe_error(err))

    @contextlib.contextmanager
    def _guard(self, operation: str, name: str) -> Iterator[Redis]:
        """Yield the command client, turning "Redis is down" into BackendUnavailable.

        Shared with :attr:`presence`, so presence fails fast exactly when publishing does.
        """
        client = self._client
        if not self.available or client is None:
            raise BackendUnavailable(f"Redis is unavailable: cannot {operation} {name!r}")
        try:
            yield client
        except (RedisConnectionError, RedisTimeoutError) as err:
            raise BackendUnavailable(f"Redis failed to {operation} {name!r}: {err}") from err
