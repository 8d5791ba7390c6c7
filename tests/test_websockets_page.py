"""Every example of the WebSockets docs page, through a real uvicorn server and a real client,
and again through the TestClient (examples/websockets_page.py holds them unchanged)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from examples.websockets_page import app
from FasterAPI import WebSocketDisconnect
from FasterAPI.testclient import TestClient
from tests.servers import run_uvicorn

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with run_uvicorn("examples.websockets_page:app") as base_url:
        yield base_url.replace("http://", "ws://")


def open_ws(server: str, path: str) -> ClientConnection:
    return connect(server + path, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=TIMEOUT)
    return closed.value.rcvd.code if closed.value.rcvd else None


# -- real server -----------------------------------------------------------------------------


def test_echo(server: str) -> None:
    with open_ws(server, "/ws") as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "Echo: hello"
        ws.send("again")
        assert ws.recv(timeout=TIMEOUT) == "Echo: again"


def test_receiving_text_binary_and_raw(server: str) -> None:
    with open_ws(server, "/receiving") as ws:
        ws.send("t")
        ws.send(b"\x00\xff")
        ws.send("raw one")
        reply = json.loads(ws.recv(timeout=TIMEOUT))
    assert reply == {"text": "t", "bytes": "00ff", "raw": {"type": "websocket.receive", "text": "raw one"}}


def test_sending_text_bytes_json(server: str) -> None:
    with open_ws(server, "/sending") as ws:
        assert ws.recv(timeout=TIMEOUT) == "hello"
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01"
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {"type": "update", "payload": 42}
        assert close_code(ws) == 1000  # the handler returned: closed normally


def test_disconnection_is_seen_by_the_handler(server: str) -> None:
    with open_ws(server, "/chat") as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "You said: hi"
    # The handler printed "Client disconnected"; the server keeps serving.
    with open_ws(server, "/chat") as ws:
        ws.send("still up?")
        assert ws.recv(timeout=TIMEOUT) == "You said: still up?"


def test_path_parameters(server: str) -> None:
    with open_ws(server, "/rooms/kitchen") as ws:
        assert ws.recv(timeout=TIMEOUT) == "Joined room kitchen"
        assert close_code(ws) == 1000


def test_single_process_broadcast_pattern(server: str) -> None:
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(open_ws(server, "/broadcast")) for _ in range(3)]
        # Make sure every handler appended its socket before the real message.
        for i, ws in enumerate(clients):
            ws.send(f"hello from {i}")
            for other in clients:
                assert other.recv(timeout=TIMEOUT) == f"hello from {i}"
        clients[0].send("to everyone")
        for ws in clients:
            assert ws.recv(timeout=TIMEOUT) == "to everyone"


def test_client_state(server: str) -> None:
    with open_ws(server, "/state") as ws:
        assert ws.recv(timeout=TIMEOUT) == "still here"


def test_close_with_policy_violation_reaches_the_client(server: str) -> None:
    with open_ws(server, "/policy") as ws:
        assert close_code(ws) == 1008


def test_unknown_path_is_rejected_and_the_server_keeps_serving(server: str) -> None:
    with pytest.raises(InvalidStatus) as rejected:
        open_ws(server, "/no-such-route")
    assert rejected.value.response.status_code == 403
    with open_ws(server, "/ws") as ws:
        ws.send("alive")
        assert ws.recv(timeout=TIMEOUT) == "Echo: alive"


def test_binary_frame_to_a_text_handler_closes_that_socket_only(server: str) -> None:
    with open_ws(server, "/ws") as bystander, open_ws(server, "/ws") as offender:
        offender.send(b"\x01")
        assert close_code(offender) == 1003
        bystander.send("fine")
        assert bystander.recv(timeout=TIMEOUT) == "Echo: fine"


# -- TestClient ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def test_testclient_echo(client: TestClient) -> None:
    # The endpoint's `while True` loop ends with the client's leaving: its WebSocketDisconnect
    # reaches the test, as with FastAPI's TestClient.
    with pytest.raises(WebSocketDisconnect) as left:
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "Echo: hello"
    assert left.value.code == 1000


def test_testclient_receiving(client: TestClient) -> None:
    with client.websocket_connect("/receiving") as ws:
        ws.send_text("t")
        ws.send_bytes(b"\x00\xff")
        ws.send_text("raw one")
        assert ws.receive_json() == {
            "text": "t",
            "bytes": "00ff",
            "raw": {"type": "websocket.receive", "text": "raw one"},
        }


def test_testclient_sending(client: TestClient) -> None:
    with client.websocket_connect("/sending") as ws:
        assert ws.receive_text() == "hello"
        assert ws.receive_bytes() == b"\x00\x01"
        assert ws.receive_json() == {"type": "update", "payload": 42}
        assert ws.receive() == {"type": "websocket.close", "code": 1000, "reason": ""}


def test_testclient_chat_disconnect(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    with client.websocket_connect("/chat") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "You said: hi"
    assert "Client disconnected" in capsys.readouterr().out


def test_testclient_path_parameters(client: TestClient) -> None:
    with client.websocket_connect("/rooms/kitchen") as ws:
        assert ws.receive_text() == "Joined room kitchen"


def test_testclient_broadcast(client: TestClient) -> None:
    with client.websocket_connect("/broadcast") as a, client.websocket_connect("/broadcast") as b:
        b.send_text("b is in")  # once b's handler echoes this, both sockets are in the list
        assert b.receive_text() == "b is in"
        a.send_text("to both")
        first = a.receive_text()
        if first == "b is in":
            first = a.receive_text()
        assert first == "to both"
        assert b.receive_text() == "to both"


def test_testclient_state_and_policy(client: TestClient) -> None:
    with client.websocket_connect("/state") as ws:
        assert ws.receive_text() == "still here"
    with client.websocket_connect("/policy") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1008


def test_testclient_unknown_path(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        client.websocket_connect("/no-such-route").__enter__()
    assert refused.value.code == 1000
