"""One ``nats-server`` (with JetStream) on a free loopback port, for tests; never the machine's 4222.

``start()`` returns once the server greets a client; ``kill()`` is a SIGKILL, ``restart()``
starts it again on the same port (JetStream state kept in its own directory); ``stop()`` ends it
for good. The process is also killed at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from tests.servers import ManagedServer, free_port, kill_process, start_process


def nats_server_binary() -> str | None:
    found = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    return found


class NatsServer(ManagedServer):
    """A nats-server process (see the module docstring)."""

    def __init__(self, config: str = "") -> None:
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError("nats-server is not installed (Debian package nats-server)")
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fasterapi-nats-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.config = config  # nats-server configuration text (users, permissions); flags win
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.dir / "js")]
        args += ["-l", str(self.dir / "nats.log")]
        if self.config:
            config_file = self.dir / "nats.conf"
            config_file.write_text(self.config)
            args += ["-c", str(config_file)]
        self.process = start_process(
            args, name=f"nats-server on port {self.port}", ready=self._greets, log_tail=self._log_tail, timeout=timeout
        )
        return self

    def _greets(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")
        return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "nats.log").read_text(errors="replace")[-2000:]
        return ""

    def kill(self) -> None:
        if self.process is not None:
            kill_process(self.process)

    def restart(self) -> Self:
        self.kill()
        return self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.stop)
