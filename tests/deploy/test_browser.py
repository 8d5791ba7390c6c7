"""Two people in a real headless Chromium use the demo through nginx and both app instances."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.browser_script import run_browser_script
from tests.deploy.stack import ROOT, Stack

pytestmark = pytest.mark.timeout(120)

ARTIFACTS = ROOT / "test-artifacts"


def test_two_pages_talk_across_instances(stack: Stack) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    room = f"browser-{secrets.token_hex(3)}"
    shown = run_browser_script("demo.mjs", stack.base_url, room, str(ARTIFACTS), timeout=90, context=stack.logs)

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
