"""Two people in a real headless Chromium use the demo through nginx and both app instances."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.deploy.stack import ROOT, Stack, stop_process_group

pytestmark = pytest.mark.timeout(120)

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"


def _require_browser_tools() -> str:
    node = shutil.which("node")
    if node is None or not os.access(CHROMIUM, os.X_OK):
        pytest.skip("node and chromium are needed (run scripts/system-packages.sh)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("playwright-core is not installed (run `make browser-deps`)")
    return node


def test_two_pages_talk_across_instances(stack: Stack) -> None:
    node = _require_browser_tools()
    ARTIFACTS.mkdir(exist_ok=True)
    room = f"browser-{secrets.token_hex(3)}"
    # Its own process group: if it hangs, the browser it started goes down with it.
    process = subprocess.Popen(
        [node, str(BROWSER_DIR / "demo.mjs"), stack.base_url, room, str(ARTIFACTS)],
        cwd=BROWSER_DIR,
        env={**os.environ, "CHROMIUM": CHROMIUM},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=90)
    finally:
        stop_process_group(process, signal.SIGTERM, timeout=5)
    assert process.returncode == 0, f"{stderr}\n{stdout}\n{stack.logs()}"
    shown = json.loads(stdout.strip().splitlines()[-1])

    for person in ("alice", "bob"):
        assert shown[person]["members"] == "2"
        assert shown[person]["status"] == "Connected"
        assert shown[person]["worker"].startswith("pid ")
        # Each message names the worker that delivered it: the page's own, not the sender's.
        assert shown[person]["sawMeta"].startswith(f"delivered by {shown[person]['worker']}")
    # least_conn puts the second socket on the other instance: the message crossed Redis.
    instances = {stack.instance_of_pid(int(shown[person]["worker"].split()[1])).name for person in ("alice", "bob")}
    assert instances == {"app1", "app2"}, shown
    assert shown["consoleErrors"] == []
    for path in shown["screenshots"]:
        assert Path(path).stat().st_size > 10_000
