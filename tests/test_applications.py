"""Rooms through the app: ws.join/leave, app.broadcast, send_to and presence on the memory backend (TestClient)."""

from __future__ import annotations

import asyncio
import os
from contextlib import nullcontext
from typing import Any

import msgspec
import pytest

from FasterAPI import Faster, History, Position, Request, WebSocket, WebSocketDisconnect
from FasterAPI.pubsub import BackendUnavailable, Gap, InvalidRoomName, PayloadTooLarge
from FasterAPI.pubsub.envelope import MAX_ROOM_NAME_BYTES
from FasterAPI.testclient import TestClient, WebSocketTestSession
from tests.cluster.processes import wait_until


class Chat(msgspec.Struct):
    text: str
    n: int


def rooms_app(**options: Any) -> Faster:
    app = Faster(backend="memory://", **options)

    @app.websocket("/rooms/{room}")
    async def room(ws: WebSocket, room: str) -> None:
        await ws.accept()
        await ws.join(room)
        await ws.send_json({"joined": room, "id": ws.id})
        try:
            async for text in ws.iter_text():
                if text == "leave":
                    await ws.leave(room)
                    await ws.send_text("left")
                elif text.startswith("to:"):
                    target, _, body = text[3:].partition(" ")
                    await app.send_to(target, body)
                elif text.startswith("others:"):
                    await app.broadcast(room, text[7:], exclude=ws)
                else:
                    await app.broadcast(room, text)
        except WebSocketDisconnect:
            pass

    @app.post("/rooms/{room}")
    async def publish(room: str, body: Chat) -> dict[str, int]:
        await app.broadcast(room, body)
        return {"size": await app.room_size(room)}

    @app.get("/rooms/{room}")
    async def presence(room: str) -> dict[str, Any]:
        return {"size": await app.room_size(room), "members": sorted(await app.room_members(room))}

    return app


def join(client: TestClient, room: str) -> tuple[WebSocketTestSession, str]:
    session = client.websocket_connect(f"/rooms/{room}").__enter__()
    hello = session.receive_json()
    assert hello["joined"] == room
    return session, hello["id"]


def test_broadcast_reaches_every_member_of_the_room_and_no_one_else() -> None:
    with TestClient(rooms_app()) as client:
        a, _ = join(client, "red")
        b, _ = join(client, "red")
        c, _ = join(client, "blue")
        a.send_text("hello red")
        assert a.receive_text() == "hello red"
        assert b.receive_text() == "hello red"
        c.send_text("hello blue")
        assert c.receive_text() == "hello blue"
        # b got nothing from blue: the next thing b sees is its own next message.
        b.send_text("second")
        assert b.receive_text() == "second"
        for s in (a, b, c):
            s.__exit__(None, None, None)


def test_payload_kinds_str_bytes_and_json() -> None:
    app = Faster()
    got: dict[str, Any] = {}

    @app.websocket("/ws")
    async def ws_handler(ws: WebSocket) -> None:
        await ws.accept()
        await ws.join("kinds")
        await ws.send_text("ready")
        await ws.receive_text()
        await app.broadcast("kinds", "text")
        await app.broadcast("kinds", b"\x00bin")
        await app.broadcast("kinds", {"json": [1, 2]})
        await app.broadcast("kinds", Chat("hi", 3))
        await ws.receive_text()  # the client's leaving ends it: WebSocketDisconnect, to the test

    with (
        TestClient(app) as client,
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/ws") as session,
    ):
        assert session.receive_text() == "ready"
        session.send_text("go")
        got["text"] = session.receive()
        got["bytes"] = session.receive()
        got["json"] = session.receive()
        got["struct"] = session.receive()
    assert got["text"] == {"type": "websocket.send", "text": "text"}
    assert got["bytes"] == {"type": "websocket.send", "bytes": b"\x00bin"}
    assert got["json"] == {"type": "websocket.send", "text": '{"json":[1,2]}'}
    assert got["struct"] == {"type": "websocket.send", "text": '{"text":"hi","n":3}'}


def test_exclude_skips_the_sender() -> None:
    with TestClient(rooms_app()) as client:
        a, _ = join(client, "r")
        b, _ = join(client, "r")
        a.send_text("others:not for a")
        assert b.receive_text() == "not for a"
        a.send_text("for all")
        assert a.receive_text() == "for all"  # the excluded message never reached a
        assert b.receive_text() == "for all"
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)


def test_send_to_reaches_one_connection() -> None:
    with TestClient(rooms_app()) as client:
        a, a_id = join(client, "r")
        b, b_id = join(client, "r")
        assert a_id != b_id
        a.send_text(f"to:{b_id} psst")
        assert b.receive_text() == "psst"
        b.send_text("public")
        assert a.receive_text() == "public"  # and nothing else arrived at a before it
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)


def test_broadcast_from_http_handler_and_presence() -> None:
    with TestClient(rooms_app()) as client:
        a, a_id = join(client, "lobby")
        b, b_id = join(client, "lobby")
        response = client.post("/rooms/lobby", json={"text": "from http", "n": 1})
        assert response.json() == {"size": 2}
        assert a.receive_json() == {"text": "from http", "n": 1}
        assert b.receive_json() == {"text": "from http", "n": 1}
        assert client.get("/rooms/lobby").json() == {"size": 2, "members": sorted([a_id, b_id])}
        a.send_text("leave")
        assert a.receive_text() == "left"
        assert client.get("/rooms/lobby").json() == {"size": 1, "members": [b_id]}
        b.__exit__(None, None, None)
        wait_until(lambda: client.get("/rooms/lobby").json()["size"] == 0, 5, "the room to empty")
        a.__exit__(None, None, None)


def test_membership_ends_when_the_socket_ends_for_any_reason() -> None:
    app = rooms_app()

    @app.websocket("/crash/{room}")
    async def crash(ws: WebSocket, room: str) -> None:
        await ws.accept()
        await ws.join(room)
        await ws.send_text("in")
        await ws.receive_text()
        raise RuntimeError("handler bug")

    @app.websocket("/server-close/{room}")
    async def server_close(ws: WebSocket, room: str) -> None:
        await ws.accept()
        await ws.join(room)
        await ws.send_text("in")
        await ws.receive_text()
        await ws.close()

    with TestClient(app) as client:
        for path in ("/crash/x", "/server-close/x", "/rooms/x"):
            # The handler's own exception reaches the test when the session ends.
            raised = pytest.raises(RuntimeError, match="handler bug") if path == "/crash/x" else nullcontext()
            with raised, client.websocket_connect(path) as session:
                session.receive()
                assert client.get("/rooms/x").json()["size"] == 1
                if path != "/rooms/x":
                    session.send_text("go")
                    with pytest.raises(WebSocketDisconnect):
                        session.receive_text()
            wait_until(lambda: client.get("/rooms/x").json()["size"] == 0, 5, f"the room to empty after {path}")
        hub = app.hub
        assert hub.rooms == {} and hub.connections == {}
        assert "room:x" not in hub.backend.subscribed_channels  # type: ignore[attr-defined]


def test_room_names_are_validated() -> None:
    app = Faster()

    async def check() -> None:
        await app.hub.start()
        try:
            for bad in ("", "a\x00b", "tab\there", "x" * (MAX_ROOM_NAME_BYTES + 1), "\x7f"):
                with pytest.raises(InvalidRoomName) as error:
                    await app.broadcast(bad, "x")
                assert isinstance(error.value, ValueError)
            await app.broadcast("ünïcode room · ok", "fine")
            await app.broadcast("é" * (MAX_ROOM_NAME_BYTES // 2), "fits")
        finally:
            await app.hub.stop()

    asyncio.run(check())


def test_payload_over_the_limit_is_refused_before_publishing() -> None:
    app = Faster(max_message_size=1000)
    published: list[bytes] = []

    async def check() -> None:
        await app.hub.start()
        backend = app.hub.backend
        real_publish = backend.publish

        async def spy(channel: str, data: bytes, retention: Any = None) -> Any:
            published.append(data)
            return await real_publish(channel, data, retention)

        backend.publish = spy  # type: ignore[method-assign]
        try:
            with pytest.raises(PayloadTooLarge, match="1001 bytes"):
                await app.broadcast("r", "x" * 1001)
            assert published == []
            await app.broadcast("r", "x" * 1000)
            assert len(published) == 1
        finally:
            await app.hub.stop()

    asyncio.run(check())


def test_broadcast_after_stop_fails_fast_with_backend_unavailable() -> None:
    app = Faster()

    async def check() -> None:
        await app.hub.start()
        await app.hub.backend.stop()
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(app.broadcast("r", "x"), timeout=1)
        await app.hub.stop()

    asyncio.run(check())


def test_unknown_backend_scheme_lists_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"memory://, nats://, redis://, redis\+cluster://, redis\+sentinel://, rediss://"):
        _ = Faster(backend="kafka://broker").hub


def test_backend_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTERAPI_BACKEND", "kafka://x")
    with pytest.raises(ValueError, match="kafka://x"):
        _ = Faster().hub
    monkeypatch.setenv("FASTERAPI_BACKEND", "memory://")
    assert type(Faster().hub.backend).__name__ == "MemoryBackend"
    assert os.environ["FASTERAPI_BACKEND"] == "memory://"


def test_connection_ids_are_unique_and_name_their_worker() -> None:
    with TestClient(rooms_app()) as client:
        sessions = [join(client, "ids") for _ in range(5)]
        ids = [connection_id for _, connection_id in sessions]
        assert len(set(ids)) == 5
        worker = client.app.hub.worker_id  # type: ignore[attr-defined]
        assert all(i.startswith(worker + ".") for i in ids)
        for session, _ in sessions:
            session.__exit__(None, None, None)


def history_app() -> Faster:
    app = Faster(backend="memory://", history=History(size=100, ttl=60))
    app.state.gaps = []

    @app.on_room_gap
    def record_gap(room: str, gap: Gap) -> None:
        app.state.gaps.append((room, gap))

    @app.websocket("/feed/{room}")
    async def feed(ws: WebSocket, room: str, offset: int | None = None, epoch: str | None = None) -> None:
        await ws.accept()
        since = None if offset is None or epoch is None else Position(offset, epoch)
        result = await ws.join(room, since=since)
        await ws.send_json({"joined": result})
        try:
            async for text in ws.iter_text():
                await app.broadcast(room, text)
        except WebSocketDisconnect:
            pass

    @app.post("/feed/{room}")
    async def post(room: str, body: Chat) -> Position | None:
        return await app.broadcast(room, body)

    @app.get("/feed/{room}")
    async def history(room: str, offset: int | None = None, epoch: str | None = None) -> list[Any]:
        since = None if offset is None or epoch is None else Position(offset, epoch)
        return [[position, data] for position, data in await app.room_history(room, since=since, limit=3)]

    return app


def test_a_client_that_reconnects_with_its_last_position_misses_nothing() -> None:
    with TestClient(history_app()) as client:
        with client.websocket_connect("/feed/news") as first:
            hello = first.receive_json()["joined"]
            assert hello["recovered"] is False and hello["position"]["offset"] == 0
            positions = [client.post("/feed/news", json={"text": f"m{n}", "n": n}).json() for n in range(1, 4)]
            assert [p["offset"] for p in positions] == [1, 2, 3]
            seen = [first.receive_json() for _ in range(3)]
            assert [m["n"] for m in seen] == [1, 2, 3]
        for n in range(4, 6):  # sent while the client is away
            client.post("/feed/news", json={"text": f"m{n}", "n": n})
        last = positions[-1]
        with client.websocket_connect(f"/feed/news?offset={last['offset']}&epoch={last['epoch']}") as again:
            # The replay is on its way to the socket when join() returns, so it comes first.
            assert [again.receive_json()["n"] for _ in range(2)] == [4, 5]
            joined = again.receive_json()["joined"]
            assert joined == {"recovered": True, "position": {"offset": 5, "epoch": last["epoch"]}}
            again.send_text("live")
            assert again.receive_text() == "live"
        kept = client.get("/feed/news").json()
        assert [data["n"] for _, data in kept[:2]] == [4, 5] and kept[2][1] == "live"
        after_two = client.get(f"/feed/news?offset=2&epoch={last['epoch']}").json()
        assert [position["offset"] for position, _ in after_two] == [3, 4, 5]
        stale = f"/feed/news?offset=1&epoch=not-{last['epoch']}"
        with client.websocket_connect(stale) as wrong_epoch:
            assert wrong_epoch.receive_json()["joined"]["recovered"] is False


def test_history_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTERAPI_HISTORY_SIZE", "7")
    monkeypatch.setenv("FASTERAPI_HISTORY_TTL", "9.5")
    assert Faster().hub.history == History(size=7, ttl=9.5)
    monkeypatch.setenv("FASTERAPI_HISTORY_SIZE", "0")
    assert Faster().hub.history is None
    monkeypatch.setenv("FASTERAPI_HISTORY_SIZE", "-1")
    with pytest.raises(ValueError, match="history_size"):
        _ = Faster().hub
    with pytest.raises(ValueError, match="History size"):
        History(size=0)


def test_unknown_keyword_arguments_are_refused_at_construction() -> None:
    """A ported keyword Faster does not take must fail where it is written, not run without it."""
    with pytest.raises(TypeError) as refused:
        Faster(default_response_class=None, routes=[])
    message = str(refused.value)
    assert "'default_response_class', 'routes'" in message
    assert "send_queue_size" in message  # and it says what is taken
    app = Faster(send_queue_size=8, overflow="drop_oldest", history_size=0, presence_ttl=10.0)
    assert app.hub.config.send_queue_size == 8


# -- app.mount ------------------------------------------------------------------------------------


def test_a_mounted_app_serves_its_prefix_with_its_own_routes_and_middleware() -> None:
    from FasterAPI.middleware.gzip import GZipMiddleware

    admin = Faster()
    admin.add_middleware(GZipMiddleware, minimum_size=1)

    @admin.get("/users/{user_id}")
    async def user(user_id: int, request: Request) -> dict[str, Any]:
        return {"id": user_id, "url": str(request.url), "root_path": request.scope["root_path"]}

    @admin.websocket("/live")
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.scope["path"])
        await websocket.close()

    app = Faster()
    app.mount("/admin", admin)

    @app.get("/admin-page")
    async def page() -> dict[str, bool]:
        return {"main": True}

    client = TestClient(app)
    response = client.get("/admin/users/3", headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"  # the mounted app's own middleware
    import gzip

    assert msgspec.json.decode(gzip.decompress(response.content)) == {
        "id": 3,
        "url": "http://testserver/admin/users/3",
        "root_path": "/admin",
    }
    assert client.get("/admin-page").json() == {"main": True}  # not under /admin/
    assert client.get("/admin/nope").status_code == 404  # the mounted app's own 404
    with client.websocket_connect("/admin/live") as session:
        assert session.receive_text() == "/live"
