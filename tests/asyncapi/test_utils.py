"""The AsyncAPI document, validated against the official AsyncAPI 3.0.0 JSON schema.

The schema is npm's ``@asyncapi/specs`` 6.11.1 ``schemas/3.0.0.json`` (vendored into
tests/openapi/data by scripts/vendor_assets.py, with its licence): one file whose definitions
carry their own ``$id``s, which ``referencing`` resolves without any network.
"""

from __future__ import annotations

import json
import pathlib
from typing import Annotated, Any, Literal

import jsonschema
import msgspec
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT7

from FasterAPI import Faster, Header, Query, WebSocket
from FasterAPI.asyncapi import AsyncAPIBuilder, get_asyncapi
from FasterAPI.testclient import TestClient
from tests.apps.openapi_app import ChatIn, ChatOut, Typing
from tests.apps.openapi_app import app as shop

SCHEMA_FILE = pathlib.Path(__file__).resolve().parent.parent / "openapi" / "data" / "asyncapi-3.0.0.schema.json"


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    resources = [(schema["$id"], DRAFT7.create_resource(schema))]
    resources += [(d["$id"], DRAFT7.create_resource(d)) for d in schema.get("definitions", {}).values() if "$id" in d]
    return jsonschema.Draft7Validator(schema, registry=Registry().with_resources(resources))


def assert_valid_asyncapi(document: dict[str, Any]) -> None:
    """Valid against AsyncAPI 3.0.0, and every ``$ref`` of the document points at something."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    for ref in _refs(document):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    with TestClient(shop) as client:
        response = client.get("/asyncapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_the_validator_rejects_what_asyncapi_forbids() -> None:
    # The validator is really checking: an OpenAPI-style discriminator object is refused.
    bad = {
        "asyncapi": "3.0.0",
        "info": {"title": "t", "version": "1"},
        "components": {"schemas": {"X": {"type": "object", "discriminator": {"propertyName": "type"}}}},
    }
    assert list(_validator().iter_errors(bad))
    assert list(_validator().iter_errors({"asyncapi": "3.0.0", "info": {"title": "t"}}))


def test_the_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    assert_valid_asyncapi(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "Shop"


def test_each_websocket_route_is_a_channel_with_its_path_parameters(document: dict[str, Any]) -> None:
    assert sorted(document["channels"]) == ["chat", "private", "ticks"]
    chat = document["channels"]["chat"]
    assert chat["address"] == "/ws/chat/{room}"
    assert chat["parameters"] == {"room": {"description": "Path parameter: a string"}}
    assert chat["description"] == "Chat in a room: say lines, see everyone's."
    ticks = document["channels"]["ticks"]
    assert ticks["address"] == "/ws/ticks/{every}"
    assert ticks["parameters"] == {"every": {"description": "Path parameter: an integer"}}
    assert "messages" not in ticks  # it declares none


def test_messages_in_both_directions_each_struct_its_own(document: dict[str, Any]) -> None:
    chat = document["channels"]["chat"]
    assert chat["messages"] == {
        "ChatIn": {"$ref": "#/components/messages/ChatIn"},
        "Typing": {"$ref": "#/components/messages/Typing"},
        "ChatOut": {"$ref": "#/components/messages/ChatOut"},
    }
    operations = document["operations"]
    assert operations["chat_receive"]["action"] == "receive"  # the app receives what clients send
    assert operations["chat_receive"]["messages"] == [
        {"$ref": "#/channels/chat/messages/ChatIn"},
        {"$ref": "#/channels/chat/messages/Typing"},
    ]
    assert operations["chat_send"]["action"] == "send"
    assert operations["chat_send"]["messages"] == [{"$ref": "#/channels/chat/messages/ChatOut"}]
    message = document["components"]["messages"]["ChatIn"]
    assert message == {
        "name": "ChatIn",
        "payload": {"$ref": "#/components/schemas/ChatIn"},
        "summary": "A line a client says in the room.",
    }
    # The tag is in each payload, with no discriminator object anywhere.
    assert document["components"]["schemas"]["ChatIn"]["properties"]["type"] == {"enum": ["say"]}
    assert "discriminator" not in json.dumps(document)


def test_security_of_a_websocket_route(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"] == {
        "APIKeyQuery": {"type": "httpApiKey", "name": "token", "in": "query"},
        "HTTPBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    }
    # A route that declares no messages has no operations.
    assert [op for op in document["operations"].values() if op["channel"]["$ref"] == "#/channels/private"] == []
    assert document["operations"]["chat_receive"]["security"] == [{"$ref": "#/components/securitySchemes/APIKeyQuery"}]


def test_the_messages_are_what_the_route_really_exchanges() -> None:
    with TestClient(shop) as client, client.websocket_connect("/ws/chat/lobby?token=ann") as ws:
        ws.send_text(msgspec.json.encode(Typing()).decode())
        ws.send_text(msgspec.json.encode(ChatIn(text="hi")).decode())
        assert msgspec.json.decode(ws.receive_text(), type=ChatOut) == ChatOut(author="ann", text="hi")


class Nested(msgspec.Struct):
    inner: ChatIn | Typing


def test_nested_tagged_unions_and_other_sources_of_channels() -> None:
    app = Faster(title="Hooks", version="1")

    @app.websocket("/ws/nested", receives=Nested, sends=str)
    async def nested(ws: WebSocket) -> None:
        await ws.close()

    def rooms(builder: AsyncAPIBuilder) -> None:
        builder.add_channel("room_news", "/realtime", receives=ChatIn, sends=ChatOut | Typing, title="news")

    app.asyncapi_sources.append(rooms)
    document = app.asyncapi()
    assert_valid_asyncapi(document)
    assert document["channels"]["room_news"]["title"] == "news"
    # ChatIn is one message, shared by the route's schema and the room's channel.
    assert sorted(document["components"]["messages"]) == ["ChatIn", "ChatOut", "Nested", "Typing", "nested_send"]
    assert document["components"]["messages"]["nested_send"]["payload"] == {"type": "string"}
    assert document["components"]["schemas"]["Nested"]["properties"]["inner"] == {
        "anyOf": [{"$ref": "#/components/schemas/ChatIn"}, {"$ref": "#/components/schemas/Typing"}]
    }


def test_hidden_routes_and_an_empty_app() -> None:
    app = Faster()

    @app.websocket("/ws/secret", include_in_schema=False)
    async def secret(ws: WebSocket) -> None:
        await ws.close()

    document = get_asyncapi(title="Empty", version="0", routes=app.routes)
    assert_valid_asyncapi(document)
    assert document["channels"] == {} and document["operations"] == {}


def test_query_parameters_and_headers_are_the_channels_ws_binding() -> None:
    app = Faster()

    @app.websocket("/ws/feed/{topic}", sends=ChatOut)
    async def feed(
        ws: WebSocket,
        topic: str,
        since: int = 0,
        compact: Annotated[bool, Query(description="Shorter messages")] = False,
        client_version: Annotated[str, Header()] = "1",
        lang: Annotated[Literal["en", "fr"], Query()] = "en",
        room_key: str = Query(),
    ) -> None:
        await ws.close()

    document = app.asyncapi()
    assert_valid_asyncapi(document)
    binding = document["channels"]["feed"]["bindings"]["ws"]
    assert binding["bindingVersion"] == "0.1.0"
    assert binding["query"] == {
        "type": "object",
        "properties": {
            "since": {"type": "integer"},
            "compact": {"type": "boolean", "description": "Shorter messages"},
            "lang": {"enum": ["en", "fr"]},
            "room_key": {"type": "string"},
        },
        "required": ["room_key"],
    }
    assert binding["headers"] == {"type": "object", "properties": {"client-version": {"type": "string"}}}
    assert "bindings" not in document["channels"].get("ticks", {})
