"""A throwaway ``redis-server`` for tests: own loopback port, own temp dir, no persistence.

Never the machine's shared Redis on 6379: every instance binds a free port on 127.0.0.1.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Self
from urllib.parse import quote

import redis

from tests.servers import ManagedServer, free_port, kill_process, start_process

__all__ = ["RedisServer", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """Path of the ``redis-server`` executable, or None if there is none."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


class RedisServer(ManagedServer):
    """One ``redis-server`` process on a free loopback port.

    ``start()`` returns once the server answers PING. ``kill()`` is a SIGKILL (a crash),
    ``stop()`` a clean shutdown, ``restart()`` starts it again on the same port, ``pause()``
    and ``resume()`` freeze it (SIGSTOP/SIGCONT: a half-open connection from the client's
    side). Usable as a context manager; the process is also killed at interpreter exit.
    """

    def __init__(
        self, port: int | None = None, *, password: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = port if port is not None else free_port()
        # A port we picked may be taken by someone else before redis binds it; until the
        # first successful start we may pick another. After that the port is the server's.
        self._may_change_port = port is None
        self.host = "127.0.0.1"
        self.password = password
        self.extra_args = extra_args
        self.dir = Path(tempfile.mkdtemp(prefix="fasterapi-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._clients: list[redis.Redis] = []
        self._admin: redis.Redis | None = None
        self._closed = False
        atexit.register(self._at_exit)

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server (if not running) and wait until it answers PING."""
        if self._closed:
            raise RuntimeError("this RedisServer was stopped for good")
        if self.running:
            return self
        for attempt in range(3):
            try:
                self._spawn(timeout)
                break
            except RuntimeError:
                if not self._may_change_port or attempt == 2:
                    raise
                self.port = free_port()
        self._may_change_port = False
        return self

    def _spawn(self, timeout: float) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
            "--logfile", str(self.dir / "redis.log"),
            *(("--requirepass", self.password) if self.password else ()),
            *self.extra_args,
        ]  # fmt: skip
        probe = redis.Redis(
            host=self.host, port=self.port, password=self.password, socket_timeout=0.5, socket_connect_timeout=0.5
        )

        def answers() -> bool:
            try:
                return bool(probe.ping())
            except redis.RedisError:
                return False

        try:
            self.process = start_process(
                args,
                name=f"redis-server on port {self.port}",
                ready=answers,
                log_tail=self._log_tail,
                timeout=timeout,
                poll_interval=0.005,
            )
        finally:
            probe.close()

    def _log_tail(self) -> str:
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def _signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the server (it keeps nothing: there is no persistence) and reap it."""
        if self.process is None:
            return
        kill_process(self.process)
        self.close_clients()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        self._signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> Self:
        """Kill the server and start a new one on the same port."""
        self.kill()
        return self.start(timeout)

    def stop(self) -> None:
        """Shut the server down for good and remove its directory. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.close_clients()
        if self.process is not None and self.running:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def client(self) -> redis.Redis:
        """A new synchronous client to this server (closed by ``kill``/``stop``/``close_clients``)."""
        client = redis.Redis(
            host=self.host, port=self.port, password=self.password, socket_timeout=5, socket_connect_timeout=5
        )
        self._clients.append(client)
        return client

    @property
    def admin(self) -> redis.Redis:
        """One shared synchronous client (at most one connection), for inspecting the server."""
        if self._admin is None:
            self._admin = self.client()
        return self._admin

    def close_clients(self) -> None:
        """Close every client handed out (their connections, so the server stops seeing them)."""
        clients, self._clients, self._admin = self._clients, [], None
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()

    def __repr__(self) -> str:
        return f"<RedisServer port={self.port} running={self.running}>"
