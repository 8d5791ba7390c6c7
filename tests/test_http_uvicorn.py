"""The app under a real uvicorn server in a subprocess, spoken to with ``urllib``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.servers import ServerStartError, run_uvicorn

APP = "tests.apps.http_app:app"


def _request(url: str, *, data: bytes | None = None, method: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def _json(body: bytes) -> Any:
    return json.loads(body)


@pytest.fixture(scope="module")
def server() -> Any:
    with run_uvicorn(APP, env={"HTTP_APP_GREETING": "from-env"}, extra_args=["--log-level", "warning"]) as url:
        yield url


def test_typed_path_param(server: str) -> None:
    status, headers, body = _request(f"{server}/items/42?q=hi")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert _json(body) == {"item_id": 42, "q": "hi"}


def test_bad_path_param_is_422(server: str) -> None:
    status, _, body = _request(f"{server}/items/abc")
    assert status == 422
    detail = _json(body)["detail"]
    assert detail[0]["loc"] == ["path", "item_id"]


def test_json_body(server: str) -> None:
    status, _, body = _request(f"{server}/items", data=b'{"name": "pen", "price": 1.5}')
    assert status == 201
    assert _json(body) == {"name": "pen", "price": 1.5, "tags": []}

    status, _, body = _request(f"{server}/items", data=b'{"name": "pen"}')
    assert status == 422
    assert _json(body)["detail"][0]["loc"] == ["body", "price"]


def test_lifespan_state_and_env(server: str) -> None:
    status, _, body = _request(f"{server}/greeting")
    assert status == 200
    assert _json(body)["greeting"] == "from-env"


def test_http_exception_headers_and_head(server: str) -> None:
    status, headers, body = _request(f"{server}/teapot")
    assert status == 418
    assert headers["x-pot"] == "yes"
    assert _json(body) == {"detail": "short and stout"}

    status, headers, body = _request(f"{server}/items/1", method="HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) == len(b'{"item_id":1,"q":null}')


def test_405_and_streaming(server: str) -> None:
    status, headers, _ = _request(f"{server}/items/1", method="DELETE")
    assert status == 405
    assert headers["allow"] == "GET, HEAD"

    status, _, body = _request(f"{server}/stream")
    assert status == 200
    assert body == b"chunk0\nchunk1\nchunk2\n"


def test_server_that_cannot_start_reports_its_output() -> None:
    with pytest.raises(ServerStartError) as info, run_uvicorn("tests.apps.no_such_module:app"):
        pass
    message = str(info.value)
    assert "exited with code" in message
    assert "no_such_module" in message
