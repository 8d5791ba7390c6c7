"""The startup self-check (FasterAPI.server.compat): what it finds, and the plain path it falls back to.

The installed uvicorn and websockets must pass (in every matrix cell). A changed internal is
simulated in-process for the unit tests, and through a ``sitecustomize`` for the real
``fasterapi run`` and gunicorn processes, whose own uvicorn protocol keeps working.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uvicorn.protocols.websockets import websockets_sansio_impl
from websockets.asyncio.client import connect

from FasterAPI.server import compat
from tests.cluster.processes import ROOT, run_gunicorn
from tests.deploy.stack import fasterapi_run, http

pytestmark = pytest.mark.timeout(90)

WARNING = "frame-once WebSocket delivery is off"
SansIO = websockets_sansio_impl.WebSocketsSansIOProtocol

# A uvicorn whose protocol calls a queue method our MessageQueue does not have: uvicorn's own
# protocol never runs it, so only our check can notice.
SITECUSTOMIZE = """\
from uvicorn.protocols.websockets import websockets_sansio_impl


def _changed_internal(self):
    self.queue.task_done()


websockets_sansio_impl.WebSocketsSansIOProtocol.changed_internal = _changed_internal
"""


@pytest.fixture
def fresh_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget this process's check result (and its warning) before and after the test."""
    compat._frame_once.cache_clear()
    monkeypatch.setattr(compat, "_warned", False)
    yield
    compat._frame_once.cache_clear()


@pytest.fixture
def changed_uvicorn(tmp_path: Path) -> str:
    """A PYTHONPATH whose sitecustomize changes uvicorn's protocol as above."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return str(tmp_path)


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fasterapi.server" and r.levelno == logging.WARNING]


def test_the_installed_releases_pass(fresh_check: None, caplog: pytest.LogCaptureFixture) -> None:
    assert compat.problem() is None
    assert compat.problem(worker=True) is None
    from FasterAPI.server.protocol import FasterWebSocketProtocol

    assert compat.ws_protocol() is FasterWebSocketProtocol
    assert compat.ws_protocol(worker=True) is FasterWebSocketProtocol
    from FasterAPI.server.http import FasterHttpToolsProtocol

    assert compat.http_protocol() is FasterHttpToolsProtocol  # httptools is installed here
    assert warnings_in(caplog) == []


def test_a_missing_module_falls_back_with_one_warning(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As under uvicorn < 0.35: no websockets-sansio protocol to extend.
    monkeypatch.setitem(sys.modules, "uvicorn.protocols.websockets.websockets_sansio_impl", None)
    assert compat.ws_protocol() == "auto"
    assert compat.ws_protocol(worker=True) == "auto"
    assert compat.http_protocol() == "auto"
    assert compat.frame_once() is False
    [warning] = warnings_in(caplog)
    assert WARNING in warning
    assert "cannot import uvicorn.protocols.websockets.websockets_sansio_impl" in warning
    assert f"uvicorn {compat._version('uvicorn')}, websockets {compat._version('websockets')}" in warning
    assert "uvicorn>=" in warning and "websockets>=" in warning  # the tested ranges, from the metadata


def test_a_check_that_breaks_falls_back_too(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(worker: bool = False) -> str | None:
        raise AttributeError("a shape nobody foresaw")

    monkeypatch.setattr(compat, "problem", broken)
    assert compat.ws_protocol() == "auto"
    [warning] = warnings_in(caplog)
    assert "the check failed: AttributeError('a shape nobody foresaw')" in warning


def test_a_missing_instance_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def __init__(self: Any, config: Any, server_state: Any, app_state: Any, _loop: Any = None) -> None:
        self.config = config  # and nothing else: as if uvicorn renamed its state

    monkeypatch.setattr(SansIO, "__init__", __init__)
    reason = compat.problem()
    assert reason is not None and "WebSocketsSansIOProtocol.__init__: missing" in reason
    assert "disconnected" in reason and "close_timer" in reason


def test_a_queue_method_ours_lacks_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def changed_internal(self: Any) -> None:
        self.queue.task_done()
        self.writable.is_set()  # WaitFlag has this one

    monkeypatch.setattr(SansIO, "changed_internal", changed_internal, raising=False)
    assert compat.problem() == "uvicorn calls queue.task_done(), which ours lacks"


def test_a_missing_worker_hook_only_matters_to_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn_worker

    monkeypatch.delattr(uvicorn_worker.UvicornWorker, "_install_sigquit_handler")
    assert compat.problem() is None
    assert compat.problem(worker=True) == "uvicorn_worker.UvicornWorker: missing _install_sigquit_handler"


async def round_trip(ws_url: str) -> tuple[int, str]:
    async with connect(f"{ws_url}/ws/compat", open_timeout=10) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send("say:still served")
        return hello["pid"], str(await asyncio.wait_for(ws.recv(), 10))


def test_fasterapi_run_falls_back_to_uvicorns_protocol(changed_uvicorn: str) -> None:
    with fasterapi_run(
        app="tests.apps.cluster_app:app", ready_path="/worker", env={"PYTHONPATH": changed_uvicorn}
    ) as served:

        async def scenario() -> list[str]:
            async with connect(f"{served.ws_url}/ws/compat", open_timeout=10) as ws:
                await asyncio.wait_for(ws.recv(), 10)  # the hello
                await ws.send("say:still served")
                assert await asyncio.wait_for(ws.recv(), 10) == "still served"
                sinks: list[str] = (await asyncio.to_thread(http, f"{served.base_url}/worker")).json()["sinks"]
                return sinks

        assert asyncio.run(scenario()) == ["Outbox"]  # the ASGI path, not FasterWebSocketProtocol
        output = served.output()
    assert output.count(WARNING) == 1, output
    assert "uvicorn calls queue.task_done(), which ours lacks" in output


def test_gunicorn_workers_fall_back_with_one_warning_in_all(changed_uvicorn: str) -> None:
    env = {"PYTHONPATH": f"{changed_uvicorn}:{ROOT}", "FASTERAPI_BACKEND": "memory://"}
    with run_gunicorn(
        "tests.apps.cluster_app:app", workers=2, env=env, worker_class="FasterAPI.server.worker.FasterWorker"
    ) as server:
        pid, echoed = asyncio.run(round_trip(server.ws_url))
        assert echoed == "still served"
        log = server.log()
    assert log.count(WARNING) == 1, log
    assert f"pid: {pid}" in log  # answered by one of the workers, through uvicorn's own protocol


def test_a_missing_http_protocol_hook_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    monkeypatch.delattr(HttpToolsProtocol, "_unsupported_upgrade_warning")
    assert compat.problem() == (
        "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol: missing _unsupported_upgrade_warning"
    )
