"""The deploy tests share one stack (redis-server, two gunicorn instances, nginx) per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.stack import Stack, nginx_binary, run_stack
from tests.redis_server import redis_server_binary


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The compose topology without containers; stopped at the end of the session, whatever happens."""
    missing = [
        name for name, found in (("redis-server", redis_server_binary()), ("nginx", nginx_binary())) if not found
    ]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (run scripts/system-packages.sh)")
    with run_stack() as running:
        yield running
