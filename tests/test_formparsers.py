"""Forms: Form/File parameters, UploadFile, request.form(), limits and malformed bodies."""

from __future__ import annotations

from typing import Annotated

import httpx
import msgspec
import pytest

from FasterAPI import Faster, File, Form, Request, UploadFile, WebSocket
from FasterAPI.testclient import TestClient
from tests.servers import run_uvicorn


def make_app() -> Faster:
    app = Faster()

    @app.post("/login")
    async def login(username: str = Form(), password: str = Form(), remember: bool = Form(False)) -> dict[str, object]:
        return {"username": username, "password_length": len(password), "remember": remember}

    @app.post("/tags")
    async def tags(tag: Annotated[list[str], Form()], count: Annotated[int, Form()] = 0) -> dict[str, object]:
        return {"tags": tag, "count": count}

    @app.post("/upload")
    async def upload(file: UploadFile, note: str = Form("")) -> dict[str, object]:
        content = await file.read()
        return {"filename": file.filename, "type": file.content_type, "size": file.size, "bytes": len(content),
                "note": note}

    @app.post("/uploads")
    async def uploads(files: list[UploadFile] = File()) -> list[str]:
        return [f.filename or "" for f in files]

    @app.post("/raw")
    async def raw(data: bytes = File()) -> dict[str, int]:
        return {"length": len(data)}

    @app.post("/form")
    async def whole_form(request: Request) -> dict[str, str]:
        form = await request.form()
        return {key: str(value) for key, value in form.items()}

    return app


def test_urlencoded_fields_are_converted_like_query_values() -> None:
    client = TestClient(make_app())
    response = client.post("/login", data={"username": "ada", "password": "secret", "remember": "true"})
    assert response.json() == {"username": "ada", "password_length": 6, "remember": True}
    assert client.post("/tags", data={"tag": ["a", "b"], "count": "2"}).json() == {"tags": ["a", "b"], "count": 2}


def test_missing_and_wrong_fields_are_422_in_the_body() -> None:
    client = TestClient(make_app())
    response = client.post("/login", data={"username": "ada", "remember": "maybe"})
    assert response.status_code == 422
    errors = {tuple(e["loc"]): e["type"] for e in response.json()["detail"]}
    assert errors == {("body", "password"): "missing", ("body", "remember"): "bool_parsing"}


def test_multipart_files_and_fields() -> None:
    client = TestClient(make_app())
    response = client.post("/upload", data={"note": "hi"}, files={"file": ("report.csv", b"a,b\n1,2\n", "text/csv")})
    assert response.json() == {"filename": "report.csv", "type": "text/csv", "size": 8, "bytes": 8, "note": "hi"}
    several = client.post("/uploads", files=[("files", ("a.txt", b"a")), ("files", ("b.txt", b"b"))])
    assert several.json() == ["a.txt", "b.txt"]
    assert client.post("/raw", files={"data": ("x.bin", b"\x00" * 1000)}).json() == {"length": 1000}


def test_a_text_field_where_a_file_belongs_is_422() -> None:
    client = TestClient(make_app())
    response = client.post("/upload", data={"file": "not a file"}, files={"other": ("x", b"x")})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


def test_request_form_and_its_errors() -> None:
    client = TestClient(make_app())
    assert client.post("/form", data={"a": "1", "b": "two"}).json() == {"a": "1", "b": "two"}
    wrong_type = client.post("/form", content=b"{}", headers={"content-type": "application/json"})
    assert wrong_type.status_code == 400
    assert "Expected a form" in wrong_type.json()["detail"]
    no_boundary = client.post("/form", content=b"x", headers={"content-type": "multipart/form-data"})
    assert no_boundary.status_code == 400
    assert "boundary" in no_boundary.json()["detail"]
    broken = client.post(
        "/form", content=b"--xx\r\nno headers here", headers={"content-type": "multipart/form-data; boundary=yy"}
    )
    assert broken.status_code == 400


def test_limits_give_400() -> None:
    app = Faster()

    @app.post("/few")
    async def few(request: Request) -> dict[str, int]:
        form = await request.form(max_files=1, max_fields=2, max_part_size=10)
        return {"fields": len(form)}

    client = TestClient(app)
    assert client.post("/few", files=[("a", ("a", b"1"))]).status_code == 200
    too_many_files = client.post("/few", files=[("a", ("a", b"1")), ("b", ("b", b"2"))])
    assert too_many_files.status_code == 400
    assert "Too many files" in too_many_files.json()["detail"]
    assert "Too many fields" in client.post("/few", data={"a": "1", "b": "2", "c": "3"}).json()["detail"]
    big = client.post("/few", data={"a": "x" * 11}, files={"f": ("f", b"")})
    assert "exceeds the maximum size" in big.json()["detail"]


class Item(msgspec.Struct):
    name: str


def test_form_and_json_body_in_one_handler_is_refused() -> None:
    app = Faster()

    async def both(item: Item, name: str = Form()) -> None:
        return None

    with pytest.raises(TypeError, match="one body"):
        app.post("/both")(both)


@pytest.mark.timeout(120)
def test_a_large_upload_through_a_real_server_spools_to_disk() -> None:
    content = bytes(range(256)) * 8192  # 2 MB: over the 1 MB kept in memory
    with run_uvicorn("tests.apps.forms_app:app") as server:
        response = httpx.post(f"{server}/upload", files={"file": ("big.bin", content)}, data={"note": "n"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == {"filename": "big.bin", "size": len(content), "on_disk": True, "same": True, "note": "n"}


def test_form_parameters_on_a_websocket_route_are_refused_when_added() -> None:
    app = Faster()

    async def ws(websocket: WebSocket, name: str = Form()) -> None:
        return None

    with pytest.raises(TypeError, match="only HTTP requests have forms"):
        app.websocket("/ws")(ws)


def test_files_read_with_request_form_are_closed_after_the_response() -> None:
    app = Faster()
    opened: list[UploadFile] = []

    @app.post("/keep")
    async def keep(request: Request) -> dict[str, bool]:
        form = await request.form()
        upload = form["file"]
        assert isinstance(upload, UploadFile)
        opened.append(upload)
        return {"closed": upload.file.closed}

    assert TestClient(app).post("/keep", files={"file": ("a.txt", b"abc")}).json() == {"closed": False}
    assert opened[0].file.closed
