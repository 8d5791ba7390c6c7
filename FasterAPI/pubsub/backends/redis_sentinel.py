"""Redis behind Sentinel: the primary is looked up through the sentinels on every connect.

``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db][?options]``
(sentinel port 26379 when omitted). Everything else is :class:`RedisBackend`: after a
failover the subscriber connection fails, the reconnect asks the sentinels for the new
primary and resubscribes, and the command pool drops connections to the old one. Options are
RedisBackend's, plus ``sentinel_password`` for sentinels that require one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from redis.asyncio import ConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from ._url import only_backend_options
from .redis import URL_OPTIONS, RedisBackend

__all__ = ["RedisSentinelBackend"]

DEFAULT_SENTINEL_PORT = 26379

#: Backend options that may also be given in the URL query: the Redis backend's and ``sentinel_password``.
SENTINEL_URL_OPTIONS: dict[str, Callable[[str], Any]] = {**URL_OPTIONS, "sentinel_password": str}


class RedisSentinelBackend(RedisBackend):
    """A :class:`RedisBackend` whose primary is found through Sentinel (see the module docstring)."""

    def __init__(
        self,
        sentinels: list[tuple[str, int]],
        service_name: str,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
        **options: Any,
    ) -> None:
        if not sentinels:
            raise ValueError("RedisSentinelBackend needs at least one sentinel address")
        if not service_name:
            raise ValueError("RedisSentinelBackend needs the service name Sentinel monitors")
        hosts = ",".join(f"{host}:{port}" for host, port in sentinels)
        auth = f"{username or ''}:***@" if password else ""
        super().__init__(f"redis+sentinel://{auth}{hosts}/{service_name}/{db}", **options)
        self.sentinels = sentinels
        self.service_name = service_name
        self._node_options: dict[str, Any] = {"db": db, "username": username, "password": password}
        self._sentinel_password = sentinel_password
        self._manager: Sentinel | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from ``redis+sentinel://[user:password@]h1:p1,h2:p2/service[/db]?prefix=...``."""
        clean, from_query = only_backend_options(url, SENTINEL_URL_OPTIONS, backend="Sentinel")
        parts = urlsplit(clean)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        sentinels: list[tuple[str, int]] = []
        for address in filter(None, hosts.split(",")):
            host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
            try:
                sentinels.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
            except ValueError:
                raise ValueError(f"Bad sentinel address {address!r} in {url!r}") from None
        path = [segment for segment in parts.path.split("/") if segment]
        if not path or len(path) > 2:
            raise ValueError(f"A Sentinel URL names the service and optionally the db: /service[/db], got {url!r}")
        try:
            db = int(path[1]) if len(path) == 2 else 0
        except ValueError:
            raise ValueError(f"The db in {url!r} must be a number") from None
        return cls(
            sentinels,
            unquote(path[0]),
            db=db,
            username=unquote(username) or None,
            password=unquote(password) or None,
            **{**from_query, **options},
        )

    def _new_pool(self, role: str, options: dict[str, Any]) -> ConnectionPool:
        if self._manager is None:
            sentinel_options: dict[str, Any] = {
                "socket_timeout": self.socket_timeout,
                "socket_connect_timeout": self.connect_timeout,
            }
            if self._sentinel_password:
                sentinel_options["password"] = self._sentinel_password
            self._manager = Sentinel(self.sentinels, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
        options = {**options, **{k: v for k, v in self._node_options.items() if v is not None}}
        if role == "pub":
            options.setdefault("max_connections", 50)
        return SentinelConnectionPool(self.service_name, self._manager, **options)  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        await super().stop()
        manager, self._manager = self._manager, None
        if manager is not None:
            # Sentinel.aclose() is recent (redis-py > 5.0.1); closing its clients works on every release.
            for client in manager.sentinels:
                with contextlib.suppress(Exception):
                    await client.aclose()
