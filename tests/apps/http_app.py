"""A small HTTP app for the real-server tests: ``python -m uvicorn tests.apps.http_app:app``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from FasterAPI import Faster, HTTPException, Request, StreamingResponse


class Item(msgspec.Struct):
    name: str
    price: float
    tags: list[str] = []


@asynccontextmanager
async def lifespan(app: Faster) -> AsyncIterator[dict[str, Any]]:
    yield {"greeting": os.environ.get("HTTP_APP_GREETING", "hello")}


app = Faster(lifespan=lifespan)


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@app.post("/items", status_code=201)
async def create_item(item: Item) -> Item:
    return item


@app.get("/greeting")
async def greeting(request: Request) -> dict[str, Any]:
    return {"greeting": request.state.greeting, "pid": os.getpid()}


@app.get("/teapot")
async def teapot() -> None:
    raise HTTPException(418, "short and stout", headers={"X-Pot": "yes"})


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[str]:
        for i in range(3):
            yield f"chunk{i}\n"

    return StreamingResponse(chunks(), media_type="text/plain")
