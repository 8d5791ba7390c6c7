"""Our HTTP protocols (httptools and h11) in a real uvicorn, driven over raw sockets.

The server runs with a 1 s header deadline (``FASTERAPI_HEADER_TIMEOUT=1``); every wait is a
poll to a generous deadline, so a busy machine makes the tests slower, not red.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from FasterAPI.server.http import MAX_HEADER_BYTES, MAX_HEADERS, MAX_LINE, HeaderBlock, HeadersTooLarge
from tests.servers import RunningServer, run_uvicorn

pytestmark = pytest.mark.timeout(90)

HEADER_TIMEOUT = 1.0
#: How late past the deadline a close may come on a loaded machine.
SLACK = 8.0


MANY_HEADERS = b"".join(b"X-%d: a\r\n" % n for n in range(MAX_HEADERS + 1))
LARGE_HEADERS = b"".join(b"X-%d: %s\r\n" % (n, b"a" * 1000) for n in range(70))  # 70 KB


# -- HeaderBlock ------------------------------------------------------------------------------


def test_a_head_ends_at_its_empty_line_wherever_the_bytes_split() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\nBODY"
    for split in range(1, len(request)):
        block = HeaderBlock()
        first = block.feed(request[:split])
        if first is not None:
            assert first == len(request) - 4
            continue
        end = block.feed(request[split:])
        assert end is not None and split + end == len(request) - 4, split
        assert block.lines == 3


def test_empty_lines_before_the_request_line_are_skipped_and_bare_lf_ends_lines() -> None:
    block = HeaderBlock()
    assert block.feed(b"\r\n\r\nGET / HTTP/1.1\nHost: x\n\nrest") == len(b"\r\n\r\nGET / HTTP/1.1\nHost: x\n\n")


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n", 414, "request_line_too_long"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_LINE, 431, "headers_too_large"),  # no LF yet
        (b"GET / HTTP/1.1\r\n" + MANY_HEADERS, 431, "headers_too_large"),
        (b"GET / HTTP/1.1\r\n" + LARGE_HEADERS, 431, "headers_too_large"),
    ],
    ids=["request line", "header line", "header count", "header bytes"],
)
def test_each_limit_is_enforced_as_bytes_arrive(data: bytes, status: int, reason: str) -> None:
    block = HeaderBlock()
    with pytest.raises(HeadersTooLarge) as caught:
        for start in range(0, len(data), 1000):
            block.feed(data[start : start + 1000])
    assert (caught.value.status, caught.value.reason) == (status, reason)


def test_a_head_at_every_limit_passes() -> None:
    line = b"X: " + b"a" * (MAX_LINE - 5) + b"\r\n"
    assert len(line) == MAX_LINE
    head = b"GET / HTTP/1.1\r\n" + line + b"".join(b"X-%d: a\r\n" % n for n in range(MAX_HEADERS - 1)) + b"\r\n"
    assert len(head) <= MAX_HEADER_BYTES
    assert HeaderBlock().feed(head) == len(head)


# -- a real server --------------------------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=["FasterAPI.server.http:FasterHttpToolsProtocol", "FasterAPI.server.http:FasterH11Protocol"],
    ids=["httptools", "h11"],
)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_uvicorn(
        "tests.apps.http_app:app",
        env={"FASTERAPI_HEADER_TIMEOUT": str(HEADER_TIMEOUT)},
        extra_args=["--http", request.param, "--log-level", "info"],
    ) as running:
        yield running


def connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    _buffers.pop(sock.fileno(), None)
    return sock


_buffers: dict[int, bytes] = {}


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (status, lower-case headers, body by content-length) off ``sock``."""
    data = _buffers.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    body, _buffers[sock.fileno()] = body[:length], body[length:]  # pipelined responses follow
    return int(status_line.split()[1]), headers, body


def closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (reading and dropping whatever it sends)."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def request(path: str, headers: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n"


def test_a_half_sent_request_is_closed_at_the_deadline(server: RunningServer) -> None:
    with connect(server) as idle, connect(server) as partial:
        partial.sendall(b"GET /items/1 HTTP/1.1\r\nHost: te")
        assert closed_after(partial, HEADER_TIMEOUT + SLACK) < HEADER_TIMEOUT + SLACK
        assert closed_after(idle, HEADER_TIMEOUT + SLACK) < HEADER_TIMEOUT + SLACK  # nothing sent at all


def test_the_deadline_is_absolute_a_slow_drip_does_not_stretch_it(server: RunningServer) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.settimeout(0.2)
        try:
            for byte in b"GET /items/1 HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 200:
                sock.send(bytes([byte]))
                try:
                    if sock.recv(1) == b"":
                        break
                except TimeoutError:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - started < HEADER_TIMEOUT + SLACK


def test_a_kept_alive_connection_gets_a_new_deadline_per_request(server: RunningServer) -> None:
    with connect(server) as sock:
        for n in range(3):  # each request well inside the deadline, the three together beyond it
            sock.sendall(request(f"/items/{n}"))
            status, _, body = read_response(sock)
            assert status == 200 and json.loads(body)["item_id"] == n
            time.sleep(HEADER_TIMEOUT / 2)
        sock.sendall(b"GET /items/9 HTTP/1.1\r\n")  # a next request that never ends
        assert closed_after(sock, HEADER_TIMEOUT + SLACK) < HEADER_TIMEOUT + SLACK


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (request("/items/1", b"X-Big: " + b"a" * MAX_LINE + b"\r\n"), 431),
        (request("/items/1", MANY_HEADERS), 431),
        (request("/items/1", LARGE_HEADERS), 431),
        (request("/items/1?q=" + "a" * MAX_LINE), 414),
        (request("/items/1", b"X-Huge: " + b"a" * (20 << 20) + b"\r\n"), 431),  # 20 MiB: refused early
    ],
    ids=["long line", "many headers", "large block", "long request line", "20 MiB"],
)
def test_oversized_heads_are_refused(server: RunningServer, head: bytes, status: int) -> None:
    with connect(server) as sock:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the client finished sending: the answer is still there
        answer, headers, _ = read_response(sock)
        assert answer == status
        assert headers["connection"] == "close"
        assert closed_after(sock, SLACK) < SLACK
    with connect(server) as sock:  # and the server goes on serving
        sock.sendall(request("/items/2"))
        assert read_response(sock)[0] == 200


def test_large_heads_within_the_limits_and_large_bodies_are_served(server: RunningServer) -> None:
    headers = b"".join(b"X-%d: %s\r\n" % (n, b"a" * 400) for n in range(MAX_HEADERS - 2))
    with connect(server) as sock:
        sock.sendall(request("/items/3", headers))
        assert read_response(sock)[0] == 200
        body = json.dumps({"name": "n" * 300_000, "price": 1.5}).encode()
        sock.sendall(
            b"POST /items HTTP/1.1\r\nHost: test\r\ncontent-type: application/json\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        status, _, answer = read_response(sock)
        assert status == 201 and len(json.loads(answer)["name"]) == 300_000


def test_pipelined_requests_are_all_answered(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"".join(request(f"/items/{n}") for n in range(5)))
        assert [json.loads(read_response(sock)[2])["item_id"] for _ in range(5)] == list(range(5))


def test_an_invalid_request_is_refused_with_400(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert read_response(sock)[0] == 400
