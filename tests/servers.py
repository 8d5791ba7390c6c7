"""Server processes for tests: free ports, starting and stopping them, whatever happens.

``with run_uvicorn("pkg.mod:app") as url`` runs a real ``uvicorn`` server in a subprocess:
it gets a free loopback port, its output goes to a temp file (whose tail is in the error
when it fails to start), and it is always stopped: SIGTERM to its process group, then
SIGKILL if it has not exited in time. On Linux it also dies with the test process.

The backend fixtures (``tests/redis_server.py``, ``redis_sentinel.py``, ``redis_cluster.py``,
``nats_server.py``) start theirs with :func:`start_process` (spawn, wait until it answers,
kill it if it does not) and are :class:`ManagedServer` s (``with Server() as s``: stopped on
leaving, and when their start fails).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "REPO_ROOT",
    "ManagedServer",
    "RunningServer",
    "ServerStartError",
    "die_with_parent",
    "free_port",
    "kill_process",
    "run_uvicorn",
    "start_process",
    "wait_until",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

_PR_SET_PDEATHSIG = 1


class ServerStartError(RuntimeError):
    """The server exited, or never accepted connections, before the deadline."""


class RunningServer(str):
    """The base URL (``http://127.0.0.1:PORT``), with the port, the process and its output."""

    port: int
    process: subprocess.Popen[bytes]
    _log: IO[bytes]

    def __new__(cls, port: int, process: subprocess.Popen[bytes], log: IO[bytes]) -> RunningServer:
        self = super().__new__(cls, f"http://127.0.0.1:{port}")
        self.port = port
        self.process = process
        self._log = log
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the server has printed so far (stdout and stderr)."""
        return _read(self._log)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def run_uvicorn(
    app_path: str,
    *,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    start_timeout: float = 20.0,
    stop_timeout: float = 10.0,
) -> Iterator[RunningServer]:
    """Start ``python -m uvicorn app_path`` on a free port; yield its base URL once it accepts.

    ``app_path`` is imported from the repository root (``"tests.apps.http_app:app"``).
    ``env`` adds to (and overrides) this process's environment; ``extra_args`` go to uvicorn
    (``["--workers", "2"]``). Raises :class:`ServerStartError`, with the end of the server's
    output, if it exits or does not accept connections within ``start_timeout`` seconds.
    """
    attempts = 3  # the free port can be taken by someone else between our check and its bind
    for attempt in range(attempts):
        port = free_port()
        with tempfile.TemporaryFile(prefix="uvicorn-") as log:
            process = _spawn(app_path, port, log, env, extra_args)
            try:
                try:
                    _wait_until_accepting(process, port, log, app_path, start_timeout)
                except _PortTaken:
                    if attempt == attempts - 1:
                        raise ServerStartError(f"uvicorn {app_path}: no free port after {attempts} tries") from None
                    continue
                yield RunningServer(port, process, log)
                return
            finally:
                _stop(process, stop_timeout)


class _PortTaken(Exception):
    pass


def _spawn(
    app_path: str, port: int, log: IO[bytes], env: Mapping[str, str] | None, extra_args: Sequence[str]
) -> subprocess.Popen[bytes]:
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p)
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it reaches its workers too
        preexec_fn=die_with_parent(signal.SIGTERM),
    )


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: if this process dies (even by SIGKILL), the
    kernel sends the child ``signum``. None (nothing to run) where Linux's prctl is missing.

    The signal is tied to the thread that forks: start long-lived children from the main thread.
    """
    if sys.platform != "linux":
        return None

    def preexec() -> None:  # runs in the child, between fork and exec
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)

    return preexec


def _wait_until_accepting(
    process: subprocess.Popen[bytes], port: int, log: IO[bytes], app_path: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            output = _read(log)
            if "address already in use" in output.lower():
                raise _PortTaken
            raise ServerStartError(f"uvicorn {app_path} exited with code {code} before serving:\n{_tail(output)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise ServerStartError(
                f"uvicorn {app_path} did not accept connections on port {port} within {timeout:g} s:\n"
                f"{_tail(_read(log))}"
            )
        # Wait a little for the process itself: returns at once if it exits meanwhile.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.05)


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left in its group (workers that outlived the master) goes too.
    _signal_group(process, signal.SIGKILL)
    if process.poll() is None:
        process.wait(timeout=timeout)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        # The group is gone (the master reaped and nobody left), or this is not our group.
        with contextlib.suppress(ProcessLookupError):
            if process.poll() is None:
                process.send_signal(sig)


def start_process(
    args: Sequence[str],
    *,
    name: str,
    ready: Callable[[], bool],
    log_tail: Callable[[], str],
    timeout: float = 10.0,
    poll_interval: float = 0.05,
) -> subprocess.Popen[bytes]:
    """Start ``args`` (no stdin, output discarded: the server writes its own log) and return
    once ``ready()`` is true; a process that exits first, or is not ready within ``timeout``
    seconds, is killed and raises (RuntimeError, TimeoutError) with ``log_tail()``.

    ``name`` says which server in errors (``"redis-server on port 6380"``). Started from the
    main thread, the process also dies with this one (see :func:`die_with_parent`).
    """
    # PDEATHSIG is tied to the thread that forks, so only set it from the main thread
    # (a worker thread exiting would otherwise take the server down with it).
    on_main_thread = threading.current_thread() is threading.main_thread()
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent() if on_main_thread else None,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            # Exited first: checked before ready(), since another server may hold the port we meant to take.
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {log_tail()}")
            if ready():
                return process
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not answer within {timeout}s: {log_tail()}")
            time.sleep(poll_interval)  # polling for readiness, not synchronising with the code under test
    except BaseException:
        kill_process(process)
        raise


def kill_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGKILL ``process`` (waking it first, should it be stopped) and reap it. Safe when it has exited."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a paused process would otherwise linger until resumed
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=timeout)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # polling a server's state, not synchronising with the code under test


class ManagedServer:
    """A test server with ``start()`` and ``stop()``: ``with Server() as server`` starts it, and
    stops it on leaving, and also when the start itself fails (half-started processes go too)."""

    def start(self) -> Self:
        """Start every process; returns once the server is usable."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every process for good. Safe to call twice, and after a failed start."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _read(log: IO[bytes]) -> str:
    position = log.tell()
    try:
        log.seek(0)
        return log.read().decode("utf-8", "replace")
    finally:
        log.seek(position)


def _tail(output: str, lines: int = 40) -> str:
    kept = output.rstrip().splitlines()[-lines:]
    return "\n".join("    " + line for line in kept) or "    (no output)"
