"""The app behind the wire tests of middleware, static files and server-sent events.

CORS and GZip are installed; the CORS allow list is ``CORS_ORIGIN_REGEX`` from the
environment (each test server is started with its own). ``STATIC_DIR`` is mounted at
``/static``. ``/sse`` sends one event, then idles until the client leaves; ``/sse/closed``
tells how many of those streams have been closed (their generator's ``finally`` ran).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from FasterAPI import Faster, Header, WebSocket
from FasterAPI.middleware.cors import CORSMiddleware
from FasterAPI.middleware.gzip import GZipMiddleware
from FasterAPI.responses import HTMLResponse
from FasterAPI.sse import EventSourceResponse, ServerSentEvent
from FasterAPI.staticfiles import StaticFiles

app = Faster()
app.add_middleware(GZipMiddleware, minimum_size=10)
app.add_middleware(
    CORSMiddleware,
    allow_origin_regex=os.environ.get("CORS_ORIGIN_REGEX", "$^"),
    allow_methods=["GET", "POST"],
    allow_headers=["Authorization", "Content-Type"],
)
if os.environ.get("STATIC_DIR"):
    app.mount("/static", StaticFiles(directory=os.environ["STATIC_DIR"]))

closed_streams = 0


@app.get("/sse")
async def sse() -> EventSourceResponse:
    async def events() -> AsyncIterator[ServerSentEvent]:
        global closed_streams
        try:
            yield ServerSentEvent(raw_data="first line\nsecond line", event="greeting", id="1")
            await asyncio.Event().wait()  # idle until the client leaves
        finally:
            closed_streams += 1

    return EventSourceResponse(events(), ping=0.5)


@app.get("/sse/closed")
async def sse_closed() -> dict[str, int]:
    return {"closed": closed_streams}


@app.get("/big")
async def big() -> dict[str, str]:
    return {"text": "compress me " * 200}


@app.post("/api/echo")
async def echo(authorization: str = Header("")) -> dict[str, str]:
    return {"authorization": authorization}


PAGE = """<!doctype html><title>cross-origin</title><body>a page on another origin</body>"""


@app.get("/page")
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE)


@app.websocket("/ws/room")
async def room(websocket: WebSocket) -> None:
    """Joins room "r", says which sink the hub delivers through, then relays one broadcast."""
    await websocket.accept()
    await websocket.join("r")
    sink = app.hub.connections[websocket.id].sink
    await websocket.send_text(f"sink {type(sink).__name__}")
    text = await websocket.receive_text()
    await app.broadcast("r", text)
    await websocket.receive_text()  # until the client leaves
