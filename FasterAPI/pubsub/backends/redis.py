"""A Redis backend: workers (and hosts) share rooms through Redis pub/sub and sorted sets.

This is the only module of the package that imports ``redis``; it needs ``redis>=5`` (the
``redis`` extra), and ``hiredis`` makes parsing faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import Backend, BackendListener, BackendUnavailable, describe_error, wall_clock

__all__ = ["Backoff", "RedisBackend"]

log = logging.getLogger(__name__)

# After this many messages drained in one go the listener yields to the event loop once, so a
# flood on the subscriber connection cannot starve the rest of the worker.
_MAX_BATCH = 1000

# Connections at most in the publish/presence pool of one worker (``?max_connections=`` in
# the URL changes it).
_PUBLISH_POOL_SIZE = 50

# Backend options that may also be given in the URL query (``redis://h/0?prefix=app1:``). They
# are taken out of the URL before redis-py sees it, since redis-py would hand unknown query
# arguments to its connection class.
_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "prefix": str,
    "health_check_interval": float,
    "socket_timeout": float,
    "connect_timeout": float,
    "backoff_base": float,
    "backoff_cap": float,
    "startup_wait": float,
}


class Backoff:
    """Exponential backoff with full jitter.

    The n-th delay (counting from 0 since the last :meth:`reset`) is drawn uniformly from
    ``[0, min(cap, base * 2**n)]``: it spreads a crowd of workers that lost Redis at the same
    moment, so they do not reconnect in lock-step.
    """

    def __init__(self, base: float = 0.1, cap: float = 5.0, rand: Callable[[], float] = random.random):
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self._rand = rand
        #: Delays handed out since the last reset.
        self.attempts = 0

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        # The exponent is clamped so a long outage cannot overflow a float.
        return min(self.cap, self.base * 2.0 ** min(self.attempts, 64))

    def next_delay(self) -> float:
        """The next delay in seconds, and advance."""
        delay = self.ceiling() * self._rand()
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Start again from ``base`` (after a successful connection)."""
        self.attempts = 0


def _redact(url: str) -> str:
    """``url`` without its password, fit for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_cancelled() -> None:
    # A cancel that something below swallowed (see stop()) is still counted by the task.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisBackend(Backend):
    """Pub/sub and presence over one Redis server (or anything that speaks its protocol).

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

    Reconnects: when the subscriber connection fails (Redis restarted, ``CLIENT KILL``, output
    buffer limit, network error) the backend becomes unavailable, calls
    ``listener.on_connection_lost`` once, and retries with :class:`Backoff` (exponential with
    full jitter from ``backoff_base`` up to ``backoff_cap``, reset after each success). Once
    connected again it subscribes every wanted channel in one ``SUBSCRIBE``, waits for Redis to
    confirm it, becomes available and calls ``listener.on_connection_restored``. The two calls
    always alternate, starting with ``on_connection_lost``; if the very first connection at
    :meth:`start` fails, that counts as a loss too.

    Half-open connections: when nothing has arrived for ``health_check_interval`` seconds the
    listener sends a ``PING`` on the subscriber connection; when nothing at all (the pong or a
    message) arrives within ``health_check_interval`` more seconds the connection is taken for
    dead and replaced. A silently broken TCP path is so detected within
    ``2 * health_check_interval`` (10 s by default). Commands on the pool time out after
    ``socket_timeout`` and connection attempts after ``connect_timeout``.

    Presence: one sorted set per room, ``f"{prefix}presence:{room}"``, member = id,
    score = expiry as unix time in milliseconds by the *client's* clock (so the workers'
    clocks should agree, e.g. NTP, to well under the presence TTL). The key's own TTL follows
    the longest-lived entry, so abandoned rooms vanish. Needs Redis >= 7.0 (``PEXPIRE NX|GT``).

    ``pool_options`` are extra keyword arguments for redis-py's ``ConnectionPool.from_url``
    (both pools, and so for each connection); tests use them to plug in fakeredis
    (``{"connection_class": FakeAsyncRedisConnection, "server": FakeServer()}``).
    """

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
        if health_check_interval <= 0 or socket_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("health_check_interval, socket_timeout and connect_timeout must be > 0")
        if startup_wait < 0:
            raise ValueError("startup_wait must be >= 0")
        self.url = url
        self.prefix = prefix
        self.health_check_interval = health_check_interval
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.startup_wait = startup_wait
        self.available = False
        #: How many times ``listener.on_message`` raised.
        self.callback_errors = 0
        #: How many times the subscriber connection was lost (the first failed start included).
        self.connection_losses = 0
        #: The reconnect delay policy (reset after every successful connection).
        self.backoff = Backoff(backoff_base, backoff_cap)
        self._pool_options = dict(pool_options or {})
        self._prefix_bytes = prefix.encode()
        self._wanted: set[str] = set()
        self._listener: BackendListener | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_connected: asyncio.Event | None = None
        self._sub_pool: ConnectionPool | None = None
        self._pub_pool: ConnectionPool | None = None
        self._client: Redis | None = None
        # The subscriber being set up or in use (owned by the listener task), and the one that
        # subscribe()/unsubscribe() may write to: set from the moment it is connected until the
        # moment it fails, so a SUBSCRIBE is either sent on it or left to the next reconnect.
        self._owned_pubsub: PubSub | None = None
        self._pubsub: PubSub | None = None
        # Subscribers waiting for Redis to confirm a SUBSCRIBE, by prefixed channel.
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from a ``redis://`` or ``rediss://`` URL (``unix://`` works too).

        Backend options may sit in the query (``?prefix=app1:&health_check_interval=2``);
        keyword ``options`` win over them. Everything else in the URL (password, TLS, db,
        redis-py query options) goes to redis-py untouched.
        """
        parts = urlsplit(url)
        query: list[tuple[str, str]] = []
        from_query: dict[str, Any] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            parse = _URL_OPTIONS.get(key)
            if parse is None:
                query.append((key, value))
            else:
                from_query[key] = parse(value)
        clean = urlunsplit(parts._replace(query=urlencode(query)))
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
            # Zero retries, but the error hook still disconnects a failed connection, so a
            # connection with a half-read reply never goes back to the pool. A publish is never
            # retried: it may have reached Redis already (pub/sub is at-most-once).
            options["retry"] = Retry(NoBackoff(), 0)
        options.update(self._pool_options)
        pool: ConnectionPool
        if role == "sub":
            pool = ConnectionPool.from_url(self.url, **options)
        else:
            # Bounded, and a burst of publishes waits (up to socket_timeout) for a free
            # connection instead of failing: redis-py's plain pool raises at its limit.
            options.setdefault("max_connections", _PUBLISH_POOL_SIZE)
            options.setdefault("timeout", self.socket_timeout)
            pool = BlockingConnectionPool.from_url(self.url, **options)
        # Not overridable from the URL: the backend depends on these.
        pool.connection_kwargs["client_name"] = f"{self.prefix}{role}"
        pool.connection_kwargs["decode_responses"] = False
        if role == "sub":
            # The listener sends its own PINGs; redis-py's health check would swallow the pongs.
            pool.connection_kwargs["health_check_interval"] = 0
        return pool

    # Lifecycle

    async def start(self, listener: BackendListener) -> None:
        """Connect and start the listener task; returns once connected or after ``startup_wait``.

        If Redis is not reachable in time, returns anyway with ``available`` False (after
        ``listener.on_connection_lost``); the task keeps retrying and calls
        ``listener.on_connection_restored`` when it gets through.
        """
        if self._task is not None:
            raise RuntimeError("RedisBackend is already started")
        self._listener = listener
        self._sub_pool = self._make_pool("sub")
        self._pub_pool = self._make_pool("pub")
        self._client = Redis(connection_pool=self._pub_pool)
        self.backoff.reset()
        self._first_connected = asyncio.Event()
        self._task = asyncio.create_task(self._supervise(), name=f"{self.prefix}redis-listener")
        self._task.add_done_callback(self._task_done)
        try:
            async with asyncio.timeout(self.startup_wait):
                await self._first_connected.wait()
        except TimeoutError:
            log.warning(
                "pid %d: Redis at %s not reachable within %.1fs of start; "
                "starting without it and retrying in the background",
                os.getpid(),
                _redact(self.url),
                self.startup_wait,
            )

    async def stop(self) -> None:
        """Stop the listener and close every connection. Idempotent; each wait is bounded."""
        self.available = False
        self._pubsub = None
        task, self._task = self._task, None
        if self._first_connected is not None:
            self._first_connected.set()  # a start() still waiting returns now
        bound = max(1.0, self.connect_timeout)
        if task is not None:
            # Cancel again until it sticks: an asyncio.wait_for() that completes in the same
            # step as a cancel swallows it on Python 3.11 (fakeredis reads through one).
            deadline = time.monotonic() + bound
            while not task.done() and time.monotonic() < deadline:
                task.cancel()
                await asyncio.wait({task}, timeout=0.05)
        pubsub, self._owned_pubsub = self._owned_pubsub, None
        if pubsub is not None:  # only if the task did not get to close it
            await self._close_pubsub(pubsub)
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
                async with asyncio.timeout(bound):
                    await closer
            except Exception as err:
                log.debug("error closing a Redis pool: %s", describe_error(err))
        self._listener = None

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # The loop in _supervise catches everything but cancellation; this is the last line so
        # that nothing ends the listener silently.
        if task.cancelled():
            return
        err = task.exception()
        if err is not None:
            self.available = False
            log.critical(
                "pid %d: the Redis listener task ended: %s; messages will no longer be received",
                os.getpid(),
                describe_error(err),
                exc_info=err,
            )

    # The listener task

    async def _supervise(self) -> None:
        """Connect, listen, and on any failure reconnect with backoff, forever."""
        told_up = True  # what the listener was last told; "up" by convention before the start
        down_since = time.monotonic()
        retrying = False
        while True:
            _check_cancelled()
            if self._task is not asyncio.current_task():
                return  # stop() gave up waiting for this task and closed the pools under it
            try:
                if retrying:
                    await asyncio.sleep(self.backoff.next_delay())
                retrying = True
                try:
                    pubsub, early = await self._connect()
                except Exception as err:
                    if told_up:
                        told_up = False
                        down_since = time.monotonic()
                        self._report_lost(err)
                    else:
                        log.debug("pid %d: Redis reconnect attempt failed: %s", os.getpid(), describe_error(err))
                    continue
                self.backoff.reset()
                self.available = True
                assert self._first_connected is not None
                if not told_up:
                    told_up = True
                    log.info(
                        "pid %d: Redis pub/sub connection to %s recovered at %s after %.2fs outage; "
                        "%d channel(s) resubscribed",
                        os.getpid(),
                        _redact(self.url),
                        wall_clock(),
                        time.monotonic() - down_since,
                        len(self._wanted),
                    )
                    self._first_connected.set()
                    self._notify_restored()
                else:
                    self._first_connected.set()
                    log.info(
                        "pid %d: connected to Redis at %s (prefix %r)", os.getpid(), _redact(self.url), self.prefix
                    )
                error = await self._listen(pubsub, early)
                told_up = False
                down_since = time.monotonic()
                self._report_lost(error)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug, not a network failure: log it, drop whatever connection there is and
                # go round again, so the worker keeps receiving once the cause goes away.
                log.exception("pid %d: unexpected error in the Redis listener; reconnecting", os.getpid())
                self.available = False
                self._pubsub = None
                stale, self._owned_pubsub = self._owned_pubsub, None
                if stale is not None:
                    await self._close_pubsub(stale)
                if told_up:
                    told_up = False
                    down_since = time.monotonic()
                    self._report_lost(None)

    async def _connect(self) -> tuple[PubSub, list[dict[str, Any]]]:
        """Open the subscriber connection, subscribe every wanted channel and see a PONG.

        Returns the pubsub and the messages that arrived before the PONG (to be delivered
        once the listener has heard the connection is back).
        """
        assert self._sub_pool is not None
        pubsub = PubSub(self._sub_pool)
        self._owned_pubsub = pubsub
        try:
            async with asyncio.timeout(self.connect_timeout + self.socket_timeout):
                await pubsub.connect()  # type: ignore[no-untyped-call]  # TCP, TLS, AUTH, SETNAME
                # From here on subscribe() writes to this connection itself; the snapshot
                # below is taken in the same step, so no channel falls between the two.
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
                        self._confirm(message["channel"])
        except BaseException:
            self._pubsub = None
            self._owned_pubsub = None
            self._release_waiters()
            await self._close_pubsub(pubsub)
            raise

    async def _listen(self, pubsub: PubSub, early: list[dict[str, Any]]) -> BaseException:
        """Read the subscriber connection until it fails; return why (the pubsub is closed)."""
        loop = asyncio.get_running_loop()
        interval = self.health_check_interval
        try:
            for message in early:
                self._dispatch(message)
            last_seen = loop.time()
            ping_sent: float | None = None
            while True:
                _check_cancelled()
                now = loop.time()
                if ping_sent is None and now - last_seen >= interval:
                    await self._send(pubsub, "PING")
                    ping_sent = now
                if ping_sent is not None:
                    if now - ping_sent >= interval:
                        raise RedisTimeoutError(
                            f"nothing received from Redis within {interval}s of a PING (half-open connection?)"
                        )
                    deadline = ping_sent + interval
                else:
                    deadline = last_seen + interval
                self._check_connected(pubsub)
                message = await pubsub.get_message(timeout=max(deadline - now, 0.0))
                if message is None:
                    continue
                last_seen = loop.time()
                ping_sent = None
                self._dispatch(message)
                # Drain what has already arrived before waiting again: one wake-up per burst.
                drained = 0
                while True:
                    _check_cancelled()
                    self._check_connected(pubsub)
                    message = await pubsub.get_message(timeout=0)
                    if message is None:
                        break
                    self._dispatch(message)
                    drained += 1
                    if drained >= _MAX_BATCH:
                        drained = 0
                        await asyncio.sleep(0)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:
            return err
        finally:
            # Flip the state before any await, so publish() and subscribe() see it at once.
            self.available = False
            self._pubsub = None
            self._owned_pubsub = None
            self._release_waiters()
            await self._close_pubsub(pubsub)
            await self._drop_idle_pub_connections()

    @staticmethod
    def _check_connected(pubsub: PubSub) -> None:
        # redis-py's PubSub silently reconnects a closed connection on the next read (without
        # our subscriptions, which only this loop restores); treat a closed one as failed.
        connection = pubsub.connection
        if connection is None or not connection.is_connected:
            raise RedisConnectionError("the subscriber connection was closed")

    async def _send(self, pubsub: PubSub, *args: str) -> None:
        """Write a command on the subscriber connection without reading the reply.

        The reply comes back through the listener. PubSub's own methods are not used here
        because they reconnect a closed connection on their own.
        """
        self._check_connected(pubsub)
        assert pubsub.connection is not None
        await pubsub.connection.send_command(*args, check_health=False)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] != "message":
            if message["type"] == "subscribe":
                self._confirm(message["channel"])
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

    def _report_lost(self, error: BaseException | None) -> None:
        self.available = False
        self.connection_losses += 1
        log.warning(
            "pid %d: Redis pub/sub connection to %s lost at %s: %s; reconnecting (backoff %.2fs..%.2fs)",
            os.getpid(),
            _redact(self.url),
            wall_clock(),
            describe_error(error),
            self.backoff.base,
            self.backoff.cap,
        )
        self._notify_lost(error)

    def _notify_lost(self, error: BaseException | None) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener.on_connection_lost(error)
        except Exception:
            log.exception("listener.on_connection_lost raised")

    def _notify_restored(self) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener.on_connection_restored()
        except Exception:
            log.exception("listener.on_connection_restored raised")

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
        # After a restart of Redis the pooled connections are dead sockets; close them now
        # rather than find out on the next publish. Connections in use are left to their
        # command, which disconnects them if it fails.
        pool = self._pub_pool
        if pool is None:
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                await pool.disconnect(inuse_connections=False)
        except Exception as err:
            log.debug("error closing idle Redis connections: %s", describe_error(err))

    # Pub/sub

    async def publish(self, channel: str, data: bytes) -> None:
        """Publish ``data`` on ``channel``; raises :class:`BackendUnavailable` when Redis is down."""
        with self._guard("publish to", channel) as client:
            await client.publish(self._key(channel), data)

    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``. Idempotent; never raises for a connection problem.

        While connected it returns once Redis confirmed the subscription (or after
        ``socket_timeout``), so a message published after it returns is received. While
        disconnected it only records the channel: the reconnect subscribes it.
        """
        raw = self._key(channel).encode()
        if channel in self._wanted:
            if raw in self._waiters:  # subscribed a moment ago and not confirmed yet: wait too
                await self._wait_confirmed(raw, channel)
            return
        self._wanted.add(channel)
        if self._pubsub is None:
            log.debug("SUBSCRIBE %r recorded; sent when Redis is back", channel)
            return
        await self._wait_confirmed(raw, channel, send=True)

    async def _wait_confirmed(self, raw: bytes, channel: str, *, send: bool = False) -> None:
        # Registered before the command is written: the reply can come in while we await
        # the write.
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(raw, []).append(waiter)
        try:
            if send:
                await self._send_if_connected("SUBSCRIBE", channel)
            async with asyncio.timeout(self.socket_timeout):
                await waiter
        except TimeoutError:
            log.debug("SUBSCRIBE %r not confirmed within %.1fs", channel, self.socket_timeout)
        finally:
            waiters = self._waiters.get(raw)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[raw]

    def _confirm(self, raw_channel: bytes) -> None:
        for waiter in self._waiters.pop(raw_channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _release_waiters(self) -> None:
        # The connection is gone: nobody waits for its confirmations (the channels are in
        # the wanted set, which the reconnect subscribes).
        waiters, self._waiters = self._waiters, {}
        for pending in waiters.values():
            for waiter in pending:
                if not waiter.done():
                    waiter.set_result(None)

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

    # Presence

    @contextlib.contextmanager
    def _guard(self, operation: str, name: str) -> Iterator[Redis]:
        """Yield the command client, turning "Redis is down" into BackendUnavailable."""
        client = self._client
        if not self.available or client is None:
            raise BackendUnavailable(f"Redis is unavailable: cannot {operation} {name!r}")
        try:
            yield client
        except (RedisConnectionError, RedisTimeoutError) as err:
            raise BackendUnavailable(f"Redis failed to {operation} {name!r}: {err}") from err

    def _presence_key(self, room: str) -> str:
        return f"{self.prefix}presence:{room}"

    async def presence_add(self, room: str, members: Iterable[str], ttl: float) -> None:
        """Add or refresh ``members`` of ``room`` until ``ttl`` seconds from now (client clock)."""
        with self._guard("add presence in", room) as client:
            entries = list(members)
            if not entries:
                return
            ttl_ms = max(1, math.ceil(ttl * 1000))
            now_ms = int(time.time() * 1000)
            key = self._presence_key(room)
            pipe = client.pipeline(transaction=True)
            pipe.zremrangebyscore(key, "-inf", now_ms)  # keep the set from growing with the dead
            pipe.zadd(key, dict.fromkeys(entries, now_ms + ttl_ms))
            # The key lives as long as its longest-lived entry: NX sets a TTL on a new key, GT
            # only ever extends it.
            pipe.pexpire(key, ttl_ms, nx=True)
            pipe.pexpire(key, ttl_ms, gt=True)
            await pipe.execute()

    async def presence_remove(self, room: str, members: Iterable[str]) -> None:
        """Remove ``members`` of ``room`` at once."""
        with self._guard("remove presence in", room) as client:
            entries = list(members)
            if entries:
                await client.zrem(self._presence_key(room), *entries)

    async def presence_members(self, room: str) -> list[str]:
        """The unexpired members of ``room`` (a read: expired entries are skipped, not deleted)."""
        with self._guard("read presence in", room) as client:
            now_ms = int(time.time() * 1000)
            raw = await client.zrangebyscore(self._presence_key(room), f"({now_ms}", "+inf")
            return [member.decode() if isinstance(member, bytes) else str(member) for member in raw]

    async def presence_count(self, room: str) -> int:
        """How many unexpired members ``room`` has."""
        with self._guard("count presence in", room) as client:
            now_ms = int(time.time() * 1000)
            count: int = await client.zcount(self._presence_key(room), f"({now_ms}", "+inf")
            return count
