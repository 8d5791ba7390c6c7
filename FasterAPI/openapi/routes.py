"""The routes that serve the documents and their viewers, as ``Faster(...)``'s URLs say.

``openapi_url`` (``/openapi.json``), ``docs_url`` (Swagger UI), ``redoc_url``, ``asyncapi_url``
(``/asyncapi.json``) and ``asyncapi_docs_url`` (its viewer); ``None`` turns one off, and a
viewer needs its document. None of them is in the documents themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ..requests import Request
from ..responses import HTMLResponse, Response
from ..routing import HTTPRoute
from .docs import VENDOR_URL, get_asyncapi_html, get_redoc_html, get_swagger_ui_html, vendored_asset

if TYPE_CHECKING:
    from ..applications import Faster

__all__ = ["DocsSettings", "documentation_routes"]


@dataclass(frozen=True)
class DocsSettings:
    """What ``Faster(title=, version=, openapi_url=, docs_url=...)`` says about its documentation."""

    title: str
    version: str
    summary: str | None
    description: str
    openapi_url: str | None
    docs_url: str | None
    redoc_url: str | None
    asyncapi_url: str | None
    asyncapi_docs_url: str | None
    openapi_tags: Sequence[Mapping[str, Any]] | None
    servers: Sequence[Mapping[str, Any]] | None
    swagger_ui_parameters: Mapping[str, Any] | None

    def __post_init__(self) -> None:
        for viewer, document in (
            ("docs_url", self.openapi_url),
            ("redoc_url", self.openapi_url),
            ("asyncapi_docs_url", self.asyncapi_url),
        ):
            if getattr(self, viewer) is not None and document is None:
                needed = "openapi_url" if viewer != "asyncapi_docs_url" else "asyncapi_url"
                raise ValueError(f"{viewer} shows the document at {needed}: give {needed} too, or {viewer}=None")


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def documentation_routes(app: Faster) -> list[HTTPRoute]:
    """The routes serving ``app``'s documents and viewers (none of them documented)."""
    docs = app.docs
    routes: list[HTTPRoute] = []

    def add(path: str, endpoint: Any, name: str) -> None:
        routes.append(HTTPRoute(path, endpoint, name=name, include_in_schema=False))

    openapi_url, asyncapi_url = docs.openapi_url, docs.asyncapi_url
    if openapi_url is not None:

        async def openapi(request: Request) -> Response:
            return Response(msgspec.json.encode(app.openapi()), media_type="application/json")

        add(openapi_url, openapi, "openapi")
        if docs.docs_url is not None:

            async def swagger_ui_html(request: Request) -> HTMLResponse:
                return get_swagger_ui_html(
                    openapi_url=_root(request) + openapi_url,
                    title=f"{docs.title} - Swagger UI",
                    root_path=_root(request),
                    swagger_ui_parameters=dict(docs.swagger_ui_parameters or {}),
                )

            add(docs.docs_url, swagger_ui_html, "swagger_ui_html")
        if docs.redoc_url is not None:

            async def redoc_html(request: Request) -> HTMLResponse:
                return get_redoc_html(
                    openapi_url=_root(request) + openapi_url, title=f"{docs.title} - ReDoc", root_path=_root(request)
                )

            add(docs.redoc_url, redoc_html, "redoc_html")
    if asyncapi_url is not None:

        async def asyncapi(request: Request) -> Response:
            return Response(msgspec.json.encode(app.asyncapi()), media_type="application/json")

        add(asyncapi_url, asyncapi, "asyncapi")
        if docs.asyncapi_docs_url is not None:

            async def asyncapi_html(request: Request) -> HTMLResponse:
                return get_asyncapi_html(
                    asyncapi_url=_root(request) + asyncapi_url,
                    title=f"{docs.title} - AsyncAPI",
                    root_path=_root(request),
                )

            add(docs.asyncapi_docs_url, asyncapi_html, "asyncapi_html")
    if docs.docs_url or docs.redoc_url or docs.asyncapi_docs_url:
        add(VENDOR_URL + "/{package}/{file}", vendored_asset, "vendored_asset")
    return routes
