"""Every example of the WebSockets docs page, unchanged, as one app.

Run it with ``uvicorn examples.websockets_page:app`` and try, in a browser console::

    const ws = new WebSocket("ws://localhost:8000/ws");
    ws.onmessage = e => console.log(e.data);
    ws.send("hello");   // logs: "Echo: hello"

The snippets that are fragments on the page (receiving, sending, state, closing) sit in small
handlers of their own so that they can be called.
"""

# --- Basic WebSocket endpoint -------------------------------------------------------------
from FasterAPI import Faster, WebSocket

app = Faster()


@app.websocket("/ws")
async def websocket_endpoint(ws: WebSocket):
    await ws.accept()
    while True:
        data = await ws.receive_text()
        await ws.send_text(f"Echo: {data}")


# --- Receiving data -----------------------------------------------------------------------
@app.websocket("/receiving")
async def receiving(ws: WebSocket):
    await ws.accept()

    # Text frames
    text = await ws.receive_text()

    # Binary frames
    data = await ws.receive_bytes()

    # Raw ASGI message dict
    msg = await ws.receive()

    await ws.send_json({"text": text, "bytes": data.hex(), "raw": msg})


# --- Sending data -------------------------------------------------------------------------
@app.websocket("/sending")
async def sending(ws: WebSocket):
    await ws.accept()

    await ws.send_text("hello")
    await ws.send_bytes(b"\x00\x01")
    await ws.send_json({"type": "update", "payload": 42})


# --- Disconnection handling ---------------------------------------------------------------
from FasterAPI import WebSocketDisconnect  # noqa: E402


@app.websocket("/chat")
async def chat(ws: WebSocket):
    await ws.accept()
    try:
        while True:
            msg = await ws.receive_text()
            await ws.send_text(f"You said: {msg}")
    except WebSocketDisconnect:
        print("Client disconnected")


# --- Path parameters in WebSocket routes --------------------------------------------------
@app.websocket("/rooms/{room_id}")
async def room(ws: WebSocket, room_id: str):
    await ws.accept()
    await ws.send_text(f"Joined room {room_id}")
    await ws.close()


# --- Broadcast pattern (one process; see examples/rooms.py for every worker) --------------
from FasterAPI import WebSocket, WebSocketDisconnect  # noqa: E402, F811

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


# --- WebSocket state ----------------------------------------------------------------------
from FasterAPI import WebSocketState  # noqa: E402


@app.websocket("/state")
async def state(ws: WebSocket):
    await ws.accept()

    if ws.client_state == WebSocketState.CONNECTED:
        await ws.send_text("still here")


# --- Closing with a code ------------------------------------------------------------------
@app.websocket("/policy")
async def policy(ws: WebSocket):
    await ws.accept()

    await ws.close(code=1008)  # Policy Violation
