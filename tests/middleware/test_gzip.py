"""GZipMiddleware: what it compresses, what it leaves alone, and events that must not wait."""

from __future__ import annotations

import gzip
import socket
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from FasterAPI import Faster, WebSocket
from FasterAPI.middleware.gzip import GZipMiddleware, accepts_gzip
from FasterAPI.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from FasterAPI.sse import EventSourceResponse, ServerSentEvent
from FasterAPI.testclient import TestClient
from tests.servers import run_uvicorn

TEXT = "all work and no play " * 100


def make_app() -> Faster:
    app = Faster()
    app.add_middleware(GZipMiddleware, minimum_size=100, compresslevel=6)

    @app.get("/big")
    async def big() -> PlainTextResponse:
        return PlainTextResponse(TEXT)

    @app.get("/small")
    async def small() -> PlainTextResponse:
        return PlainTextResponse("tiny")

    @app.get("/encoded")
    async def encoded() -> Response:
        return Response(gzip.compress(TEXT.encode()), headers={"content-encoding": "gzip"})

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[str]:
            for _ in range(3):
                yield TEXT

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/events")
    async def events() -> EventSourceResponse:
        async def items() -> AsyncIterator[ServerSentEvent]:
            yield ServerSentEvent(raw_data=TEXT)

        return EventSourceResponse(items())

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(TEXT)
        await websocket.close()

    return app


def test_a_large_body_is_compressed_for_a_client_that_accepts_gzip() -> None:
    client = TestClient(make_app())
    response = client.get("/big", headers={"accept-encoding": "gzip, deflate"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers["content-length"]) == len(response.content) < len(TEXT)
    assert gzip.decompress(response.content).decode() == TEXT


def test_nothing_is_compressed_when_small_already_encoded_or_not_accepted() -> None:
    client = TestClient(make_app())
    assert "content-encoding" not in client.get("/small", headers={"accept-encoding": "gzip"}).headers
    encoded = client.get("/encoded", headers={"accept-encoding": "gzip"})
    assert gzip.decompress(encoded.content).decode() == TEXT  # compressed once, by the app
    for header in ("identity", "gzip;q=0", "br"):
        response = client.get("/big", headers={"accept-encoding": header})
        assert "content-encoding" not in response.headers, header
        assert response.text == TEXT


def test_a_stream_is_compressed_chunk_by_chunk() -> None:
    response = TestClient(make_app()).get("/stream", headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert "content-length" not in response.headers
    assert zlib.decompress(response.content, 16 + zlib.MAX_WBITS).decode() == TEXT * 3


def test_event_streams_and_websockets_are_never_compressed() -> None:
    client = TestClient(make_app())
    events = client.get("/events", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in events.headers
    assert events.text.startswith("data: all work")
    with client.websocket_connect("/ws", headers={"accept-encoding": "gzip"}) as session:
        assert session.receive_text() == TEXT


@pytest.mark.parametrize(
    ("header", "expected"),
    [(b"gzip", True), (b"GZIP;q=0.5", True), (b"gzip;q=0", False), (b"*", True), (b"*;q=0", False),
     (b"br, *;q=0.1", True), (b"identity", False), (b"gzip;q=0, *", False), (b"", False)],
)
def test_accept_encoding_parsing(header: bytes, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_compresslevel_is_checked() -> None:
    with pytest.raises(ValueError, match="compresslevel"):
        GZipMiddleware(make_app(), compresslevel=11)


# -- over a real socket ---------------------------------------------------------------------------


def _read_until(sock: socket.socket, needle: bytes, deadline: float) -> bytes:
    received = b""
    while needle not in received:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{needle!r} did not arrive; got {received!r}"
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        assert chunk, f"the server closed before {needle!r}; got {received!r}"
        received += chunk
    return received


@pytest.mark.timeout(120)
def test_a_server_sent_event_behind_gzip_reaches_the_client_before_the_stream_ends() -> None:
    """A real uvicorn, a real socket: the stream stays open (its generator idles), yet the
    first event and then keep-alive pings arrive, uncompressed. When the client goes, the
    generator is closed."""
    with run_uvicorn("tests.apps.middleware_app:app") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(
                b"GET /sse HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip\r\n\r\n"
            )
            deadline = time.monotonic() + 60
            received = _read_until(sock, b"id: 1\n\n", deadline)
            head, _, body = received.partition(b"\r\n\r\n")
            assert b"200 OK" in head.split(b"\r\n")[0]
            assert b"content-type: text/event-stream" in head.lower()
            assert b"content-encoding" not in head.lower()
            assert b"event: greeting\ndata: first line\ndata: second line\nid: 1\n\n" in body
            _read_until(sock, b": ping\n\n", deadline)  # the stream is open, and kept alive
        # The client is gone: the server sees the disconnect and the generator's finally runs.
        deadline = time.monotonic() + 60
        while httpx.get(f"{server}/sse/closed", timeout=30).json() != {"closed": 1}:
            assert time.monotonic() < deadline, "the event generator was not closed after the client left"
            time.sleep(0.05)
        compressed = httpx.get(f"{server}/big", headers={"accept-encoding": "gzip"}, timeout=30)
        assert compressed.headers["content-encoding"] == "gzip"
        assert compressed.json() == {"text": "compress me " * 200}


def test_a_compressed_file_gets_a_weak_etag_that_still_validates(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(TEXT)
    app = Faster()
    app.add_middleware(GZipMiddleware)

    @app.get("/page")
    async def get_page() -> FileResponse:
        return FileResponse(page)

    client = TestClient(app)
    plain = client.get("/page")
    compressed = client.get("/page", headers={"accept-encoding": "gzip"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert compressed.headers["etag"] == "W/" + plain.headers["etag"]
    assert zlib.decompress(compressed.content, 16 + zlib.MAX_WBITS).decode() == TEXT
    again = client.get("/page", headers={"accept-encoding": "gzip", "if-none-match": compressed.headers["etag"]})
    assert again.status_code == 304
