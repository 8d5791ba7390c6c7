"""The OpenAPI document: what each part of a route becomes, checked by openapi-spec-validator."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from typing import Annotated, Any

import jsonschema
import msgspec
import pytest
from openapi_spec_validator import validate

from FasterAPI import APIRouter, Depends, Faster, File, Form, Header, Path, Query, UploadFile, WebSocket
from FasterAPI.openapi.utils import get_openapi
from FasterAPI.testclient import TestClient
from tests.apps.openapi_app import app as shop
from tests.servers import run_uvicorn


class Opaque:
    """Nothing msgspec can describe."""


class Point(msgspec.Struct):
    x: Annotated[int, msgspec.Meta(ge=0, description="across")]
    y: int = 0


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    with TestClient(shop) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"] == {
        "title": "Shop",
        "version": "2.0.0",
        "description": "The test shop: **items**, pets, and a chat.",
    }
    assert document["tags"] == [{"name": "items", "description": "Things for sale"}]


def test_every_ref_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    found = refs(document)
    assert "#/components/schemas/Item" in found
    for ref in found:
        assert isinstance(_resolve(document, ref), dict), ref


def test_only_documented_http_routes_are_paths(document: dict[str, Any]) -> None:
    # Not the hidden route, not the WebSocket routes, not the documentation's own routes.
    assert sorted(document["paths"]) == [
        "/admin/stats",
        "/items",
        "/items/{item_id}",
        "/legacy/{name}",
        "/me/basic",
        "/me/cookie",
        "/me/optional",
        "/me/query",
        "/me/scopes",
        "/pets",
        "/text",
    ]
    assert sorted(document["paths"]["/items/{item_id}"]) == ["delete", "get"]  # no implied HEAD


def test_parameters_with_their_sources_types_defaults_and_constraints(document: dict[str, Any]) -> None:
    operation = document["paths"]["/items/{item_id}"]["get"]
    by_name = {p["name"]: p for p in operation["parameters"]}
    assert by_name["item_id"] == {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    assert by_name["q"]["in"] == "query" and by_name["q"]["required"] is False
    assert by_name["q"]["schema"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    # msgspec.Meta constraints reach the schema (and the validation: a 422 below).
    assert by_name["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
    assert by_name["colors"]["description"] == "Filter by color"
    colors = by_name["colors"]["schema"]
    assert colors["type"] == "array"
    assert _resolve(document, colors["items"]["$ref"]) == {"title": "Color", "enum": ["green", "red"]}
    assert by_name["user-agent"]["in"] == "header"
    assert by_name["theme"] == {
        "name": "theme",
        "in": "cookie",
        "required": False,
        "schema": {"enum": ["dark", "light"], "default": "light"},
    }


def test_summary_description_tags_and_operation_id(document: dict[str, Any]) -> None:
    read = document["paths"]["/items/{item_id}"]["get"]
    assert read["summary"] == "Read Item"  # from the function's name, as FastAPI
    assert read["description"] == "Read one item.\n\nThe whole item, with its price."
    assert read["tags"] == ["items"]
    assert read["operationId"] == "read_item_items__item_id__get"
    create = document["paths"]["/items"]["post"]
    assert create["summary"] == "Create an item"
    assert document["paths"]["/legacy/{name}"]["put"]["deprecated"] is True
    assert document["paths"]["/admin/stats"]["get"]["tags"] == ["admin"]


def test_bodies_and_responses_are_component_schemas(document: dict[str, Any]) -> None:
    create = document["paths"]["/items"]["post"]
    assert create["requestBody"] == {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
        "required": True,
    }
    # response_model wins over the return annotation, and the status code is the route's.
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PublicItem"
    }
    item = document["components"]["schemas"]["Item"]
    assert item["description"] == "An item for sale."
    assert item["properties"]["itemName"] == {"type": "string", "minLength": 1, "maxLength": 40}  # renamed
    assert item["required"] == ["itemName", "price"]


def test_a_tagged_union_body_keeps_its_discriminator(document: dict[str, Any]) -> None:
    schema = document["paths"]["/pets"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["anyOf"] == [{"$ref": "#/components/schemas/Cat"}, {"$ref": "#/components/schemas/Dog"}]
    assert schema["discriminator"]["propertyName"] == "type"
    assert document["components"]["schemas"]["Cat"]["properties"]["type"] == {"enum": ["cat"]}


def test_error_responses(document: dict[str, Any]) -> None:
    read = document["paths"]["/items/{item_id}"]["get"]["responses"]
    assert sorted(read) == ["200", "404", "422"]
    assert read["404"] == {
        "description": "No such item",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPError"}}},
    }
    assert read["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HTTPValidationError"}
    # A router's responses reach its routes; a route without parameters has no 422.
    assert sorted(document["paths"]["/admin/stats"]["get"]["responses"]) == ["200", "403", "422"]
    assert sorted(document["paths"]["/text"]["get"]["responses"]) == ["200"]
    assert document["paths"]["/text"]["get"]["responses"]["200"]["content"] == {
        "text/plain": {"schema": {"type": "string"}}
    }
    assert "content" not in document["paths"]["/items/{item_id}"]["delete"]["responses"]["204"]


def test_the_422_schema_matches_the_422_we_send(document: dict[str, Any]) -> None:
    with TestClient(shop) as client:
        answers = [
            client.get("/items/1", params={"limit": "0"}),
            client.get("/items/1", params={"colors": "blue"}),
            client.post("/pets", content=b"{not json"),
            client.post("/pets", json={"type": "cat"}),
            client.post("/pets", json={"type": "cat", "name": "Tom", "lives": 10}),
        ]
    schema = {"$ref": "#/components/schemas/HTTPValidationError", "components": document["components"]}
    for answer in answers:
        assert answer.status_code == 422, answer.text
        jsonschema.validate(answer.json(), schema)
    assert answers[0].json()["detail"][0]["loc"] == ["query", "limit"]


def test_security_schemes_and_requirements(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "APIKeyCookie": {"type": "apiKey", "in": "cookie", "name": "session"},
        "APIKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "APIKeyQuery": {"type": "apiKey", "in": "query", "name": "token"},
        "HTTPBasic": {"type": "http", "scheme": "basic"},
        "HTTPBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "OAuth2PasswordBearer": {
            "type": "oauth2",
            "flows": {
                "password": {
                    "tokenUrl": "/token",
                    "scopes": {"items:read": "Read items", "items:write": "Change items"},
                }
            },
        },
    }
    paths = document["paths"]
    assert paths["/items"]["post"]["security"] == [{"HTTPBearer": []}]
    assert paths["/items/{item_id}"]["delete"]["security"] == [{"APIKeyHeader": []}]
    assert paths["/me/scopes"]["get"]["security"] == [{"OAuth2PasswordBearer": ["items:read"]}]
    assert "401" in paths["/me/basic"]["get"]["responses"]
    assert "security" not in paths["/items/{item_id}"]["get"]


def test_response_model_filters_the_answer() -> None:
    with TestClient(shop) as client:
        created = client.post(
            "/items", json={"itemName": "pear", "price": 2.5, "tags": ["x"]}, headers={"Authorization": "Bearer t"}
        )
    assert created.status_code == 201
    assert created.json() == {"itemName": "pear", "color": "red"}  # no price, no tags


def test_a_parameter_only_a_dependency_reads_and_one_nobody_reads() -> None:
    app = Faster()

    def tenant(tenant: Annotated[str, Path()], x_trace: Annotated[int | None, Header()] = None) -> str:
        return tenant

    router = APIRouter(prefix="/t/{tenant}", dependencies=[Depends(tenant)])

    @router.get("/files/{rest:path}")
    async def files() -> None:
        return None

    @app.get("/unused/{number:float}")
    async def unused(q: Annotated[int, Query(alias="page", include_in_schema=False)] = 1) -> None:
        return None

    app.include_router(router)
    document = get_openapi(title="t", version="1", routes=app.routes)
    validate(document)
    files_op = document["paths"]["/t/{tenant}/files/{rest}"]["get"]
    assert [(p["name"], p["in"]) for p in files_op["parameters"]] == [
        ("tenant", "path"),
        ("x-trace", "header"),
        ("rest", "path"),
    ]
    assert "content" not in files_op["responses"]["200"]  # -> None
    unused_op = document["paths"]["/unused/{number}"]["get"]
    assert unused_op["parameters"] == [{"name": "number", "in": "path", "required": True, "schema": {"type": "number"}}]


def test_the_document_is_built_once_and_can_be_replaced() -> None:
    app = Faster(title="Once")

    @app.get("/a")
    async def a() -> int:
        return 1

    first = app.openapi()
    assert app.openapi() is first
    app.openapi_schema = None

    def custom() -> dict[str, Any]:
        return {"openapi": "3.1.0", "info": {"title": "Custom", "version": "9"}, "paths": {}}

    app.openapi = custom  # type: ignore[method-assign]
    with TestClient(app) as client:
        assert client.get("/openapi.json").json()["info"]["title"] == "Custom"


def test_a_type_msgspec_cannot_describe_is_any_value() -> None:
    app = Faster()

    @app.get("/opaque")
    async def opaque() -> Opaque:
        return Opaque()

    document = app.openapi()
    validate(document)
    assert document["paths"]["/opaque"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {}


def test_struct_defaults_and_meta_on_bodies_round_trip_through_msgspec() -> None:
    app = Faster()

    @app.post("/points")
    async def points(point: Point) -> list[Point]:
        return [point]

    document = app.openapi()
    validate(document)
    assert document["components"]["schemas"]["Point"]["properties"] == {
        "x": {"type": "integer", "minimum": 0, "description": "across"},
        "y": {"type": "integer", "default": 0},
    }
    ok = document["paths"]["/points"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"type": "array", "items": {"$ref": "#/components/schemas/Point"}}


@pytest.mark.timeout(120)
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(tmp_path: pathlib.Path) -> None:
    """schemathesis fuzzes every operation of the shop under a real uvicorn: every answer must
    be a non-5xx one that matches the document (10 examples each, a fixed seed)."""
    with run_uvicorn("tests.apps.openapi_app:app") as url:
        finished = subprocess.run(
            [
                str(pathlib.Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--max-examples",
                "10",
                "--seed",
                "20261201",
                "--phases",
                "examples,coverage,fuzzing",  # not stateful: the shop's operations have no links to follow
                "--workers",
                "1",
                "--request-timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=100,
            cwd=tmp_path,  # its reports and cassettes stay out of the checkout
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
        )
        server_output = url.output()
    assert finished.returncode == 0, f"{finished.stdout}\n{finished.stderr}\n{server_output}"
    assert "12 selected / 12 total" in finished.stdout
    counts = re.search(r"(\d+) generated, (\d+) passed", finished.stdout)
    assert counts is not None and counts.group(1) == counts.group(2) and int(counts.group(1)) > 300, finished.stdout


def test_include_router_can_leave_a_whole_router_out() -> None:
    app = Faster()
    internal = APIRouter()

    @internal.get("/health")
    async def health() -> str:
        return "ok"

    @internal.websocket("/ws/debug")
    async def debug(ws: WebSocket) -> None:
        await ws.close()

    app.include_router(internal, prefix="/internal", include_in_schema=False)
    assert app.openapi()["paths"] == {}
    assert app.asyncapi()["channels"] == {}
    with TestClient(app) as client:
        assert client.get("/internal/health").json() == "ok"


def test_form_and_file_parameters_are_the_request_body() -> None:
    app = Faster()

    def tenant(org: Annotated[str, Form(description="whose files")]) -> str:
        return org

    @app.post("/login")
    async def login(username: Annotated[str, Form()], remember: Annotated[bool, Form()] = False) -> None:
        return None

    @app.post("/upload")
    async def upload(
        report: UploadFile,
        note: Annotated[str, Form(alias="comment")],
        extras: Annotated[list[bytes], File()] = [],  # noqa: B006 - a default, never mutated
        owner: str = Depends(tenant),
        hidden: Annotated[str, Form(include_in_schema=False)] = "",
    ) -> None:
        return None

    document = get_openapi(title="t", version="1", routes=app.routes)
    validate(document)
    login_body = document["paths"]["/login"]["post"]["requestBody"]
    assert login_body == {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"username": {"type": "string"}, "remember": {"type": "boolean", "default": False}},
                    "required": ["username"],
                }
            }
        },
        "required": True,
    }
    upload_body = document["paths"]["/upload"]["post"]["requestBody"]
    assert list(upload_body["content"]) == ["multipart/form-data"]
    schema = upload_body["content"]["multipart/form-data"]["schema"]
    assert schema["properties"] == {
        "report": {"type": "string", "format": "binary"},
        "comment": {"type": "string"},
        "extras": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "org": {"type": "string", "description": "whose files"},
    }
    assert schema["required"] == ["report", "comment", "org"]
    # A form is read like a body: a 422 is documented.
    assert "422" in document["paths"]["/upload"]["post"]["responses"]
