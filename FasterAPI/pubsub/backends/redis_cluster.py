"""Redis Cluster: rooms on sharded pub/sub, each room's channel and keys in one slot.

``redis+cluster://[user:password@]host:port[,host:port...]/[?options]`` (port 6379 when
omitted; any node of the cluster will do, several survive one being down). Options are
:class:`~.redis.RedisBackend`'s (``prefix``, timeouts, backoff, ``startup_wait``) plus
``max_connections`` (per node, for commands).

Why sharded pub/sub: a classic ``PUBLISH`` on a cluster is copied to every node, so adding
shards adds no pub/sub capacity. ``SPUBLISH`` stays in the shard that owns the channel's slot,
and ``SSUBSCRIBE`` listens there. Every room's channel and keys share one hash tag made from
the room name (:func:`hash_tag`): ``{prefix}room:{lobby}``, ``{prefix}history:{lobby}``,
``{prefix}history-meta:{lobby}``, ``{prefix}presence:{lobby}``; so the history Lua script
stores and publishes in one slot, atomically. A worker's own channel (direct sends, the relay
self-check) is a sharded channel too, ``{prefix}{worker:<id>}``; the presence heartbeats are
one sorted set, ``{prefix}presence-workers``, in whichever slot that name hashes to.

Subscribing: per worker, one subscriber connection to each primary, found with ``CLUSTER
SLOTS`` on every connect (the slot map and the session: :mod:`.redis_cluster_topology`; the
read loop, shared with the Redis backend: :mod:`._redis_reader`). redis-py's asyncio
``ClusterPubSub`` is not used: it polls its node connections in turn (a wait on one delays
the others) and reconnects and resubscribes on its own, out of sight of the reconnect
supervisor. The session is all of those connections: when
any one fails (its primary died, a failover, a network error), or a primary says a channel's
slot moved away (an unrequested ``SUNSUBSCRIBE``), or a ``SSUBSCRIBE`` is redirected
(``MOVED``), the whole session ends and :class:`~._reconnect.Supervisor` builds a new one
from a fresh slot map, resubscribing every wanted channel (while a primary of the map refuses
connections, the map is asked for again every few tenths of a second: the cluster is electing
its replica). The worker treats the cluster as one relay: until then its rooms on the other
shards pause too, and what they publish meanwhile is lost, as in any reconnect (rooms with
history catch up). Commands (``SPUBLISH``, presence, history)
go through redis-py's ``RedisCluster``, without retries (a publish may have gone out already).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..envelope import room_channel
from ..history import HistoryRange, Position, Retention
from ._confirmations import Confirmations
from ._reconnect import Backoff, Supervisor
from ._redis_reader import read_subscriber, send_on
from ._url import only_backend_options, require_positive
from .base import Backend, BackendListener, BackendUnavailable, describe_error
from .redis import URL_OPTIONS
from .redis_cluster_topology import Address, Session, Shard, SlotMapper, SlotMoved, connect_through_failover, text
from .redis_history import RedisHistory
from .redis_presence import RedisPresence

__all__ = ["RedisClusterBackend", "SlotMoved", "hash_tag"]

log = logging.getLogger("fasterapi.backends.redis_cluster")

DEFAULT_PORT = 6379

_ROOM = room_channel("")

#: Backend options that may also be given in the URL query: the Redis backend's and ``max_connections``.
CLUSTER_URL_OPTIONS: dict[str, Callable[[str], Any]] = {**URL_OPTIONS, "max_connections": int}


def hash_tag(name: str) -> str:
    """``name`` as a Redis Cluster hash tag: ``{name}``, never empty, with no brace inside.

    ``{``, ``}`` and ``%`` are escaped (``%7B``, ``%7D``, ``%25``) so no room name can end the
    tag early; the empty name becomes ``{%}`` (an empty tag would hash the whole key).
    """
    escaped = name.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return "{" + (escaped or "%") + "}"


class RedisClusterBackend(Backend):
    """Pub/sub, presence and room history over a Redis Cluster (see the module docstring).

    The contract is :class:`~.base.Backend`'s, as for :class:`~.redis.RedisBackend`; what
    differs: ``available`` covers every primary (one shard down makes the worker unavailable
    until the cluster has a primary for it again), a channel used with a :class:`Retention`
    must be that room's channel, and ``prefix`` may not contain braces (the hash tag is the
    room's).
    """

    keeps_history = True

    def __init__(
        self,
        nodes: Sequence[Address],
        *,
        username: str | None = None,
        password: str | None = None,
        prefix: str = "fasterapi:",
        health_check_interval: float = 5.0,
        socket_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        startup_wait: float = 5.0,
        max_connections: int = 50,
    ) -> None:
        if not nodes:
            raise ValueError("RedisClusterBackend needs the address of at least one cluster node")
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"A Redis Cluster prefix may not contain braces (the room is the hash tag): {prefix!r}")
        require_positive(
            health_check_interval=health_check_interval, socket_timeout=socket_timeout, connect_timeout=connect_timeout
        )
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.nodes = list(nodes)
        self.prefix = prefix
        self.health_check_interval = health_check_interval
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.startup_wait = startup_wait
        self.max_connections = max_connections
        #: How many times ``listener.on_message`` raised.
        self.callback_errors = 0
        self.backoff = Backoff(backoff_base, backoff_cap)
        self.presence: RedisPresence = RedisPresence(prefix, self._guard, room_tag=hash_tag)
        self._history = RedisHistory(prefix, self._guard, room_tag=hash_tag, publish_command="SPUBLISH")
        self._auth = {"username": username, "password": password}
        hosts = ",".join(f"{host}:{port}" for host, port in self.nodes)
        auth = f"{username or ''}:***@" if password else ""
        self._supervisor: Supervisor[Session] = Supervisor(
            self,
            name="Redis Cluster",
            target=f"redis+cluster://{auth}{hosts}/",
            detail=f"prefix {prefix!r}",
            connect=self._connect,
            listen=self._listen,
            abandon=self._abandon,
            backoff=self.backoff,
            startup_wait=startup_wait,
            stop_timeout=max(1.0, connect_timeout),
        )
        self._mapper = SlotMapper(self.nodes)
        # Wanted logical channels, and the physical name of each (both ways: dispatch maps back).
        self._wanted: dict[str, bytes] = {}
        self._logical: dict[bytes, str] = {}
        self._listener: BackendListener | None = None
        self._client: RedisCluster | None = None
        # In-flight commands: a burst waits here instead of failing at a node pool's limit.
        self._slots: asyncio.Semaphore | None = None
        # The session being set up or in use, and the one subscribe() may write to (see
        # RedisBackend: set from the moment its connections are up until it fails).
        self._owned: Session | None = None
        self._session: Session | None = None
        self._confirmations = Confirmations("SSUBSCRIBE", socket_timeout)
        # Held while (un)subscribe commands are written, so their order on the wire follows
        # the order of the changes to the wanted channels.
        self._sending = asyncio.Lock()

    @property
    def connection_losses(self) -> int:
        """How many times the subscriber session was lost (a failed first start included)."""
        return self._supervisor.connection_losses

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``redis+cluster://[user:password@]h1:p1,h2:p2/[?prefix=...]``."""
        clean, from_query = only_backend_options(url, CLUSTER_URL_OPTIONS, backend="Redis Cluster")
        parts = urlsplit(clean)
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"A Redis Cluster has only db 0; the URL's path must be empty: {url!r}")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        nodes: list[Address] = []
        for address in filter(None, hosts.split(",")):
            host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
            try:
                nodes.append((host, int(port) if port else DEFAULT_PORT))
            except ValueError:
                raise ValueError(f"Bad cluster node address {address!r} in {url!r}") from None
        if not nodes:
            raise ValueError(f"A Redis Cluster URL names at least one node: {url!r}")
        return cls(
            nodes,
            username=unquote(username) or None,
            password=unquote(password) or None,
            **{**from_query, **options},
        )

    @property
    def subscribed_channels(self) -> set[str]:
        return set(self._wanted)

    def physical(self, channel: str) -> str:
        """The sharded channel carrying ``channel``: a room's shares the room's hash tag."""
        if channel.startswith(_ROOM):
            return f"{self.prefix}{_ROOM}{hash_tag(channel[len(_ROOM) :])}"
        return self.prefix + hash_tag(channel)

    def _connection_options(self) -> dict[str, Any]:
        return {
            **{key: value for key, value in self._auth.items() if value is not None},
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "socket_keepalive": True,
        }

    # Lifecycle

    async def start(self, listener: BackendListener) -> None:
        """Connect to every primary and start delivering; returns once connected or after ``startup_wait``."""
        if self._supervisor.running:
            raise RuntimeError("RedisClusterBackend is already started")
        self._listener = listener
        self._slots = asyncio.Semaphore(self.max_connections)
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.nodes],
            # No retries: a publish that failed may have gone out. MOVED and ASK redirects are
            # still followed (the command did not run), and a failed node triggers a fresh
            # slot map on the next command.
            retry=Retry(NoBackoff(), 0),
            max_connections=self.max_connections * 2,  # per node; bursts wait on _slots first
            client_name=f"{self.prefix}pub",
            **self._connection_options(),
        )
        await self._supervisor.start(listener)

    async def stop(self) -> None:
        """Stop listening and close every connection. Idempotent; each wait is bounded."""
        await self._supervisor.stop()
        await self._abandon()
        client, self._client = self._client, None
        if client is not None:
            try:
                async with asyncio.timeout(self._supervisor.stop_timeout):
                    await client.aclose()
            except Exception as err:
                log.debug("error closing the Redis Cluster client: %s", describe_error(err))
        self._listener = None

    # The subscriber session, run by the supervisor

    async def _connect(self) -> Session:
        """Build a session, mapping the slots again while a primary is being replaced."""
        return await connect_through_failover(self._build_session, self._abandon, self.connect_timeout)

    async def _build_session(self) -> Session:
        """Map the slots, open one subscriber per primary, subscribe every wanted channel, see PONGs."""
        session = Session(
            await self._mapper.slot_map(self._connection_options(), self.connect_timeout + self.socket_timeout)
        )
        self._owned = session
        owners = session.primaries
        session.open_shards(
            {
                **self._connection_options(),
                # No retry, no health check of redis-py's: failures must reach the session (see
                # RedisBackend), and the readers send their own PINGs.
                "retry": Retry(NoBackoff(), 0, supported_errors=()),
                "client_name": f"{self.prefix}sub",
                "decode_responses": False,
                "health_check_interval": 0,
            }
        )
        async with asyncio.timeout(self.connect_timeout + self.socket_timeout):
            await session.connect()
            async with self._sending:
                # From here on subscribe() and unsubscribe() write to these connections
                # themselves, after this lock: the snapshot and its SSUBSCRIBEs come first on
                # the wire, so no channel falls between the two nor is resubscribed after leaving.
                self._session = session
                for shard in session.shards.values():
                    for channels in session.channels_by_slot(shard, self._logical):  # one slot per SSUBSCRIBE
                        await self._send(shard, "SSUBSCRIBE", *channels)
                    # A node answers in order, so the PONG means every SSUBSCRIBE before it is in force.
                    await self._send(shard, "PING")
            await asyncio.gather(*(self._await_pong(session, shard) for shard in session.shards.values()))
        if owners != self._mapper.last_owners:
            await self._refresh_command_client()
            self._mapper.last_owners = owners
        return session

    async def _await_pong(self, session: Session, shard: Shard) -> None:
        """Read ``shard``'s confirmations up to the PONG; keep messages that came before it."""
        while True:
            message = await shard.pubsub.get_message(timeout=self.socket_timeout)
            if message is None:
                raise RedisTimeoutError(f"no PONG from {shard.address} on the new subscriber connection")
            if message["type"] == "pong":
                return
            if message["type"] == "smessage":
                session.early.append((shard, message))
            else:
                self._control(shard, message)

    async def _refresh_command_client(self) -> None:
        # First connect, or the primaries changed (a failover): give the command client the
        # new map now, rather than have the next publish fail on the old primary to find out.
        client = self._client
        if client is None:
            return
        try:
            async with asyncio.timeout(self.connect_timeout + self.socket_timeout):
                await client.aclose()  # marks it for a fresh slot map and command table
                await client.initialize()
        except Exception as err:
            log.debug("refreshing the command client's slot map failed: %s", describe_error(err))

    async def _listen(self, session: Session) -> BaseException:
        """Deliver until a shard's connection fails or the slot map changes; return why."""
        try:
            for shard, message in session.early:
                self._dispatch(shard, message)
        except SlotMoved as moved:
            return moved
        readers = [
            asyncio.create_task(
                read_subscriber(
                    shard.pubsub, shard, self._dispatch, interval=self.health_check_interval, peer=f"{shard.address}"
                )
            )
            for shard in session.shards.values()
        ]
        try:
            watched: list[asyncio.Future[Any]] = [*readers, session.ended]
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if session.ended.done():
                return session.ended.result()
            finished = done.pop()
            assert isinstance(finished, asyncio.Task)
            return finished.exception() or RedisConnectionError("a subscriber connection ended")
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _abandon(self) -> None:
        """Drop the session's connections, if any: failed, half-built, or at stop. Never raises."""
        self._session = None
        session, self._owned = self._owned, None
        self._confirmations.release_all()
        if session is None:
            return
        session.end(RedisConnectionError("the session was abandoned"))
        await session.close(self.connect_timeout)

    async def _send(self, shard: Shard, *args: str) -> None:
        """Write a command on a subscriber connection; its reply comes through the reader."""
        await send_on(shard.pubsub, *args)

    def _control(self, shard: Shard, message: dict[str, Any]) -> None:
        """A confirmation on a subscriber connection; raises SlotMoved for one we did not ask for."""
        kind, raw = message["type"], message["channel"]
        if kind == "ssubscribe":
            self._confirmations.confirm(raw)
        elif kind == "sunsubscribe":
            if shard.unsubscribing[raw] > 0:
                shard.unsubscribing[raw] -= 1
                if not shard.unsubscribing[raw]:
                    del shard.unsubscribing[raw]
            elif raw in self._logical:
                raise SlotMoved(f"{shard.address} no longer serves the slot of {text(raw)!r}")

    def _dispatch(self, shard: Shard, message: dict[str, Any]) -> None:
        if message["type"] != "smessage":
            self._control(shard, message)
            return
        channel = self._logical.get(message["channel"])
        listener = self._listener
        # An SUNSUBSCRIBE takes a round trip to apply; drop what is still in flight.
        if listener is None or channel is None:
            return
        try:
            listener.on_message(channel, message["data"])
        except Exception:
            self.callback_errors += 1
            log.exception("listener.on_message raised for channel %r", channel)

    # Pub/sub

    async def publish(self, channel: str, data: bytes, retention: Retention | None = None) -> Position | None:
        """``SPUBLISH`` ``data`` on ``channel``; raises :class:`BackendUnavailable` when its shard is down.

        With ``retention`` (``channel`` must be that room's), one Lua script in the room's slot
        stores, stamps and publishes it.
        """
        if retention is not None:
            if channel != room_channel(retention.room):
                raise ValueError(f"History of room {retention.room!r} goes on its own channel, not {channel!r}")
            async with self._command_slot("publish to", channel):
                return await self._history.publish(self.physical(channel), data, retention)
        async with self._command_slot("publish to", channel):
            with self._guard("publish to", channel) as client:
                # (RedisCluster.spublish() only exists in recent redis-py releases.)
                await client.execute_command("SPUBLISH", self.physical(channel), data)
        return None

    @contextlib.asynccontextmanager
    async def _command_slot(self, operation: str, name: str) -> Any:
        slots = self._slots
        if not self.available or slots is None:
            raise BackendUnavailable(f"Redis Cluster is unavailable: cannot {operation} {name!r}")
        async with slots:
            yield

    async def read_history(self, retention: Retention, after: int, limit: int) -> HistoryRange:
        return await self._history.read(retention, after, limit)

    async def history_tops(self, rooms: Sequence[str]) -> dict[str, Position | None]:
        return await self._history.tops(rooms)

    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``; while connected, returns once its primary confirmed it."""
        raw = self.physical(channel).encode("utf-8", "surrogateescape")
        if channel in self._wanted:
            if self._confirmations.pending(raw):  # subscribed a moment ago: wait for it too
                await self._confirmations.wait(raw, channel)
            return
        self._wanted[channel] = raw
        self._logical[raw] = channel
        if self._session is None:
            log.debug("SSUBSCRIBE %r recorded; sent when the cluster is back", channel)
            return
        await self._confirmations.wait(raw, channel, lambda: self._send_if_connected("SSUBSCRIBE", raw))

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; messages for it still in flight are dropped."""
        raw = self._wanted.pop(channel, None)
        if raw is None:
            return
        del self._logical[raw]
        await self._send_if_connected("SUNSUBSCRIBE", raw)

    async def _send_if_connected(self, command: str, raw: bytes) -> None:
        async with self._sending:
            session = self._session
            shard = None if session is None else session.shard_for(raw)
            if session is None or shard is None:
                if session is not None:  # a slot no primary served when the map was made
                    session.end(SlotMoved(f"no primary known for the slot of {text(raw)!r}"))
                log.debug("%s %r recorded; sent when the cluster is back", command, text(raw))
                return
            if command == "SUNSUBSCRIBE":
                shard.unsubscribing[raw] += 1
            try:
                await self._send(shard, command, raw.decode("utf-8", "surrogateescape"))
            except Exception as err:
                # The reader sees the broken connection and the session is rebuilt from the
                # wanted channels, which are already up to date.
                log.debug("%s %r not sent (%s); the reconnect applies it", command, text(raw), describe_error(err))

    @contextlib.contextmanager
    def _guard(self, operation: str, name: str) -> Iterator[RedisCluster]:
        """Yield the command client, turning "the cluster is down" into BackendUnavailable."""
        client = self._client
        if not self.available or client is None:
            raise BackendUnavailable(f"Redis Cluster is unavailable: cannot {operation} {name!r}")
        try:
            yield client
        except (RedisConnectionError, RedisTimeoutError, ClusterError, RedisClusterException) as err:
            raise BackendUnavailable(f"Redis Cluster failed to {operation} {name!r}: {describe_error(err)}") from err
