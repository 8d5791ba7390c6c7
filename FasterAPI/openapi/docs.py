"""The documentation pages: Swagger UI at ``/docs``, Redoc at ``/redoc`` and ``/asyncapi``.

The viewers are vendored in the package (FasterAPI/static/vendor/, refreshed by
scripts/vendor_assets.py from pinned npm releases) and served by the app itself under
:data:`VENDOR_URL`, so the pages load nothing from another origin and work offline. Redoc 3
renders AsyncAPI 3 as well as OpenAPI, so it is also the AsyncAPI viewer; its telemetry is
turned off.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path
from typing import Any

from ..exceptions import HTTPException
from ..requests import Request
from ..responses import HTMLResponse, Response

__all__ = [
    "VENDOR_URL",
    "get_asyncapi_html",
    "get_redoc_html",
    "get_swagger_ui_html",
    "vendored_asset",
    "vendored_versions",
]

VENDOR_DIR = Path(__file__).resolve().parent.parent / "static" / "vendor"
#: Where the app serves the vendored viewers (``{VENDOR_URL}/{package}/{file}``).
VENDOR_URL = "/_fasterapi/vendor"

_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

#: Swagger UI's options besides the document's URL: no call to the online validator.
SWAGGER_UI_DEFAULT_PARAMETERS: dict[str, Any] = {
    "dom_id": "#swagger-ui",
    "layout": "BaseLayout",
    "deepLinking": True,
    "showExtensions": True,
    "showCommonExtensions": True,
    "validatorUrl": None,
}


@functools.cache
def _manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((VENDOR_DIR / "manifest.json").read_text())
    return manifest


def vendored_versions() -> dict[str, str]:
    """npm package -> the vendored version (from ``manifest.json``)."""
    return {name: entry["version"] for name, entry in _manifest().items()}


@functools.cache
def _asset(package: str, file: str) -> tuple[bytes, str, str]:
    entry = _manifest().get(package)
    if entry is None or file not in entry["files"]:
        raise KeyError(f"{package}/{file}")
    # Only names listed in the manifest are read: no path from the URL reaches the disk.
    content = (VENDOR_DIR / package / file).read_bytes()
    media_type = _MEDIA_TYPES.get(Path(file).suffix, "text/plain; charset=utf-8")
    return content, media_type, f'"{entry["files"][file][:32]}"'


async def vendored_asset(request: Request, package: str, file: str) -> Response:
    """A vendored file, with a strong ETag (its SHA-256) for revalidation; 404 for any other name."""
    try:
        content, media_type, etag = _asset(package, file)
    except KeyError:
        raise HTTPException(404) from None
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media_type, headers=headers)


def _asset_url(root_path: str, package: str, file: str) -> str:
    version = _manifest()[package]["version"]
    # The version in the query string: a new release is a new URL, never a stale cache.
    return f"{root_path}{VENDOR_URL}/{package}/{file}?v={version}"


def get_swagger_ui_html(
    *,
    openapi_url: str,
    title: str,
    root_path: str = "",
    swagger_ui_parameters: dict[str, Any] | None = None,
    init_oauth: dict[str, Any] | None = None,
) -> HTMLResponse:
    """Swagger UI 5 for the document at ``openapi_url``, from the vendored bundle."""
    parameters = {**SWAGGER_UI_DEFAULT_PARAMETERS, **(swagger_ui_parameters or {}), "url": openapi_url}
    oauth = f"ui.initOAuth({_script_json(init_oauth)});" if init_oauth else ""
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{_asset_url(root_path, "swagger-ui-dist", "swagger-ui.css")}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{_asset_url(root_path, "swagger-ui-dist", "swagger-ui-bundle.js")}"></script>
<script>
const ui = SwaggerUIBundle(Object.assign({_script_json(parameters)}, {{
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
}}));
{oauth}
</script>
</body>
</html>
"""
    return HTMLResponse(page)


def _redoc_page(spec_url: str, title: str, root_path: str) -> HTMLResponse:
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<redoc spec-url="{html.escape(spec_url)}" disable-telemetry="true"></redoc>
<script type="module" src="{_asset_url(root_path, "redoc", "redoc.standalone.js")}"></script>
</body>
</html>
"""
    return HTMLResponse(page)


def get_redoc_html(*, openapi_url: str, title: str, root_path: str = "") -> HTMLResponse:
    """Redoc 3 for the OpenAPI document at ``openapi_url`` (telemetry off)."""
    return _redoc_page(openapi_url, title, root_path)


def get_asyncapi_html(*, asyncapi_url: str, title: str, root_path: str = "") -> HTMLResponse:
    """Redoc 3 for the AsyncAPI document at ``asyncapi_url`` (telemetry off)."""
    return _redoc_page(asyncapi_url, title, root_path)


def _script_json(value: Any) -> str:
    # Inside <script>, "</" could end the element early: escape it.
    return json.dumps(value).replace("</", "<\\/")
