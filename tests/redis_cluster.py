"""A Redis Cluster on free loopback ports: three primaries, one replica each.

``start()`` returns once every node reports ``cluster_state:ok``, agrees on who owns every
slot, and every replica is in sync, so a failover can be decided at once. Node timeout is
1.5 s, so a killed primary is replaced by its replica within a few seconds. Ports stay below
55535: a node's cluster bus listens on its port + 10000. ``stop()`` stops all six processes;
it also runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import random
import shutil
import socket
import subprocess
from typing import Self

import redis
from redis.cluster import key_slot

from tests.redis_server import RedisServer
from tests.servers import ManagedServer, wait_until

__all__ = ["NODE_TIMEOUT_MS", "RedisCluster", "cluster_ports"]

#: How long a silent node takes to be judged failing (its replica's election starts then).
NODE_TIMEOUT_MS = 1500
_BUS_OFFSET = 10000
_HIGHEST_PORT = 65535 - _BUS_OFFSET


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` ports below 55535 whose port and bus port (+10000) are both free right now."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, _HIGHEST_PORT - 1)
        if port not in ports and _bindable(port) and _bindable(port + _BUS_OFFSET):
            ports.append(port)
    return ports


def redis_cli_binary() -> str | None:
    return shutil.which("redis-cli")


class RedisCluster(ManagedServer):
    """Six ``redis-server --cluster-enabled yes`` processes joined by ``redis-cli --cluster create``."""

    def __init__(self, primaries: int = 3) -> None:
        self.size = primaries * 2
        self.nodes: list[RedisServer] = []
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node's address (any one of them would do)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes) + "/"

    def start(self, timeout: float = 60.0) -> Self:
        for attempt in range(3):
            try:
                self._create(timeout)
                return self
            except (RuntimeError, subprocess.CalledProcessError):
                # A port taken between our check and redis binding it: start over on new ones.
                self._stop_nodes()
                if attempt == 2:
                    raise
        return self

    def _create(self, timeout: float) -> None:
        cli = redis_cli_binary()
        if cli is None:
            raise RuntimeError("redis-cli is not installed")
        for port in cluster_ports(self.size):
            node = RedisServer(
                port,
                extra_args=(
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                ),
            )  # fmt: skip
            self.nodes.append(node)
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until every running node says the cluster is ok, with three primaries in sync."""
        wait_until(self._healthy, timeout, "the cluster to be ok on every node")

    def _healthy(self) -> bool:
        running = [node for node in self.nodes if node.running]
        try:
            for node in running:
                info = node.admin.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return False
            views = {self._slot_owners(node) for node in running}
            if len(views) != 1:
                return False
            for node in running:
                replication = node.admin.info("replication")
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
        except redis.RedisError:
            return False
        return True

    @staticmethod
    def _slot_owners(node: RedisServer) -> tuple[tuple[int, int, int], ...]:
        slots = node.admin.execute_command("CLUSTER", "SLOTS")
        return tuple(sorted((int(row[0]), int(row[1]), int(row[2][1])) for row in slots))

    def primary_port_of(self, channel_or_key: str) -> int:
        """The port of the primary that owns ``channel_or_key``'s slot now (asked of a live node)."""
        return self.primary_port_of_slot(key_slot(channel_or_key.encode()))

    def primary_port_of_slot(self, slot: int) -> int:
        """The port of the primary that owns ``slot`` now (asked of a live node)."""
        for node in self.nodes:
            if not node.running:
                continue
            try:
                for start, end, owner, *_ in node.admin.execute_command("CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        return int(owner[1])
            except redis.RedisError:
                continue
        raise RuntimeError(f"no live node knows who owns slot {slot}")

    def node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def primaries(self) -> list[RedisServer]:
        """The running nodes that are primaries now."""
        found = []
        for node in self.nodes:
            if node.running and node.admin.info("replication").get("role") == "master":
                found.append(node)
        return found

    def flushall(self) -> None:
        """Empty every primary (replicas follow)."""
        for node in self.primaries():
            node.admin.flushall()

    def kill_primary_of(self, channel_or_key: str) -> RedisServer:
        """SIGKILL the primary that owns ``channel_or_key``'s slot; returns it (restart it later)."""
        victim = self.node(self.primary_port_of(channel_or_key))
        victim.kill()
        return victim

    def restart_dead_nodes(self, timeout: float = 60.0) -> None:
        """Start again every killed node (it rejoins as a replica) and wait for a healthy cluster."""
        for node in self.nodes:
            if not node.running:
                node.start()
        self.wait_healthy(timeout)

    def _stop_nodes(self) -> None:
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            node.stop()

    def stop(self) -> None:
        self._stop_nodes()
        atexit.unregister(self.stop)
