"""``get_openapi``: the OpenAPI 3.1 document of an app's HTTP routes.

Everything comes from what the router already compiled: each route's :class:`Dependant` tree
says which parameters a request is read from (path, query, header, cookie, body) and with
which types, which security helpers guard it, and what the handler returns. Types become JSON
Schema through msgspec (``schema_components``), all at once, so a Struct used by several
routes is one entry of ``components.schemas`` and unions, tagged unions, ``Meta`` constraints
and renamed fields come out as msgspec validates them.
"""

from __future__ import annotations

import http
import inspect
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec

from ..dependencies import Dependant
from ..params import ParamSource
from ..responses import JSONResponse, Response
from ..routing import BaseRoute, HTTPRoute
from ..security.base import SecurityBase
from .models import HTTPError, HTTPValidationError, OAuth2, scheme_dict

__all__ = ["REF_TEMPLATE", "SchemaRegistry", "get_openapi", "walk"]

#: Where ``$ref``s point: every named schema is in ``components.schemas``.
REF_TEMPLATE = "#/components/schemas/{name}"

_MISSING: Any = msgspec.UNSET
_PATH_KIND = re.compile(r"\{([A-Za-z_]\w*)(?::(\w+))?\}")
_KIND_SCHEMA = {"int": {"type": "integer"}, "float": {"type": "number"}}
_NO_BODY_STATUS = frozenset({204, 304})


class SchemaRegistry:
    """Collects the types a document needs, then builds all their schemas in one msgspec call.

    ``add(tp)`` returns a placeholder dict that ``build()`` fills in place, so the document can
    be assembled before the schemas exist. A type msgspec cannot describe (an arbitrary class)
    gets the empty schema ``{}`` (any value), rather than failing the whole document.
    """

    def __init__(self, ref_template: str = REF_TEMPLATE) -> None:
        self.ref_template = ref_template
        self._pending: list[tuple[Any, dict[str, Any]]] = []

    def add(self, tp: Any) -> dict[str, Any]:
        placeholder: dict[str, Any] = {}
        self._pending.append((tp, placeholder))
        return placeholder

    def build(self) -> dict[str, Any]:
        """Fill every placeholder; returns the named schemas (``components.schemas``)."""
        describable = [(tp, slot) for tp, slot in self._pending if _describable(tp)]
        schemas, components = msgspec.json.schema_components(
            [tp for tp, _ in describable], ref_template=self.ref_template
        )
        for (_, slot), schema in zip(describable, schemas, strict=True):
            slot.update(schema)
        return dict(sorted(components.items()))


def _describable(tp: Any) -> bool:
    try:
        msgspec.json.schema(tp)
    except (TypeError, ValueError):
        return False
    return True


def walk(dependant: Dependant) -> Iterator[Dependant]:
    """``dependant`` and every sub-dependency below it, depth first, each once."""
    seen: set[int] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(sub for _, sub in reversed(current.sub))


def openapi_path(path: str) -> str:
    """``/files/{rest:path}`` -> ``/files/{rest}``: OpenAPI has no converters in templates."""
    return _PATH_KIND.sub(r"{\1}", path)


def _json_default(value: Any) -> Any:
    try:
        return msgspec.to_builtins(value)
    except TypeError:
        return _MISSING


def _parameters(route: BaseRoute, registry: SchemaRegistry) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for dependant in walk(route.dependant):
        for field in dependant.fields:
            where = field.source.value
            if (where, field.key) in seen or not field.param.include_in_schema:
                continue
            seen.add((where, field.key))
            schema = registry.add(field.annotation)
            parameter: dict[str, Any] = {
                "name": field.key,
                "in": where,
                "required": field.source is ParamSource.PATH or field.default is _MISSING,
                "schema": schema,
            }
            if field.default is not _MISSING and field.default is not None:
                default = _json_default(field.default)
                if default is not _MISSING:
                    schema["default"] = default  # beside a $ref too: OpenAPI 3.1 is JSON Schema 2020-12
            if field.param.description:
                parameter["description"] = field.param.description
            if field.param.deprecated:
                parameter["deprecated"] = True
            parameters.append(parameter)
    # A path parameter no handler or dependency reads is still in the template: OpenAPI
    # needs it declared, typed by its converter.
    for name, kind in _PATH_KIND.findall(route.path):
        if ("path", name) not in seen:
            schema = dict(_KIND_SCHEMA.get(kind, {"type": "string"}))
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


def _request_body(route: BaseRoute, registry: SchemaRegistry) -> dict[str, Any] | None:
    for dependant in walk(route.dependant):
        body = dependant.body
        if body is not None and body.param.include_in_schema:
            result: dict[str, Any] = {
                "content": {"application/json": {"schema": registry.add(body.annotation)}},
                "required": body.default is _MISSING,
            }
            if body.param.description:
                result["description"] = body.param.description
            return result
    return _form_body(route, registry)


_BINARY = {"type": "string", "format": "binary"}


def _form_body(route: BaseRoute, registry: SchemaRegistry) -> dict[str, Any] | None:
    """The form the route's Form and File parameters (its dependencies' too) read: multipart
    when one is a file, else urlencoded; one object schema, a property per field."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    multipart = False
    for dependant in walk(route.dependant):
        for field in dependant.form_fields:
            if field.key in properties or not field.param.include_in_schema:
                continue
            if field.file:
                multipart = True
                schema: dict[str, Any] = {"type": "array", "items": dict(_BINARY)} if field.multi else dict(_BINARY)
            else:
                schema = registry.add(field.annotation)
                if field.default is not _MISSING and field.default is not None:
                    default = _json_default(field.default)
                    if default is not _MISSING:
                        schema["default"] = default
            if field.param.description:
                schema["description"] = field.param.description
            properties[field.key] = schema
            if field.default is _MISSING:
                required.append(field.key)
    if not properties:
        return None
    form: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        form["required"] = required
    media_type = "multipart/form-data" if multipart else "application/x-www-form-urlencoded"
    return {"content": {media_type: {"schema": form}}, "required": bool(required)}


def _security(route: BaseRoute, schemes: dict[str, Any]) -> list[dict[str, list[str]]]:
    requirements: list[dict[str, list[str]]] = []
    for dependant in walk(route.dependant):
        helper = dependant.call
        if not isinstance(helper, SecurityBase):
            continue
        # Two helpers with one name (two HTTPBearer()): the first route's definition stands.
        schemes.setdefault(helper.scheme_name, scheme_dict(helper.model))
        # Scopes only mean something to OAuth2 (and OpenID Connect) schemes.
        scopes = list(dependant.security_scopes) if isinstance(helper.model, OAuth2) else []
        requirement = {helper.scheme_name: scopes}
        if requirement not in requirements:
            requirements.append(requirement)
    return requirements


def _response_type(route: HTTPRoute) -> tuple[Any, str | None]:
    """(what the handler's answer holds, its media type); the type is None for no schema."""
    if route.response_model is not None:
        return route.response_model, "application/json"
    returned = route.dependant.return_annotation
    if isinstance(returned, type) and issubclass(returned, Response):
        return None, returned.media_type
    if returned is None or returned is type(None):
        return None, None
    if route.response_class is not None and route.response_class is not JSONResponse:
        media_type = getattr(route.response_class, "media_type", None)
        return (str if media_type and media_type.startswith("text/") else Any), media_type
    return returned, "application/json"


def _phrase(status: int | str) -> str:
    try:
        return http.HTTPStatus(int(status)).phrase
    except ValueError:
        return "Response"


def _responses(route: HTTPRoute, registry: SchemaRegistry, *, validated: bool, secured: bool) -> dict[str, Any]:
    status = route.status_code or 200
    success: dict[str, Any] = {"description": route.response_description}
    tp, media_type = _response_type(route)
    if status not in _NO_BODY_STATUS and media_type is not None:
        success["content"] = {media_type: {"schema": {} if tp is None or tp is Any else registry.add(tp)}}
    responses: dict[str, Any] = {str(status): success}
    if secured:
        responses["401"] = {
            "description": "Not authenticated",
            "content": {"application/json": {"schema": registry.add(HTTPError)}},
        }
    if validated:
        responses["422"] = {
            "description": "Validation Error",
            "content": {"application/json": {"schema": registry.add(HTTPValidationError)}},
        }
    for code, extra in route.responses.items():
        key = str(code)
        entry: dict[str, Any] = dict(responses.get(key, {}))
        options = dict(extra) if isinstance(extra, Mapping) else {}
        model = options.pop("model", None)
        entry.update(options)
        entry.setdefault("description", _phrase(code))
        if model is not None:
            entry.setdefault("content", {})["application/json"] = {"schema": registry.add(model)}
        responses[key] = entry
    return dict(sorted(responses.items()))


def _operation_id(route: HTTPRoute, method: str) -> str:
    if route.operation_id:
        return route.operation_id if len(route.methods - {"HEAD"}) <= 1 else f"{route.operation_id}_{method.lower()}"
    return re.sub(r"\W", "_", f"{route.name}{openapi_path(route.path)}") + f"_{method.lower()}"


def _operation(route: HTTPRoute, method: str, registry: SchemaRegistry, schemes: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {}
    if route.tags:
        operation["tags"] = list(route.tags)
    operation["summary"] = route.summary or route.name.replace("_", " ").title()
    description = route.description or inspect.getdoc(route.endpoint)
    if description:
        operation["description"] = description
    operation["operationId"] = _operation_id(route, method)
    if route.deprecated:
        operation["deprecated"] = True
    parameters = _parameters(route, registry)
    if parameters:
        operation["parameters"] = parameters
    body = _request_body(route, registry)
    if body is not None:
        operation["requestBody"] = body
    security = _security(route, schemes)
    validated = any(d.fields or d.form_fields or d.body is not None for d in walk(route.dependant))
    operation["responses"] = _responses(route, registry, validated=validated, secured=bool(security))
    if security:
        operation["security"] = security
    return operation


def get_openapi(
    *,
    title: str,
    version: str,
    routes: Sequence[BaseRoute],
    openapi_version: str = "3.1.0",
    summary: str | None = None,
    description: str | None = None,
    tags: Sequence[Mapping[str, Any]] | None = None,
    servers: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The OpenAPI document (a JSON-ready dict) of the HTTP ``routes`` that are in the schema."""
    info: dict[str, Any] = {"title": title, "version": version}
    if summary:
        info["summary"] = summary
    if description:
        info["description"] = description
    document: dict[str, Any] = {"openapi": openapi_version, "info": info}
    if servers:
        document["servers"] = [dict(server) for server in servers]
    registry = SchemaRegistry()
    schemes: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, HTTPRoute) or not route.include_in_schema:
            continue
        methods = sorted(route.methods - {"HEAD"} if route.implicit_head else route.methods)
        item = paths.setdefault(openapi_path(route.path), {})
        for method in methods:
            item[method.lower()] = _operation(route, method, registry, schemes)
    document["paths"] = paths
    components: dict[str, Any] = {}
    schemas = registry.build()
    if schemas:
        components["schemas"] = schemas
    if schemes:
        components["securitySchemes"] = dict(sorted(schemes.items()))
    if components:
        document["components"] = components
    if tags:
        document["tags"] = [dict(tag) for tag in tags]
    return document
