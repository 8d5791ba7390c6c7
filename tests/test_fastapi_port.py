"""A FastAPI WebSocket app and its tests, ported by renaming imports only.

The apps in tests/apps/fastapi_port are FastAPI's WebSocket tutorial (echo; cookie or token
dependency raising WebSocketException; a chat ConnectionManager) and its "bigger applications"
router example (APIRouter with prefix, tags, dependencies and responses; include_router with
the same). The first part of this module is FastAPI's own tests of those apps, function bodies
as FastAPI wrote them, under our TestClient. The second runs the same apps under a real
uvicorn, with the `websockets` library as the client.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from FasterAPI import Faster as FastAPI
from FasterAPI.testclient import TestClient
from FasterAPI.websockets import WebSocketDisconnect
from tests.apps.fastapi_port.bigger_app.main import app as bigger_app
from tests.apps.fastapi_port.websockets_tutorial001 import app as tutorial001_app
from tests.apps.fastapi_port.websockets_tutorial002 import app as tutorial002_app
from tests.apps.fastapi_port.websockets_tutorial003 import app as tutorial003_app
from tests.servers import run_uvicorn

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10

# -- FastAPI's tests, under our TestClient ------------------------------------------------------
# (each FastAPI test module made a TestClient per test or per module; the fixtures below do
# the same and also close it)

tutorial001_client = TestClient(tutorial001_app)


@pytest.fixture(scope="module", autouse=True)
def _close_module_clients() -> Iterator[None]:
    yield
    tutorial001_client.close()


@pytest.fixture(name="app")
def get_app() -> FastAPI:
    return tutorial002_app


@pytest.fixture(name="client")
def get_client() -> Iterator[TestClient]:
    client = TestClient(tutorial003_app)
    yield client
    client.close()


def test_tutorial001_main() -> None:
    client = tutorial001_client
    response = client.get("/")
    assert response.status_code == 200
    assert b"<!DOCTYPE html>" in response.content


def test_tutorial001_websocket() -> None:
    client = tutorial001_client
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/ws") as websocket:
            message = "Message one"
            websocket.send_text(message)
            data = websocket.receive_text()
            assert data == f"Message text was: {message}"
            message = "Message two"
            websocket.send_text(message)
            data = websocket.receive_text()
            assert data == f"Message text was: {message}"


def test_tutorial002_main(app: FastAPI) -> None:
    client = TestClient(app)
    response = client.get("/")
    assert response.status_code == 200, response.text
    assert b"<!DOCTYPE html>" in response.content


def test_tutorial002_websocket_with_cookie(app: FastAPI) -> None:
    client = TestClient(app, cookies={"session": "fakesession"})
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/items/foo/ws") as websocket:
            message = "Message one"
            websocket.send_text(message)
            data = websocket.receive_text()
            assert data == "Session cookie or query token value is: fakesession"
            data = websocket.receive_text()
            assert data == f"Message text was: {message}, for item ID: foo"
            message = "Message two"
            websocket.send_text(message)
            data = websocket.receive_text()
            assert data == "Session cookie or query token value is: fakesession"
            data = websocket.receive_text()
            assert data == f"Message text was: {message}, for item ID: foo"


def test_tutorial002_websocket_with_header(app: FastAPI) -> None:
    client = TestClient(app)
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/items/bar/ws?token=some-token") as websocket:
            message = "Message one"
            websocket.send_text(message)
            data = websocket.receive_text()
            assert data == "Session cookie or query token value is: some-token"
            data = websocket.receive_text()
            assert data == f"Message text was: {message}, for item ID: bar"
            message = "Message two"
            websocket.send_text(message)
            data = websocket.receive_text()
            assert data == "Session cookie or query token value is: some-token"
            data = websocket.receive_text()
            assert data == f"Message text was: {message}, for item ID: bar"


def test_tutorial002_websocket_with_header_and_query(app: FastAPI) -> None:
    client = TestClient(app)
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/items/2/ws?q=3&token=some-token") as websocket:
            message = "Message one"
            websocket.send_text(message)
            data = websocket.receive_text()
            assert data == "Session cookie or query token value is: some-token"
            data = websocket.receive_text()
            assert data == "Query parameter q is: 3"
            data = websocket.receive_text()
            assert data == f"Message text was: {message}, for item ID: 2"
            message = "Message two"
            websocket.send_text(message)
            data = websocket.receive_text()
            assert data == "Session cookie or query token value is: some-token"
            data = websocket.receive_text()
            assert data == "Query parameter q is: 3"
            data = websocket.receive_text()
            assert data == f"Message text was: {message}, for item ID: 2"


def test_tutorial002_websocket_no_credentials(app: FastAPI) -> None:
    client = TestClient(app)
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/items/foo/ws"):
            pytest.fail("did not raise WebSocketDisconnect on __enter__")  # pragma: no cover


def test_tutorial002_websocket_invalid_data(app: FastAPI) -> None:
    client = TestClient(app)
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect("/items/foo/ws?q=bar&token=some-token"):
            pytest.fail("did not raise WebSocketDisconnect on __enter__")  # pragma: no cover


def test_tutorial003_websocket_handle_disconnection(client: TestClient) -> None:
    with (
        client.websocket_connect("/ws/1234") as connection,
        client.websocket_connect("/ws/5678") as connection_two,
    ):
        connection.send_text("Hello from 1234")
        data1 = connection.receive_text()
        assert data1 == "You wrote: Hello from 1234"
        data2 = connection_two.receive_text()
        client1_says = "Client #1234 says: Hello from 1234"
        assert data2 == client1_says
        data1 = connection.receive_text()
        assert data1 == client1_says
        connection_two.close()
        data1 = connection.receive_text()
        assert data1 == "Client #5678 left the chat"


# The close codes FastAPI's tests leave implicit, checked here in our words.


def test_tutorial002_refusals_carry_fastapis_close_codes(app: FastAPI) -> None:
    client = TestClient(app)
    try:
        for url in ("/items/foo/ws", "/items/foo/ws?q=bar&token=some-token"):
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect(url):
                    pass  # pragma: no cover - refused
            assert refused.value.code == 1008, url
    finally:
        client.close()


# FastAPI's "bigger applications" tests, in our words (its own compare pydantic's 422 bodies).


@pytest.fixture(scope="module")
def bigger() -> Iterator[TestClient]:
    with TestClient(bigger_app) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "body"),
    [
        ("get", "/users?token=jessica", {}, 200, [{"username": "Rick"}, {"username": "Morty"}]),
        ("get", "/users/foo?token=jessica", {}, 200, {"username": "foo"}),
        ("get", "/users/me?token=jessica", {}, 200, {"username": "fakecurrentuser"}),
        ("get", "/users?token=monica", {}, 400, {"detail": "No Jessica token provided"}),
        ("get", "/items?token=jessica", {"X-Token": "fake-super-secret-token"}, 200,
         {"plumbus": {"name": "Plumbus"}, "gun": {"name": "Portal Gun"}}),
        ("get", "/items/bar?token=jessica", {"X-Token": "fake-super-secret-token"}, 404,
         {"detail": "Item not found"}),
        ("get", "/items/plumbus?token=jessica", {"X-Token": "invalid"}, 400, {"detail": "X-Token header invalid"}),
        ("put", "/items/plumbus?token=jessica", {"X-Token": "fake-super-secret-token"}, 200,
         {"item_id": "plumbus", "name": "The great Plumbus"}),
        ("put", "/items/bar?token=jessica", {"X-Token": "fake-super-secret-token"}, 403,
         {"detail": "You can only update the item: plumbus"}),
        ("post", "/admin/?token=jessica", {"X-Token": "fake-super-secret-token"}, 200,
         {"message": "Admin getting schwifty"}),
        ("post", "/admin/?token=jessica", {"X-Token": "invalid"}, 400, {"detail": "X-Token header invalid"}),
        ("get", "/?token=jessica", {}, 200, {"message": "Hello Bigger Applications!"}),
    ],
)
def test_bigger_application(
    bigger: TestClient, method: str, path: str, headers: dict[str, str], status: int, body: Any
) -> None:
    response = getattr(bigger, method)(path, headers=headers)
    assert (response.status_code, response.json()) == (status, body)


def test_bigger_application_missing_parameters_are_422(bigger: TestClient) -> None:
    assert bigger.get("/").status_code == 422
    missing = bigger.get("/items?token=jessica").json()["detail"]
    assert [error["loc"] for error in missing] == [["header", "x-token"]]


def test_bigger_application_route_metadata() -> None:
    by_path = {(route.path, tuple(sorted(getattr(route, "methods", ())))): route for route in bigger_app.routes}
    update = by_path[("/items/{item_id}", ("PUT",))]
    assert update.tags == ["items", "custom"]
    assert update.responses == {404: {"description": "Not found"}, 403: {"description": "Operation forbidden"}}
    admin = by_path[("/admin/", ("POST",))]
    assert admin.tags == ["admin"] and admin.responses == {418: {"description": "I'm a teapot"}}


# -- the same apps under a real uvicorn ------------------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(run_uvicorn(f"tests.apps.fastapi_port.{name}:app")).ws_url
            for name in ("websockets_tutorial001", "websockets_tutorial002", "websockets_tutorial003")
        }


def test_uvicorn_tutorial001_echo(servers: dict[str, str]) -> None:
    with connect(servers["websockets_tutorial001"] + "/ws", open_timeout=TIMEOUT) as ws:
        ws.send("Message one")
        assert ws.recv(timeout=TIMEOUT) == "Message text was: Message one"


def test_uvicorn_tutorial002_cookie_token_and_refusals(servers: dict[str, str]) -> None:
    base = servers["websockets_tutorial002"]
    with connect(base + "/items/foo/ws", additional_headers={"Cookie": "session=fakesession"}) as ws:
        ws.send("Message one")
        assert ws.recv(timeout=TIMEOUT) == "Session cookie or query token value is: fakesession"
        assert ws.recv(timeout=TIMEOUT) == "Message text was: Message one, for item ID: foo"
    with connect(base + "/items/2/ws?q=3&token=some-token") as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "Session cookie or query token value is: some-token"
        assert ws.recv(timeout=TIMEOUT) == "Query parameter q is: 3"
        assert ws.recv(timeout=TIMEOUT) == "Message text was: hi, for item ID: 2"
    for path in ("/items/foo/ws", "/items/foo/ws?q=bar&token=some-token", "/no/such/ws"):
        with pytest.raises(InvalidStatus) as refused:
            connect(base + path, open_timeout=TIMEOUT)
        assert refused.value.response.status_code == 403, path


def test_uvicorn_tutorial003_chat_and_leaving(servers: dict[str, str]) -> None:
    base = servers["websockets_tutorial003"]
    with connect(base + "/ws/1234") as first:
        with connect(base + "/ws/5678") as second:
            # Both are in the manager's list once each has had its own message back.
            second.send("ready")
            assert second.recv(timeout=TIMEOUT) == "You wrote: ready"
            assert second.recv(timeout=TIMEOUT) == "Client #5678 says: ready"
            assert first.recv(timeout=TIMEOUT) == "Client #5678 says: ready"
            first.send("Hello from 1234")
            assert first.recv(timeout=TIMEOUT) == "You wrote: Hello from 1234"
            assert first.recv(timeout=TIMEOUT) == "Client #1234 says: Hello from 1234"
            assert second.recv(timeout=TIMEOUT) == "Client #1234 says: Hello from 1234"
        assert first.recv(timeout=TIMEOUT) == "Client #5678 left the chat"
        with pytest.raises(TimeoutError):
            first.recv(timeout=0.2)  # and nothing else came: the connection is still open
    with pytest.raises(ConnectionClosed):
        first.recv(timeout=TIMEOUT)


def test_uvicorn_bigger_application() -> None:
    with run_uvicorn("tests.apps.fastapi_port.bigger_app.main:app") as base:

        def get(path: str, headers: dict[str, str]) -> tuple[int, Any]:
            request = urllib.request.Request(base + path, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        assert get("/users/me?token=jessica", {}) == (200, {"username": "fakecurrentuser"})
        assert get("/items/gun?token=jessica", {"X-Token": "fake-super-secret-token"}) == (
            200,
            {"name": "Portal Gun", "item_id": "gun"},
        )
        assert get("/items/gun?token=jessica", {"X-Token": "nope"}) == (400, {"detail": "X-Token header invalid"})
