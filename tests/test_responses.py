"""Response classes, and what handlers' return values become."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest

from FasterAPI import (
    Faster,
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from FasterAPI.responses import RangeNotSatisfiable, parse_range
from FasterAPI.testclient import TestClient
from FasterAPI.types import Message


def _run(response: Response, method: str = "GET") -> list[Message]:
    """Call a response as an ASGI app and return the messages it sends."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(response({"type": "http", "method": method}, receive, send))
    return sent


def _headers(message: Message) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in message["headers"]}


# -- the classes, as ASGI apps -------------------------------------------------------------------


def test_response_bytes_and_headers() -> None:
    response = Response(b"raw", status_code=202, headers={"X-One": "1"}, media_type="application/octet-stream")
    start, body = _run(response)
    assert start["status"] == 202
    assert _headers(start) == {"x-one": "1", "content-length": "3", "content-type": "application/octet-stream"}
    assert body == {"type": "http.response.body", "body": b"raw"}


def test_response_without_content() -> None:
    start, body = _run(Response(status_code=204))
    assert start["status"] == 204
    assert "content-length" not in _headers(start)  # no length on 204/304/1xx
    assert body["body"] == b""
    assert _headers(_run(Response())[0])["content-length"] == "0"


def test_text_and_html_get_a_charset() -> None:
    start, body = _run(PlainTextResponse("héllo"))
    assert _headers(start)["content-type"] == "text/plain; charset=utf-8"
    assert body["body"] == "héllo".encode()
    assert _headers(start)["content-length"] == str(len("héllo".encode()))
    start, _ = _run(HTMLResponse("<p>hi</p>"))
    assert _headers(start)["content-type"] == "text/html; charset=utf-8"


def test_explicit_content_type_wins() -> None:
    start, _ = _run(PlainTextResponse("x", headers={"Content-Type": "text/csv"}))
    assert [v for k, v in start["headers"] if k == b"content-type"] == [b"text/csv"]


class Point(msgspec.Struct):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    label: str


def test_json_response_encodes_structs_and_dataclasses() -> None:
    start, body = _run(JSONResponse({"p": Point(1, 2), "b": Box("a"), "l": [1, None]}, status_code=201))
    assert start["status"] == 201
    assert _headers(start)["content-type"] == "application/json"
    assert msgspec.json.decode(body["body"]) == {"p": {"x": 1, "y": 2}, "b": {"label": "a"}, "l": [1, None]}


def test_redirect_response() -> None:
    start, _ = _run(RedirectResponse("/somewhere else?q=1"))
    assert start["status"] == 307
    assert _headers(start)["location"] == "/somewhere%20else?q=1"
    start, _ = _run(RedirectResponse("https://example.com/a", status_code=301))
    assert start["status"] == 301
    assert _headers(start)["location"] == "https://example.com/a"


def test_cookies() -> None:
    response = Response("x")
    response.set_cookie("session", "a b", max_age=60, httponly=True, secure=True)
    response.delete_cookie("old")
    cookies = [v.decode() for k, v in response.headers.raw if k == b"set-cookie"]
    assert cookies == [
        "session=a%20b; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=lax",
        "old=; Path=/; Max-Age=0; SameSite=lax",
    ]


def test_streaming_response_sync_and_async_iterators() -> None:
    def sync_chunks() -> Iterator[str | bytes]:
        yield "a"
        yield b"b"

    async def async_chunks() -> AsyncIterator[str]:
        for part in ("c", "d"):
            await asyncio.sleep(0)
            yield part

    for content, expected in ((sync_chunks(), [b"a", b"b"]), (async_chunks(), [b"c", b"d"])):
        start, *bodies = _run(StreamingResponse(content, media_type="text/plain", headers={"X-S": "1"}))
        assert start["status"] == 200
        headers = _headers(start)
        assert headers["content-type"] == "text/plain"
        assert headers["x-s"] == "1"
        assert "content-length" not in headers
        assert [b["body"] for b in bodies] == [*expected, b""]
        assert [b["more_body"] for b in bodies] == [True, True, False]


# -- handlers' return values ----------------------------------------------------------------------

app = Faster()


@app.get("/dict")
async def ret_dict() -> dict[str, int]:
    return {"a": 1}


@app.get("/list")
def ret_list() -> list[int]:
    return [1, 2, 3]


@app.get("/struct")
async def ret_struct() -> Point:
    return Point(3, 4)


@app.get("/str")
async def ret_str() -> str:
    return 'say "hi"'


@app.get("/none")
async def ret_none() -> None:
    return None


@app.get("/response")
async def ret_response() -> Response:
    return PlainTextResponse("plain", status_code=203, headers={"X-Custom": "yes"})


@app.post("/created", status_code=201)
async def created() -> Any:
    return {"created": True}


@app.post("/created-but-response", status_code=201)
async def created_but_response() -> Response:
    return JSONResponse({"explicit": True}, status_code=200)


@app.get("/html", response_class=HTMLResponse)
async def html() -> str:
    return "<h1>hi</h1>"


@app.get("/text", response_class=PlainTextResponse, status_code=202)
async def text() -> str:
    return "text"


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def numbers() -> AsyncIterator[str]:
        for i in range(3):
            yield f"{i},"

    return StreamingResponse(numbers(), media_type="text/csv")


@app.get("/sync-stream")
def sync_stream() -> StreamingResponse:
    return StreamingResponse(iter([b"x", b"y"]))


@app.get("/redirect")
async def redirect() -> RedirectResponse:
    return RedirectResponse("/dict", status_code=302)


@app.get("/cookie")
async def cookie() -> Response:
    response = JSONResponse({"ok": True})
    response.set_cookie("flavour", "oat")
    return response


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/dict", b'{"a":1}'),
        ("/list", b"[1,2,3]"),
        ("/struct", b'{"x":3,"y":4}'),
        ("/str", b'"say \\"hi\\""'),
        ("/none", b"null"),
    ],
)
def test_plain_return_values_are_json(client: TestClient, path: str, body: bytes) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(body))


def test_returned_response_is_sent_as_is(client: TestClient) -> None:
    response = client.get("/response")
    assert response.status_code == 203
    assert response.text == "plain"
    assert response.headers["x-custom"] == "yes"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_status_code_applies_to_plain_values_only(client: TestClient) -> None:
    assert client.post("/created").status_code == 201
    response = client.post("/created-but-response")
    assert response.status_code == 200
    assert response.json() == {"explicit": True}


def test_response_class_on_route(client: TestClient) -> None:
    response = client.get("/html")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == "<h1>hi</h1>"
    response = client.get("/text")
    assert response.status_code == 202
    assert response.text == "text"


def test_streaming_through_the_app(client: TestClient) -> None:
    response = client.get("/stream")
    assert response.text == "0,1,2,"
    assert response.headers["content-type"] == "text/csv"
    assert client.get("/sync-stream").content == b"xy"


def test_redirect_through_the_app(client: TestClient) -> None:
    response = client.get("/redirect", follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/dict"
    assert client.get("/redirect").json() == {"a": 1}


def test_cookie_through_the_app(client: TestClient) -> None:
    response = client.get("/cookie")
    assert response.headers["set-cookie"].startswith("flavour=oat;")
    assert client.cookies["flavour"] == "oat"


# -- FileResponse ---------------------------------------------------------------------------------


def test_file_response_guesses_the_type_and_names_the_download(tmp_path: Any) -> None:
    report = tmp_path / "report.csv"
    report.write_bytes(b"a,b\n" * 50_000)  # several chunks
    app = Faster()

    @app.get("/report")
    async def get_report() -> FileResponse:
        return FileResponse(report, filename="report 2024.csv")

    @app.get("/résumé")
    async def get_resume() -> FileResponse:
        return FileResponse(report, filename="résumé.csv", content_disposition_type="inline")

    @app.get("/missing")
    async def missing() -> FileResponse:
        return FileResponse(tmp_path / "nope.bin")

    client = TestClient(app)
    response = client.get("/report")
    assert response.content == b"a,b\n" * 50_000
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="report 2024.csv"'
    assert client.get("/résumé").headers["content-disposition"] == "inline; filename*=utf-8''r%C3%A9sum%C3%A9.csv"
    head = client.head("/report")
    assert head.content == b"" and head.headers["content-length"] == str(200_000)
    with pytest.raises(RuntimeError, match="does not exist"):
        client.get("/missing")


def test_file_response_answers_ranges_and_conditions_itself(tmp_path: Any) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(100)))
    app = Faster()

    @app.get("/data")
    async def get_data() -> FileResponse:
        return FileResponse(data)

    client = TestClient(app)
    full = client.get("/data")
    assert full.headers["content-type"] == "application/octet-stream"
    assert client.get("/data", headers={"if-none-match": full.headers["etag"]}).status_code == 304
    part = client.get("/data", headers={"range": "bytes=10-19"})
    assert (part.status_code, part.content) == (206, bytes(range(10, 20)))
    assert client.get("/data", headers={"range": "bytes=100-"}).status_code == 416


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", [(0, 0)]),
        ("bytes=5-, -3", [(5, 9)]),
        ("bytes=0-1,3-4", [(0, 1), (3, 4)]),
        ("bytes=0-1,2-3", [(0, 3)]),
        ("bytes=8-100", [(8, 9)]),
        ("bytes=-100", [(0, 9)]),
        ("lines=1-2", None),
    ],
)
def test_parse_range(header: str, expected: list[tuple[int, int]] | None) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=3-1", "bytes=x-1", "bytes=-", "bytes=1", "bytes="])
def test_parse_range_refuses(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 10)
