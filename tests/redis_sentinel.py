"""A Redis Sentinel set on free loopback ports: a primary, a replica and three sentinels.

``start()`` returns once the replica is in sync and every sentinel knows the primary, the
replica and the two other sentinels, so a failover can be decided. ``stop()`` stops all five
processes; it also runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Self

import redis

from tests.redis_server import RedisServer, redis_server_binary
from tests.servers import ManagedServer, free_port, kill_process, start_process, wait_until

SERVICE = "fasterapi"
#: How long a silent primary takes to be judged down (the failover starts then).
DOWN_AFTER_MS = 1000


class Sentinel:
    """One ``redis-server --sentinel`` process."""

    def __init__(self, primary_port: int) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fasterapi-sentinel-"))
        config = self.dir / "sentinel.conf"
        config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    "daemonize no",
                    "protected-mode no",
                    f"dir {self.dir}",
                    f"logfile {self.dir / 'sentinel.log'}",
                    f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2",
                    f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {SERVICE} 3000",
                    f"sentinel parallel-syncs {SERVICE} 1",
                    "",
                ]
            )
        )
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)
        try:
            self.process = start_process(
                [binary, str(config), "--sentinel"],
                name=f"redis sentinel on port {self.port}",
                ready=self._answers,
                log_tail=self._log_tail,
            )
        except BaseException:
            self.client.close()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def _log_tail(self) -> str:
        try:
            return (self.dir / "sentinel.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def knows_all(self) -> bool:
        try:
            return (
                len(self.client.execute_command("SENTINEL", "REPLICAS", SERVICE)) == 1
                and len(self.client.execute_command("SENTINEL", "SENTINELS", SERVICE)) == 2
            )
        except redis.RedisError:
            return False

    def primary(self) -> tuple[str, int] | None:
        try:
            host, port = self.client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        except (redis.RedisError, TypeError, ValueError):
            return None
        return (host.decode() if isinstance(host, bytes) else host), int(port)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        kill_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSet(ManagedServer):
    """A primary, a replica of it, and three sentinels watching them (service ``fasterapi``)."""

    def __init__(self) -> None:
        self.primary = RedisServer()
        self.replica: RedisServer | None = None
        self.sentinels: list[Sentinel] = []
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self, timeout: float = 30.0) -> Self:
        self.primary.start()
        self.replica = RedisServer(extra_args=("--replicaof", "127.0.0.1", str(self.primary.port)))
        self.replica.start()
        for _ in range(3):  # one by one, so stop() finds every one started even if the next fails
            self.sentinels.append(Sentinel(self.primary.port))
        replica = self.replica
        wait_until(lambda: replica.admin.info("replication").get("master_link_status") == "up", timeout, "replica sync")
        wait_until(lambda: all(s.knows_all() for s in self.sentinels), timeout, "the sentinels to know each other")
        return self

    def current_primary_port(self) -> int | None:
        """The primary's port as the sentinels agree on it (None while they disagree)."""
        views = {sentinel.primary() for sentinel in self.sentinels}
        if len(views) != 1 or None in views:
            return None
        (address,) = views
        assert address is not None
        return address[1]

    def kill_primary(self) -> RedisServer:
        """SIGKILL whichever server is the primary now; returns it."""
        port = self.current_primary_port()
        victim = self.primary if self.primary.port == port else self.replica
        assert victim is not None, "no agreed primary to kill"
        victim.kill()
        return victim

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.sentinels = []
        for server in (self.replica, self.primary):
            if server is not None:
                server.stop()
        atexit.unregister(self.stop)
