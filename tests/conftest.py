"""Shared fixtures."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Let the suite run from a checkout without `pip install -e .` (pytest puts tests/ on the
# path, not the project root).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.nats_server import NatsServer, nats_server_binary  # noqa: E402
from tests.redis_cluster import RedisCluster, redis_cli_binary  # noqa: E402
from tests.redis_sentinel import SentinelSet  # noqa: E402
from tests.redis_server import RedisServer, redis_server_binary  # noqa: E402


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port, stopped after the test whatever happens."""
    if redis_server_binary() is None:
        pytest.fail("redis-server is not installed: run `make test`, which installs it where it can")
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sentinel_set() -> Iterator[SentinelSet]:
    """A primary, a replica and three sentinels on free ports, for one test module."""
    if redis_server_binary() is None:
        pytest.fail("redis-server is not installed: run `make test`, which installs it where it can")
    sentinels = SentinelSet()
    try:
        sentinels.start()
        yield sentinels
    finally:
        sentinels.stop()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """Three primaries and three replicas (node timeout 1.5 s) on free ports, for one test module."""
    if redis_server_binary() is None or redis_cli_binary() is None:
        pytest.fail("redis-server and redis-cli are not installed: run `make test`, which installs them where it can")
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream on a free loopback port, stopped after the test."""
    if nats_server_binary() is None:
        pytest.fail("nats-server is not installed: run `make test`, which installs it where it can")
    server = NatsServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
