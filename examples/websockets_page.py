"""Every example of the WebSockets docs page, unchanged, as one app.

Run it with ``uvicorn examples.websockets_page:app`` and try, in a browser console::

    const ws = new WebSocket("ws://localhost:8000/ws");
    ws.onmessage = e => console.log(e.data);
    ws.send("hello");   // logs: "Echo: hello"

The snippets that are fragments on the page (receiving, sending, state, closing) sit in small
handlers of their own so that they can be called. The ``--8<--`` comments mark the sections
that docs/websockets.md includes, so the page shows exactly the code these tests run.
"""

# --- Basic WebSocket endpoint -------------------------------------------------------------
# --8<-- [start:basic]
from FasterAPI import Faster, WebSocket

app = Faster()


@app.websocket("/ws")
async def websocket_endpoint(ws: WebSocket):
    await ws.accept()
    while True:
        data = await ws.receive_text()
        await ws.send_text(f"Echo: {data}")
# --8<-- [end:basic]


# --- Receiving data -----------------------------------------------------------------------
@app.websocket("/receiving")
async def receiving(ws: WebSocket):
    await ws.accept()

    # --8<-- [start:receiving]
    # Text frames
    text = await ws.receive_text()

    # Binary frames
    data = await ws.receive_bytes()

    # Raw ASGI message dict
    msg = await ws.receive()
    # --8<-- [end:receiving]

    await ws.send_json({"text": text, "bytes": data.hex(), "raw": msg})


# --- Sending data -------------------------------------------------------------------------
@app.websocket("/sending")
async def sending(ws: WebSocket):
    await ws.accept()

    # --8<-- [start:sending]
    await ws.send_text("hello")
    await ws.send_bytes(b"\x00\x01")
    await ws.send_json({"type": "update", "payload": 42})
    # --8<-- [end:sending]


# --- Disconnection handling ---------------------------------------------------------------
# --8<-- [start:disconnect]
from FasterAPI import WebSocketDisconnect


@app.websocket("/chat")
async def chat(ws: WebSocket):
    await ws.accept()
    try:
        while True:
            msg = await ws.receive_text()
            await ws.send_text(f"You said: {msg}")
    except WebSocketDisconnect:
        print("Client disconnected")
# --8<-- [end:disconnect]


# --- Path parameters in WebSocket routes --------------------------------------------------
# --8<-- [start:path]
@app.websocket("/rooms/{room_id}")
async def room(ws: WebSocket, room_id: str):
    await ws.accept()
    await ws.send_text(f"Joined room {room_id}")
    await ws.close()
# --8<-- [end:path]


# --- Broadcast pattern (one process; see examples/rooms.py for every worker) --------------
# --8<-- [start:broadcast]
from FasterAPI import WebSocket, WebSocketDisconnect

connections: list[WebSocket] = []


@app.websocket("/broadcast")
async def broadcast_endpoint(ws: WebSocket):
    await ws.accept()
    connections.append(ws)
    try:
        while True:
            msg = await ws.receive_text()
            for conn in list(connections):
                try:
                    await conn.send_text(msg)
                except Exception:
                    connections.remove(conn)
    except WebSocketDisconnect:
        connections.remove(ws)
# --8<-- [end:broadcast]


# --- WebSocket state ----------------------------------------------------------------------
# --8<-- [start:state-import]
from FasterAPI import WebSocketState

# --8<-- [end:state-import]


@app.websocket("/state")
async def state(ws: WebSocket):
    await ws.accept()

    # --8<-- [start:state]
    if ws.client_state == WebSocketState.CONNECTED:
        await ws.send_text("still here")
    # --8<-- [end:state]


# --- Closing with a code ------------------------------------------------------------------
@app.websocket("/policy")
async def policy(ws: WebSocket):
    await ws.accept()

    # --8<-- [start:close]
    await ws.close(code=1008)  # Policy Violation
    # --8<-- [end:close]
