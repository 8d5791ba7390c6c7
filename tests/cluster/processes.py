"""Real gunicorn clusters for tests: start, wait until every worker has booted, always stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gunicorn.config import KNOWN_SETTINGS

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: gunicorn's control socket (newer releases) lives at one path per user: instances would
#: share it. Older releases have none, and no flag to turn it off.
NO_CONTROL_SOCKET = (
    ["--no-control-socket"] if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS) else []
)


@dataclass
class LocalServer:
    """A server process a test started, listening on 127.0.0.1:``port``."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@dataclass
class Gunicorn(LocalServer):
    """A running gunicorn master; ``log`` is its combined output so far."""

    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def booted_workers(self) -> int:
        return self.log().count("Application startup complete")


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll ``predicate`` until it is truthy; return how long that took, or fail naming ``what``."""
    started = time.monotonic()
    while True:
        last = predicate()
        if last:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"Timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


@contextlib.contextmanager
def run_gunicorn(
    app_path: str,
    *,
    workers: int,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    worker_class: str = "uvicorn_worker.UvicornWorker",
    boot_timeout: float = 60.0,
) -> Iterator[Gunicorn]:
    """Run ``gunicorn app_path -w workers`` on a free port until the block ends."""
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)
    command = [
        str(BIN / "gunicorn"),
        app_path,
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "info",
        "--graceful-timeout",
        "10",
        *NO_CONTROL_SOCKET,
        *extra_args,
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Gunicorn(process, port, Path(log_file.name))
    try:
        try:
            # gunicorn listens before its workers boot: wait for every worker's startup.
            wait_until(
                lambda: server.booted_workers() >= workers or process.poll() is not None,
                boot_timeout,
                f"{workers} workers to boot",
            )
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}")
        except Exception as error:
            raise RuntimeError(f"gunicorn did not start: {error}\n--- log ---\n{server.log()[-4000:]}") from error
        try:
            yield server
        except BaseException:
            # The log file goes with the server: show its end beside the failure.
            print(f"--- gunicorn log (end) ---\n{server.log()[-6000:]}")
            raise
    finally:
        _stop(process)
        with contextlib.suppress(OSError):
            os.unlink(log_file.name)
        log_file.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    else:
        # The master is gone; make sure no orphaned worker survives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
