"""StaticFiles (mounted with app.mount): files, 304, ranges, traversal, html mode; over a real socket too."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from FasterAPI import Faster
from FasterAPI.staticfiles import StaticFiles
from FasterAPI.testclient import TestClient
from tests.servers import run_uvicorn

CONTENT = b"0123456789abcdefghij"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "docs").mkdir(parents=True)
    (root / "data.txt").write_bytes(CONTENT)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "404.html").write_text("<h1>lost</h1>")
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (root / "docs" / "page.css").write_text("body {}")
    (tmp_path / "secret.txt").write_text("do not serve")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(root / "data.txt", root / "inside.txt")
    return root


def client_for(root: Path, **options: bool) -> TestClient:
    app = Faster()
    app.mount("/static", StaticFiles(directory=root, **options))

    @app.get("/static-route")
    async def route() -> dict[str, bool]:
        return {"route": True}

    return TestClient(app, follow_redirects=False)


def test_a_file_is_served_with_validators_and_type(site: Path) -> None:
    response = client_for(site).get("/static/data.txt")
    assert response.status_code == 200
    assert response.content == CONTENT
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == str(len(CONTENT))
    assert response.headers["etag"].startswith('"')
    assert response.headers["last-modified"].endswith("GMT")
    assert response.headers["accept-ranges"] == "bytes"
    assert client_for(site).get("/static/docs/page.css").headers["content-type"] == "text/css; charset=utf-8"


def test_conditional_requests_get_304(site: Path) -> None:
    client = client_for(site)
    first = client.get("/static/data.txt")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for headers in ({"if-none-match": etag}, {"if-none-match": f'W/{etag}, "other"'}, {"if-modified-since": modified}):
        response = client.get("/static/data.txt", headers=headers)
        assert response.status_code == 304, headers
        assert response.content == b""
        assert response.headers["etag"] == etag
    # If-None-Match wins over If-Modified-Since; a changed tag is a full answer.
    stale_tag = {"if-none-match": '"old"', "if-modified-since": modified}
    assert client.get("/static/data.txt", headers=stale_tag).status_code == 200
    epoch = {"if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT"}
    assert client.get("/static/data.txt", headers=epoch).status_code == 200
    assert client.get("/static/data.txt", headers={"if-modified-since": "not a date"}).status_code == 200


def test_a_range_gets_206(site: Path) -> None:
    client = client_for(site)
    cases = {"bytes=0-3": (b"0123", "bytes 0-3/20"), "bytes=15-": (b"fghij", "bytes 15-19/20"),
             "bytes=-2": (b"ij", "bytes 18-19/20"), "bytes=18-100": (b"ij", "bytes 18-19/20")}
    for header, (body, content_range) in cases.items():
        response = client.get("/static/data.txt", headers={"range": header})
        assert response.status_code == 206, header
        assert response.content == body
        assert response.headers["content-range"] == content_range
        assert response.headers["content-length"] == str(len(body))


def test_several_ranges_come_as_multipart_byteranges(site: Path) -> None:
    response = client_for(site).get("/static/data.txt", headers={"range": "bytes=0-1, 5-6, 6-7"})
    assert response.status_code == 206
    media_type, _, boundary = response.headers["content-type"].partition("; boundary=")
    assert media_type == "multipart/byteranges"
    assert int(response.headers["content-length"]) == len(response.content)
    expected = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/20\r\n\r\n01\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 5-7/20\r\n\r\n567\r\n"
        f"--{boundary}--\r\n"
    )
    assert response.text == expected  # 5-6 and 6-7 overlap: merged into one part


@pytest.mark.parametrize(
    "header", ["bytes=20-", "bytes=5-2", "bytes=abc", "bytes=-0", "bytes=" + ",".join(["1-1"] * 101)]
)
def test_an_unsatisfiable_or_invalid_range_gets_416(site: Path, header: str) -> None:
    response = client_for(site).get("/static/data.txt", headers={"range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */20"


def test_a_range_of_another_unit_or_a_stale_if_range_gets_the_whole_file(site: Path) -> None:
    client = client_for(site)
    assert client.get("/static/data.txt", headers={"range": "items=0-1"}).status_code == 200
    etag = client.get("/static/data.txt").headers["etag"]
    fresh = client.get("/static/data.txt", headers={"range": "bytes=0-1", "if-range": etag})
    assert fresh.status_code == 206
    stale = client.get("/static/data.txt", headers={"range": "bytes=0-1", "if-range": '"old"'})
    assert stale.status_code == 200
    assert stale.content == CONTENT


def test_head_sends_headers_only(site: Path) -> None:
    response = client_for(site).head("/static/data.txt")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(CONTENT))


def test_traversal_and_escaping_symlinks_are_refused(site: Path) -> None:
    client = client_for(site)
    for path in ("/static/../secret.txt", "/static/docs/../../secret.txt", "/static/%2e%2e/secret.txt",
                 "/static/..%2fsecret.txt", "/static/escape.txt", "/static/docs/..\\..\\secret.txt"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"do not serve" not in response.content
    assert client.get("/static/inside.txt").content == CONTENT  # a link inside the directory is fine
    assert client_for(site, follow_symlink=True).get("/static/escape.txt").text == "do not serve"


def test_missing_files_methods_and_directories(site: Path) -> None:
    client = client_for(site)
    assert client.get("/static/nope.txt").status_code == 404
    assert client.get("/static/docs").status_code == 404  # a directory, without html mode
    response = client.post("/static/data.txt")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert client.get("/static-route").json() == {"route": True}  # routes beside mounts still work


def test_html_mode_serves_index_and_404_pages(site: Path) -> None:
    client = client_for(site, html=True)
    assert client.get("/static/").text == "<h1>home</h1>"
    assert client.get("/static/docs/").text == "<h1>docs</h1>"
    assert client.get("/static/docs/").headers["content-type"] == "text/html; charset=utf-8"
    redirect = client.get("/static/docs")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "http://testserver/static/docs/"
    mount_root = client.get("/static")
    assert mount_root.status_code == 307
    assert mount_root.headers["location"] == "http://testserver/static/"
    missing = client.get("/static/no/such/page")
    assert missing.status_code == 404
    assert missing.text == "<h1>lost</h1>"


def test_a_missing_directory_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="does not exist"):
        StaticFiles(directory=tmp_path / "nope")
    StaticFiles(directory=tmp_path / "nope", check_dir=False)


def test_two_mounts_at_one_path_are_refused(site: Path) -> None:
    app = Faster()
    app.mount("/static", StaticFiles(directory=site))
    with pytest.raises(ValueError, match="already mounted"):
        app.mount("/static", StaticFiles(directory=site))
    with pytest.raises(ValueError, match="must start with"):
        app.mount("static", StaticFiles(directory=site))


# -- over a real socket, with paths no client library normalised --------------------------------


def _raw_get(port: int, target: bytes, headers: bytes = b"") -> tuple[int, bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" + headers + b"\r\n")
        received = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, body


@pytest.mark.timeout(120)
def test_over_a_real_socket_304_206_and_no_traversal(site: Path) -> None:
    with run_uvicorn("tests.apps.middleware_app:app", env={"STATIC_DIR": str(site)}) as server:
        status, head, body = _raw_get(server.port, b"/static/data.txt")
        assert (status, body) == (200, CONTENT)
        etag = next(line.split(b": ", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"etag:"))
        status, _, body = _raw_get(server.port, b"/static/data.txt", b"If-None-Match: " + etag + b"\r\n")
        assert (status, body) == (304, b"")
        status, head, body = _raw_get(server.port, b"/static/data.txt", b"Range: bytes=2-5\r\n")
        assert (status, body) == (206, b"2345")
        assert b"content-range: bytes 2-5/20" in head.lower()
        status, _, _ = _raw_get(server.port, b"/static/data.txt", b"Range: bytes=30-40\r\n")
        assert status == 416
        for target in (b"/static/../secret.txt", b"/static/%2e%2e/secret.txt", b"/static/docs/%2E%2E/%2e%2e/secret.txt",
                       b"/static/..%2Fsecret.txt", b"/static/escape.txt"):
            status, _, body = _raw_get(server.port, target)
            assert status == 404, target
            assert b"do not serve" not in body
