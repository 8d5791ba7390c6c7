"""A realtime app on a real uvicorn, shared by a test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import RunningServer, run_uvicorn


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with run_uvicorn("tests.apps.realtime_app:app") as running:
        yield running
