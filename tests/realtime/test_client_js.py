"""The browser client, FasterAPI/realtime/client.js: its size budget, and its unit tests in Node.

The unit tests (tests/realtime/client.test.mjs) drive the client against a scripted fake
server with mocked timers; the browser test in tests/realtime/test_browser_resume.py runs it
for real, in Chromium against a cluster.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_JS = ROOT / "FasterAPI" / "realtime" / "client.js"
UNIT_TESTS = Path(__file__).resolve().parent / "client.test.mjs"
#: The budget the client is held to: what a browser downloads, gzipped.
MAX_GZIPPED_BYTES = 6 * 1024


def test_client_fits_in_6_kb_gzipped() -> None:
    size = len(gzip.compress(CLIENT_JS.read_bytes(), compresslevel=9))
    assert size <= MAX_GZIPPED_BYTES, f"client.js is {size} bytes gzipped, over {MAX_GZIPPED_BYTES}"


def test_client_is_a_dependency_free_module() -> None:
    source = CLIENT_JS.read_text(encoding="utf-8")
    assert "export class Realtime" in source
    # No import of any kind: the file is served as it is, with no build step.
    assert not any(line.lstrip().startswith("import ") for line in source.splitlines())
    assert "require(" not in source


def test_unit_tests_in_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is needed (run scripts/system-packages.sh)")
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", str(UNIT_TESTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    # Every test ran and passed (a skip or a todo would be a test that did not check anything).
    counts = dict(re.findall(r"^\S* ?(tests|pass|fail|skipped|todo|cancelled) (\d+)$", result.stdout, re.MULTILINE))
    assert int(counts["tests"]) > 0 and counts["pass"] == counts["tests"], result.stdout
