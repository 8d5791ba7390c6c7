"""Broadcasts of every shape, for comparing the ASGI and frame-once delivery paths."""

from FasterAPI import Faster, WebSocket, WebSocketDisconnect

app = Faster()

SIZES = (0, 1, 125, 126, 1000, 65535, 65536, 300_000)


@app.websocket("/ws")
async def member(ws: WebSocket) -> None:
    await ws.accept()
    await ws.join("all")
    await ws.send_text("joined")
    try:
        while True:
            command = await ws.receive_text()
            if command == "go":
                for n, size in enumerate(SIZES):
                    await app.broadcast("all", "é" * (size // 2) + str(n))
                    await app.broadcast("all", bytes([n % 256]) * size)
                    await ws.send_text(f"direct {n}")
                await app.broadcast("all", {"done": True, "sizes": list(SIZES)})
    except WebSocketDisconnect:
        pass
