"""The documentation routes: their switches, the pages, and the vendored viewers they load."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path

import pytest

from FasterAPI import Faster
from FasterAPI.openapi.docs import VENDOR_DIR, VENDOR_URL, vendored_versions
from FasterAPI.testclient import TestClient
from tests.apps.openapi_app import app as shop
from tests.browser_script import run_browser_script
from tests.servers import run_uvicorn

ROOT = Path(__file__).resolve().parent.parent.parent


def _assets(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def test_the_vendored_viewers_are_the_pinned_versions_with_their_licences() -> None:
    script = (ROOT / "scripts" / "vendor_assets.py").read_text()
    manifest = json.loads((VENDOR_DIR / "manifest.json").read_text())
    assert vendored_versions() == {"swagger-ui-dist": "5.35.0", "redoc": "3.0.1"}
    total = 0
    for package, entry in manifest.items():
        assert f'"{package}": ("{entry["version"]}"' in script  # the script pins what is committed
        licence = (VENDOR_DIR / package / entry["license"]).read_text()
        assert "Copyright" in licence or "Apache License" in licence
        for name, digest in entry["files"].items():
            content = (VENDOR_DIR / package / name).read_bytes()
            assert hashlib.sha256(content).hexdigest() == digest, f"{package}/{name} differs from the manifest"
            total += len(content)
    # Nothing unlisted rides along in the package.
    on_disk = {p.relative_to(VENDOR_DIR).as_posix() for p in VENDOR_DIR.rglob("*") if p.is_file()}
    listed = {f"{package}/{name}" for package, entry in manifest.items() for name in entry["files"]}
    assert on_disk == listed | {"manifest.json"}
    assert total < 5_000_000
    # The recorded patch: Redoc's footer logo is no longer fetched from cdn.redoc.ly.
    assert b"cdn.redoc.ly" not in (VENDOR_DIR / "redoc" / "redoc.standalone.js").read_bytes()
    assert manifest["redoc"]["patched"]["upstream_sha256"]["redoc.standalone.js"] != manifest["redoc"]["files"][
        "redoc.standalone.js"
    ]
    assert "swagger-ui-dist@" not in "".join(on_disk)


def test_swagger_ui_loads_only_same_origin_assets() -> None:
    with TestClient(shop) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>Shop - Swagger UI</title>" in page.text
        assert '"url": "/openapi.json"' in page.text
        assert '"validatorUrl": null' in page.text  # no call to the online validator
        assets = _assets(page.text)
        assert assets == [
            f"{VENDOR_URL}/swagger-ui-dist/swagger-ui.css?v=5.35.0",
            f"{VENDOR_URL}/swagger-ui-dist/swagger-ui-bundle.js?v=5.35.0",
        ]
        for asset in assets:
            served = client.get(asset)
            assert served.status_code == 200
            assert served.content == (VENDOR_DIR / asset.split("?")[0].removeprefix(VENDOR_URL + "/")).read_bytes()
        assert client.get(assets[1]).headers["content-type"] == "text/javascript; charset=utf-8"
        assert client.get(assets[0]).headers["content-type"] == "text/css; charset=utf-8"
    assert "http" not in " ".join(assets)


@pytest.mark.parametrize(("path", "document"), [("/redoc", "/openapi.json"), ("/asyncapi", "/asyncapi.json")])
def test_redoc_pages_with_telemetry_off(path: str, document: str) -> None:
    with TestClient(shop) as client:
        page = client.get(path)
    assert page.status_code == 200
    assert f'<redoc spec-url="{document}" disable-telemetry="true"></redoc>' in page.text
    assert _assets(page.text) == [f"{VENDOR_URL}/redoc/redoc.standalone.js?v=3.0.1"]


def test_assets_revalidate_and_nothing_else_is_served() -> None:
    with TestClient(shop) as client:
        first = client.get(f"{VENDOR_URL}/redoc/LICENSE")
        assert first.status_code == 200 and "MIT" in first.text
        etag = first.headers["etag"]
        again = client.get(f"{VENDOR_URL}/redoc/LICENSE", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        for path in (
            "/redoc/manifest.json",
            "/redoc/..%2Fmanifest.json",
            "/swagger-ui-dist/index.html",
            "/nope/LICENSE",
            "/..%2F..%2Fapplications.py/x",
        ):
            assert client.get(VENDOR_URL + path).status_code == 404, path


def test_root_path_prefixes_the_page_urls() -> None:
    # Behind a proxy that strips /shop (uvicorn --root-path /shop): the TestClient has no root_path.
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/docs",
        "root_path": "/shop",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
    }
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(shop(scope, receive, send))
    assert sent[0]["status"] == 200
    page = b"".join(m.get("body", b"") for m in sent).decode()  # type: ignore[misc]
    assert '"url": "/shop/openapi.json"' in page
    assert f'href="/shop{VENDOR_URL}/swagger-ui-dist/swagger-ui.css?v=5.35.0"' in page


def test_none_turns_each_url_off() -> None:
    app = Faster(docs_url=None, redoc_url="/reference", asyncapi_url=None, asyncapi_docs_url=None)
    with TestClient(app) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/reference").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/asyncapi.json").status_code == 404
        assert client.get("/asyncapi").status_code == 404
    bare = Faster(openapi_url=None, docs_url=None, redoc_url=None, asyncapi_url=None, asyncapi_docs_url=None)
    assert bare.routes == []
    with TestClient(bare) as client:
        assert client.get(f"{VENDOR_URL}/redoc/LICENSE").status_code == 404


def test_a_viewer_without_its_document_is_refused() -> None:
    with pytest.raises(ValueError, match="docs_url shows the document at openapi_url"):
        Faster(openapi_url=None)
    with pytest.raises(ValueError, match="asyncapi_docs_url shows the document at asyncapi_url"):
        Faster(asyncapi_url=None)


def test_swagger_ui_parameters_reach_the_page() -> None:
    app = Faster(swagger_ui_parameters={"docExpansion": "none", "deepLinking": False})
    with TestClient(app) as client:
        page = client.get("/docs").text
    assert '"docExpansion": "none"' in page and '"deepLinking": false' in page


BROWSER_SCRIPT = Path(__file__).resolve().parent / "browser" / "docs_pages.mjs"
PLAYWRIGHT_CORE = ROOT / "tests" / "deploy" / "browser" / "node_modules" / "playwright-core" / "index.mjs"


@pytest.mark.timeout(120)
def test_the_pages_in_chromium_with_no_network_beyond_the_app() -> None:
    """Headless Chromium opens /docs, /redoc and /asyncapi from uvicorn, every request to another
    origin aborted and recorded: none is made, Swagger UI shows every operation, its Authorize
    dialog's bearer token reaches the app through "Try it out", and Redoc renders both documents."""
    with run_uvicorn("tests.apps.openapi_app:app") as url:
        shown = run_browser_script(
            BROWSER_SCRIPT, url, env={"PLAYWRIGHT_CORE": str(PLAYWRIGHT_CORE)}, context=url.output
        )

    assert shown["offOrigin"] == []
    assert shown["consoleErrors"] == []
    documented = {f"{method.upper()} {path}" for path, item in shop.openapi()["paths"].items() for method in item}
    assert sorted(shown["swaggerOperations"]) == sorted(documented)
    assert len(documented) == 12
    assert shown["tryItOut"] == {"status": "200", "body": '{\n  "token": "token-from-the-browser"\n}'}
    for text in ("Shop (2.0.0)", "Adopt a cat or a dog", "Me Optional", "Legacy"):
        assert text in shown["redocText"]
    for text in ("/ws/chat/{room}", "/ws/ticks/{every}", "ChatIn", "Typing", "ChatOut", "Messages the app sends"):
        assert text in shown["asyncapiText"]
    assert f"{VENDOR_URL}/redoc/redoc.standalone.js" in shown["sameOrigin"]
