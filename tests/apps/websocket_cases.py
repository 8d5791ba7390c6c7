"""WebSocket edge cases served by a real uvicorn in tests/test_websockets.py."""

from FasterAPI import Faster, WebSocket

app = Faster(allowed_origins=["https://app.example"])


@app.websocket("/crash")
async def crash(ws: WebSocket) -> None:
    await ws.accept()
    await ws.receive_text()
    raise RuntimeError("internal detail that must not reach the client")


@app.websocket("/refuse")
async def refuse(ws: WebSocket) -> None:
    await ws.close(code=1008)


@app.websocket("/json")
async def json_echo(ws: WebSocket) -> None:
    await ws.accept()
    async for data in ws.iter_json():
        await ws.send_json(data)


@app.websocket("/subprotocol")
async def subprotocol(ws: WebSocket) -> None:
    await ws.accept(subprotocol="v2", headers={"x-served-by": "fasterapi"})
    await ws.send_text(ws.headers.get("x-token", ""))
