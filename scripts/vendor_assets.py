"""Refresh the vendored documentation viewers from npm: ``python scripts/vendor_assets.py``.

Run by a maintainer when bumping a pinned version below, never at run time: the files are
committed under FasterAPI/static/vendor/ (the wheel carries them), each package with its
licence, and ``manifest.json`` records the version and the SHA-256 of every file
(tests/openapi/test_vendor.py checks both). Redoc 3 renders AsyncAPI 3 too, so it also
serves ``/asyncapi``. The AsyncAPI 3.0.0 JSON schema (npm ``@asyncapi/specs``) goes to
tests/openapi/data/ for the tests. Needs ``npm`` (it only runs ``npm pack``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "FasterAPI" / "static" / "vendor"
TEST_DATA = ROOT / "tests" / "openapi" / "data"

#: npm package -> (pinned version, files to keep from its tarball's ``package/``).
PACKAGES: dict[str, tuple[str, list[str]]] = {
    "swagger-ui-dist": ("5.35.0", ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"]),
    "redoc": ("3.0.1", ["bundles/redoc.standalone.js", "LICENSE"]),
}
#: Changes to the vendored files, each (file, upstream bytes, replacement): Redoc 3 loads the
#: Redocly logo of its "API docs by" footer from cdn.redoc.ly; an empty src makes the image
#: fail at once without a request, and Redoc then hides it (its own onError). The manifest
#: records the patched file's hash and the upstream one.
PATCHES: dict[str, list[tuple[str, bytes, bytes]]] = {
    "redoc": [
        ("redoc.standalone.js", b"https://cdn.redoc.ly/redoc/logo-mini-full.svg", b""),
        ("redoc.standalone.js", b"https://cdn.redoc.ly/redoc/logo-mini.svg", b""),
    ],
}
#: The official AsyncAPI JSON schemas; only 3.0.0 is kept, for the tests.
SPECS = (
    "@asyncapi/specs",
    "6.11.1",
    {"schemas/3.0.0.json": "asyncapi-3.0.0.schema.json", "LICENSE": "asyncapi-specs.LICENSE"},
)


def npm_pack(name: str, version: str, into: Path) -> Path:
    """Download ``name@version``'s tarball with ``npm pack`` and unpack it; returns ``package/``."""
    output = subprocess.run(
        ["npm", "pack", "--silent", f"{name}@{version}"], cwd=into, check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    target = into / name.replace("/", "+")
    with tarfile.open(into / output) as tar:
        tar.extractall(target, filter="data")
    return target / "package"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    manifest: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.rmtree(VENDOR, ignore_errors=True)
        for name, (version, files) in PACKAGES.items():
            package = npm_pack(name, version, work)
            found_version = json.loads((package / "package.json").read_text())["version"]
            if found_version != version:
                raise SystemExit(f"npm gave {name} {found_version}, expected {version}")
            destination = VENDOR / name
            destination.mkdir(parents=True)
            hashes = {}
            upstream = {}
            for file in files:
                copied = destination / Path(file).name
                shutil.copyfile(package / file, copied)
                hashes[copied.name] = sha256(copied)
            for file, old, new in PATCHES.get(name, []):
                target = destination / file
                content = target.read_bytes()
                if content.count(old) != 1:
                    raise SystemExit(f"{name}/{file}: expected {old!r} once, found it {content.count(old)} times")
                upstream.setdefault(file, hashes[file])
                target.write_bytes(content.replace(old, new))
                hashes[file] = sha256(target)
            manifest[name] = {"version": version, "license": "LICENSE", "files": hashes}
            if upstream:
                manifest[name]["patched"] = {
                    "why": "no request to cdn.redoc.ly for the footer logo (see PATCHES in scripts/vendor_assets.py)",
                    "upstream_sha256": upstream,
                }
        (VENDOR / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

        name, version, keep = SPECS
        package = npm_pack(name, version, work)
        TEST_DATA.mkdir(parents=True, exist_ok=True)
        for source, target in keep.items():
            shutil.copyfile(package / source, TEST_DATA / target)
    total = sum(f.stat().st_size for f in VENDOR.rglob("*") if f.is_file())
    print(f"vendored {', '.join(f'{n}@{v}' for n, (v, _) in PACKAGES.items())} into {VENDOR} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
