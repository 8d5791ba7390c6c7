"""An app whose background tasks are slow or fail, for tests/test_background.py over a real server."""

from __future__ import annotations

import asyncio

from FasterAPI import BackgroundTasks, Faster

app = Faster()
state = {"slow": "not started"}


async def slow() -> None:
    state["slow"] = "running"
    await asyncio.sleep(5)
    state["slow"] = "done"


def failing() -> None:
    raise ValueError("failing task")


@app.post("/slow")
async def queue_slow(tasks: BackgroundTasks) -> dict[str, bool]:
    state["slow"] = "queued"
    tasks.add_task(slow)
    return {"queued": True}


@app.post("/failing")
async def queue_failing(tasks: BackgroundTasks) -> dict[str, bool]:
    tasks.add_task(failing)
    return {"queued": True}


@app.get("/state")
async def get_state() -> dict[str, str]:
    return state
