"""WebSocket edge cases served by a real uvicorn in tests/test_websockets.py."""

from FasterAPI import Faster, HTTPException, Query, WebSocket
from FasterAPI.responses import PlainTextResponse

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


class Banned(Exception):
    """Raised by /handled: the app's handler closes with its own code."""


@app.exception_handler(Banned)
async def close_banned(ws: WebSocket, exc: Banned) -> None:
    await ws.close(code=4003, reason=str(exc))


@app.websocket("/handled")
async def handled(ws: WebSocket) -> None:
    await ws.accept()
    raise Banned("banned user")


@app.websocket("/typed/{item_id}")
async def typed(ws: WebSocket, item_id: int) -> None:  # pragma: no cover - /typed/abc never gets here
    await ws.accept()
    await ws.send_text(str(item_id))


@app.websocket("/deny")
async def deny(ws: WebSocket) -> None:
    await ws.send_denial_response(PlainTextResponse("come back later", status_code=503, headers={"Retry-After": "5"}))


@app.websocket("/auth")
async def auth(ws: WebSocket, token: str = Query("")) -> None:
    if token != "secret":
        raise HTTPException(401, "bad token")
    await ws.accept()
    await ws.send_text("welcome")
