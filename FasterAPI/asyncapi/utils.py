"""The AsyncAPI 3.0 document of an app's WebSocket endpoints.

Each ``@app.websocket`` route is a channel (its address the route's path, with its path
parameters); the messages it declares with ``receives=`` (sent by clients) and ``sends=`` (sent
by the app) are the channel's messages, with a ``receive`` and a ``send`` operation from the
app's point of view. A union of Structs is one message per Struct: AsyncAPI's schema
``discriminator`` is a property name, not OpenAPI's object, so msgspec's tagged-union
discriminators are left out and each message stands alone (its tag field is still in its
payload, as a single-value ``enum``).

Other sources of channels (the realtime endpoint's rooms) add theirs through
:class:`AsyncAPIBuilder`: ``app.asyncapi_sources.append(lambda builder: builder.add_channel(...))``.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from ..openapi.models import APIKey, HTTPBase, HTTPBearer, OAuth2, SecurityScheme
from ..openapi.utils import SchemaRegistry, openapi_path, walk
from ..params import ParamSource
from ..routing import BaseRoute, WebSocketRoute
from ..security.base import SecurityBase

__all__ = ["AsyncAPIBuilder", "AsyncAPISource", "get_asyncapi"]

#: Something that adds channels to the document (called with the builder once per document).
AsyncAPISource = Callable[["AsyncAPIBuilder"], None]

_PATH_KIND = re.compile(r"\{([A-Za-z_]\w*)(?::(\w+))?\}")
_KIND_NAMES = {"int": "an integer", "float": "a number", "path": "the rest of the path", "str": "a string"}


def message_types(declared: Any) -> list[Any]:
    """``A | B`` -> ``[A, B]``: each member of a union is its own message."""
    if declared is None:
        return []
    if typing.get_origin(declared) in (typing.Union, types.UnionType):
        return [member for member in typing.get_args(declared) if member is not type(None)]
    if isinstance(declared, list | tuple):
        return list(declared)
    return [declared]


def _security_scheme(model: SecurityScheme, scopes: Sequence[str]) -> dict[str, Any]:
    """An OpenAPI security scheme in AsyncAPI 3's terms."""
    if isinstance(model, APIKey):
        scheme: dict[str, Any] = {"type": "httpApiKey", "name": model.name, "in": model.in_.value}
    elif isinstance(model, HTTPBearer):
        scheme = {"type": "http", "scheme": "bearer"}
        if model.bearerFormat:
            scheme["bearerFormat"] = model.bearerFormat
    elif isinstance(model, HTTPBase):
        scheme = {"type": "http", "scheme": model.scheme}
    else:
        assert isinstance(model, OAuth2)
        password = model.flows.password
        flows: dict[str, Any] = {}
        if password is not None:
            flows["password"] = {"tokenUrl": password.tokenUrl, "availableScopes": dict(password.scopes)}
            if password.refreshUrl:
                flows["password"]["refreshUrl"] = password.refreshUrl
        scheme = {"type": "oauth2", "flows": flows, "scopes": list(scopes)}
    if model.description:
        scheme["description"] = model.description
    return scheme


def _drop_discriminators(schema: Any) -> None:
    """Remove OpenAPI-style ``discriminator`` objects, which AsyncAPI's schema rejects."""
    if isinstance(schema, dict):
        if isinstance(schema.get("discriminator"), dict):
            del schema["discriminator"]
        for value in schema.values():
            _drop_discriminators(value)
    elif isinstance(schema, list):
        for item in schema:
            _drop_discriminators(item)


class AsyncAPIBuilder:
    """Collects channels, messages and operations, then :meth:`build` makes the document."""

    def __init__(self) -> None:
        self.registry = SchemaRegistry()
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self._message_types: dict[str, Any] = {}
        self.security_schemes: dict[str, dict[str, Any]] = {}

    def _unique(self, taken: Mapping[str, Any], wanted: str) -> str:
        key = re.sub(r"[^A-Za-z0-9_.-]", "_", wanted) or "channel"
        candidate, number = key, 2
        while candidate in taken:
            candidate, number = f"{key}_{number}", number + 1
        return candidate

    def _message(self, tp: Any, fallback_name: str) -> str:
        """The ``components.messages`` key for ``tp`` (a Struct is named after its class)."""
        name = tp.__name__ if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else fallback_name
        for key, known in self._message_types.items():
            if known == tp:
                return key
        key = self._unique(self.messages, name)
        message: dict[str, Any] = {"name": key, "payload": self.registry.add(tp)}
        if isinstance(tp, type) and tp.__doc__ and issubclass(tp, msgspec.Struct):
            message["summary"] = tp.__doc__.strip().splitlines()[0]
        self.messages[key] = message
        self._message_types[key] = tp
        return key

    def add_security(self, name: str, model: SecurityScheme, scopes: Sequence[str] = ()) -> dict[str, str]:
        """Declare a security scheme; returns the reference an operation lists it by."""
        self.security_schemes.setdefault(name, _security_scheme(model, scopes))
        return {"$ref": f"#/components/securitySchemes/{name}"}

    def add_channel(
        self,
        channel_id: str,
        address: str,
        *,
        parameters: Mapping[str, str] | None = None,
        receives: Any = None,
        sends: Any = None,
        title: str | None = None,
        summary: str | None = None,
        description: str | None = None,
        security: Sequence[dict[str, str]] = (),
        tags: Sequence[str] = (),
        bindings: Mapping[str, Any] | None = None,
    ) -> str:
        """Add a channel at ``address`` (``{name}`` for each parameter, described in
        ``parameters``) whose clients send ``receives`` and get ``sends`` (types or unions of
        Structs; each type one message). Returns the channel's key (``channel_id``, made unique)."""
        key = self._unique(self.channels, channel_id)
        channel: dict[str, Any] = {"address": address}
        for field, value in (("title", title), ("summary", summary), ("description", description)):
            if value:
                channel[field] = value
        if parameters:
            channel["parameters"] = {name: {"description": text} for name, text in parameters.items()}
        if bindings:
            channel["bindings"] = dict(bindings)
        messages: dict[str, dict[str, str]] = {}
        for action, declared in (("receive", receives), ("send", sends)):
            names = [self._message(tp, f"{key}_{action}") for tp in message_types(declared)]
            if not names:
                continue
            for name in names:
                messages[name] = {"$ref": f"#/components/messages/{name}"}
            operation: dict[str, Any] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{key}"},
                "summary": "Messages a client sends" if action == "receive" else "Messages the app sends",
                "messages": [{"$ref": f"#/channels/{key}/messages/{name}"} for name in names],
            }
            if security:
                operation["security"] = list(security)
            if tags:
                operation["tags"] = [{"name": tag} for tag in tags]
            self.operations[self._unique(self.operations, f"{key}_{action}")] = operation
        if messages:
            channel["messages"] = messages
        self.channels[key] = channel
        return key

    def add_websocket_route(self, route: WebSocketRoute) -> str:
        """Add ``route`` as a channel (see the module docstring)."""
        parameters = {
            name: f"Path parameter: {_KIND_NAMES.get(kind or 'str', 'a string')}"
            for name, kind in _PATH_KIND.findall(route.path)
        }
        security: list[dict[str, str]] = []
        for dependant in walk(route.dependant):
            helper = dependant.call
            if isinstance(helper, SecurityBase):
                security.append(self.add_security(helper.scheme_name, helper.model, dependant.security_scopes))
        description = route.description or (typing.cast(str, route.endpoint.__doc__) or "").strip() or None
        return self.add_channel(
            route.name,
            openapi_path(route.path),
            parameters=parameters,
            receives=route.receives,
            sends=route.sends,
            summary=route.summary,
            description=description,
            security=security,
            tags=route.tags,
            bindings=self._websocket_binding(route),
        )

    def _websocket_binding(self, route: WebSocketRoute) -> dict[str, Any] | None:
        """The ``ws`` channel binding: the query parameters and headers the handshake is read for."""
        objects: dict[str, dict[str, Any]] = {}
        for dependant in walk(route.dependant):
            for field in dependant.fields:
                where = {ParamSource.QUERY: "query", ParamSource.HEADER: "headers"}.get(field.source)
                if where is None or not field.param.include_in_schema:
                    continue
                target = objects.setdefault(where, {"type": "object", "properties": {}})
                schema = self.registry.add(field.annotation)
                if field.param.description:
                    schema["description"] = field.param.description
                target["properties"][field.key] = schema
                if field.default is msgspec.UNSET:
                    target.setdefault("required", []).append(field.key)
        if not objects:
            return None
        return {"ws": {**objects, "bindingVersion": "0.1.0"}}

    def build(self, *, title: str, version: str, description: str | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"title": title, "version": version}
        if description:
            info["description"] = description
        schemas = self.registry.build()
        for message in self.messages.values():
            _drop_discriminators(message["payload"])
        _drop_discriminators(schemas)
        document: dict[str, Any] = {
            "asyncapi": "3.0.0",
            "info": info,
            "defaultContentType": "application/json",
            "channels": self.channels,
            "operations": self.operations,
        }
        components: dict[str, Any] = {}
        if schemas:
            components["schemas"] = schemas
        if self.messages:
            components["messages"] = self.messages
        if self.security_schemes:
            components["securitySchemes"] = self.security_schemes
        if components:
            document["components"] = components
        return document


def get_asyncapi(
    *,
    title: str,
    version: str,
    routes: Sequence[BaseRoute],
    description: str | None = None,
    sources: Sequence[AsyncAPISource] = (),
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the WebSocket ``routes`` in the schema, plus what each of
    ``sources`` adds."""
    builder = AsyncAPIBuilder()
    for route in routes:
        if isinstance(route, WebSocketRoute) and route.include_in_schema:
            builder.add_websocket_route(route)
    for source in sources:
        source(builder)
    return builder.build(title=title, version=version, description=description)
