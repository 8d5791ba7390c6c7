"""BackgroundTasks: injected like FastAPI's, run after the response, failures logged and contained."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest

from FasterAPI import BackgroundTasks, Depends, Faster
from FasterAPI.background import BackgroundTask
from FasterAPI.responses import JSONResponse
from FasterAPI.testclient import TestClient
from tests.servers import run_uvicorn


def test_tasks_run_in_order_after_the_response_sync_and_async() -> None:
    app = Faster()
    log: list[str] = []

    async def note(text: str) -> None:
        log.append(text)

    def note_in_thread(text: str, *, suffix: str) -> None:
        assert threading.current_thread() is not threading.main_thread()
        log.append(text + suffix)

    @app.post("/items")
    async def create(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(note, "async")
        tasks.add_task(note_in_thread, "sync", suffix="!")
        log.append("handler")
        return {"ok": True}

    assert TestClient(app).post("/items").json() == {"ok": True}
    assert log == ["handler", "async", "sync!"]


def test_dependencies_and_the_handler_share_one_background_tasks() -> None:
    app = Faster()
    log: list[str] = []

    def audit(tasks: BackgroundTasks) -> None:
        tasks.add_task(log.append, "from dependency")

    @app.get("/", dependencies=[Depends(audit)])
    async def index(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(log.append, "from handler")
        return {"ok": True}

    TestClient(app).get("/")
    assert log == ["from dependency", "from handler"]


def test_a_failing_task_is_logged_with_its_traceback_and_the_rest_still_run(caplog: pytest.LogCaptureFixture) -> None:
    app = Faster()
    log: list[str] = []

    def explode() -> None:
        raise ValueError("boom in the background")

    @app.get("/")
    async def index(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(explode)
        tasks.add_task(log.append, "after")
        return {"ok": True}

    with caplog.at_level(logging.ERROR, logger="fasterapi"):
        response = TestClient(app).get("/")
    assert response.json() == {"ok": True}
    assert log == ["after"]
    [record] = [r for r in caplog.records if "Background task" in r.getMessage()]
    assert "explode" in record.getMessage()
    assert record.exc_info is not None and "boom in the background" in str(record.exc_info[1])


def test_a_response_carries_its_own_background_task() -> None:
    app = Faster()
    log: list[str] = []

    @app.get("/")
    async def index() -> JSONResponse:
        return JSONResponse({"ok": True}, background=BackgroundTask(log.append, "done"))

    TestClient(app).get("/")
    assert log == ["done"]


def test_tasks_do_not_run_when_the_handler_fails() -> None:
    app = Faster()
    log: list[str] = []

    @app.get("/")
    async def index(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(log.append, "never")
        raise RuntimeError("handler failed")

    assert TestClient(app, raise_server_exceptions=False).get("/").status_code == 500
    assert log == []


@pytest.mark.timeout(120)
def test_over_a_real_server_the_client_has_its_answer_while_the_task_runs() -> None:
    """A slow task neither delays the response nor, failing, breaks the connection."""
    with run_uvicorn("tests.apps.background_app:app") as server, httpx.Client(base_url=server, timeout=30) as client:
        started = time.monotonic()
        assert client.post("/slow").json() == {"queued": True}
        assert time.monotonic() - started < 5  # the task sleeps 5 s after this response
        assert client.get("/state").json() == {"slow": "running"}
        assert client.post("/failing").json() == {"queued": True}
        # Same keep-alive connection, after the failing task: still served.
        deadline = time.monotonic() + 60
        while client.get("/state").json() != {"slow": "done"}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        output = server.output()
        assert "Background task" in output and "failing" in output
        assert "Traceback" in output and "ValueError: failing task" in output
