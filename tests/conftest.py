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
