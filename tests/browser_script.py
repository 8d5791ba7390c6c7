"""A node script that drives headless Chromium, run from an async test: ``BrowserScript``.

The scripts live in tests/deploy/browser (where playwright-core is installed, `make
browser-deps`); they print one JSON object per line on stdout as things happen, and read
commands (such as ``finish``) on stdin. The script runs in its own process group, so the
browser it starts is stopped with it, whatever happens to the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

__all__ = ["BROWSER_DIR", "CHROMIUM", "BrowserScript", "require_browser_tools", "run_browser_script"]

BROWSER_DIR = Path(__file__).resolve().parent / "deploy" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: Keys of events whose values are too long to show in a failure message.
LONG_FIELDS = ("received", "offsets", "texts")


def require_browser_tools() -> str:
    """node's path; skips the test when node, Chromium or playwright-core are missing."""
    node = shutil.which("node")
    if node is None or not os.access(CHROMIUM, os.X_OK):
        pytest.skip("node and chromium are needed (run scripts/system-packages.sh)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("playwright-core is not installed (run `make browser-deps`)")
    return node


def run_browser_script(
    script: str | Path,
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    context: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """Run a node script that drives Chromium to its end and return its last stdout line (JSON).

    ``script`` is a file in tests/deploy/browser or a path. It runs in its own process group,
    killed afterwards whatever happened, so a hung script takes its browser down with it.
    ``context()`` (a server's log, say) goes into the failure message.
    """
    node = require_browser_tools()
    path = BROWSER_DIR / script if isinstance(script, str) else script
    process = subprocess.Popen(
        [node, str(path), *args],
        cwd=BROWSER_DIR,
        env={**os.environ, "CHROMIUM": CHROMIUM, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the browser too, if node left it behind
        process.wait()
    extra = context() if context is not None else ""
    assert process.returncode == 0, f"{path.name} failed ({process.returncode}):\n{stderr}\n{stdout}\n{extra}"
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


class BrowserScript:
    """``async with BrowserScript("x.mjs", *args) as script``: its events in ``script.seen``."""

    def __init__(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.command = [require_browser_tools(), str(BROWSER_DIR / name), *args]
        self.env = {**os.environ, "CHROMIUM": CHROMIUM, **(env or {})}
        self.seen: list[dict[str, Any]] = []
        self.stderr = ""
        self._changed = asyncio.Condition()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr: asyncio.Task[bytes] | None = None

    async def __aenter__(self) -> Self:
        self._process = await asyncio.create_subprocess_exec(
            *self.command,
            cwd=BROWSER_DIR,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=2**22,  # a final event may hold everything a page received
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        self._reader = asyncio.ensure_future(self._read(self._process.stdout))
        self._stderr = asyncio.ensure_future(self._process.stderr.read())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            event = json.loads(line)
            event["received_at"] = asyncio.get_running_loop().time()
            async with self._changed:
                self.seen.append(event)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()  # the script ended: waiters stop waiting

    async def send(self, command: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(command.encode() + b"\n")
        await self._process.stdin.drain()

    async def wait_for(self, timeout: float, **fields: Any) -> dict[str, Any]:
        """The first event from now on whose fields have these values; fails with the story so far."""
        start = len(self.seen)

        def found() -> dict[str, Any] | None:
            return next((e for e in self.seen[start:] if fields.items() <= e.items()), None)

        async def wait() -> dict[str, Any]:
            assert self._reader is not None
            async with self._changed:
                await self._changed.wait_for(lambda: found() is not None or self._reader.done())  # type: ignore[union-attr]
            event = found()
            if event is None:
                raise AssertionError(f"the script ended before {fields}")
            return event

        try:
            return await asyncio.wait_for(wait(), timeout)
        except (AssertionError, TimeoutError) as error:
            await self.stop()
            raise AssertionError(
                f"{error or 'timed out'} waiting for {fields}\nlast events: {self.summary()}\nstderr: {self.stderr}"
            ) from None

    def summary(self, last: int = 12) -> list[dict[str, Any]]:
        """The last events, without their long lists."""
        return [{k: v for k, v in e.items() if k not in LONG_FIELDS} for e in self.seen[-last:]]

    def last(self, event: str) -> dict[str, Any] | None:
        """The latest event of this kind so far."""
        return next((e for e in reversed(self.seen) if e.get("event") == event), None)

    async def stop(self) -> None:
        """Stop the script and its browser (their process group); keep what it wrote on stderr."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # anything of the group left behind
        if self._stderr is not None:
            with contextlib.suppress(TimeoutError):
                self.stderr = (await asyncio.wait_for(asyncio.shield(self._stderr), 5)).decode(errors="replace")
        if self._reader is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)
