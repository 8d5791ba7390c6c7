"""The docker-compose topology without containers: redis-server, two gunicorn instances, nginx.

Each piece runs the repository's own deploy files: gunicorn with ``-c deploy/gunicorn.conf.py``
configured only through the environment (as the image does), nginx with ``deploy/nginx.conf``
where only the substitution points that file documents are replaced (upstream addresses,
listen port, scratch directory). Every process is stopped when its context ends, whatever
happened, and dies with the test process if that is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.processes import Gunicorn, LocalServer, wait_until
from tests.redis_server import RedisServer
from tests.servers import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NGINX_CONF = DEPLOY / "nginx.conf"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
NGINX = "/usr/sbin/nginx"
DEMO_APP = "examples.demo_hub:app"
#: The compose file's upstream names, in the order of the ``server`` lines.
COMPOSE_UPSTREAMS = ("app1:8000", "app2:8000")
#: The writable-path prefix of deploy/nginx.conf (the official image's own default).
NGINX_SCRATCH_PREFIX = "/var/cache/nginx/"
TEMP_PATH_DIRECTIVES = 5


def nginx_binary() -> str | None:
    """Debian's nginx, or whichever one is on PATH; None if there is none."""
    if os.access(NGINX, os.X_OK):
        return NGINX
    return shutil.which("nginx")


def stop_process_group(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Signal the process group, wait, then SIGKILL whatever is left of it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    # Workers that outlived their master (or a master that ignored the signal) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(5)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- gunicorn, configured like the image ------------------------------------------------------


@dataclass
class Instance:
    """One app instance (a gunicorn master and its workers), like a compose ``appN`` service."""

    name: str
    server: Gunicorn
    workers: int

    @property
    def port(self) -> int:
        return self.server.port

    def worker_pids(self) -> set[int]:
        return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.server.log())}


def start_instance(
    name: str, *, backend: str, workers: int = 2, env: Mapping[str, str] | None = None
) -> tuple[Instance, Path]:
    """Start ``gunicorn -c deploy/gunicorn.conf.py`` on a free port; settings from the environment only."""
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix=f"fasterapi-{name}-", suffix=".log")[1])
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "WEB_CONCURRENCY": str(workers),
        "BIND": f"127.0.0.1:{port}",
        "FASTERAPI_BACKEND": backend,
        "GRACEFUL_TIMEOUT": "5",
        **(env or {}),
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each instance sets up its own in on_starting
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", str(GUNICORN_CONF), DEMO_APP],
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    return Instance(name, Gunicorn(process, port, log_path), workers), log_path


def wait_booted(instances: Sequence[Instance], timeout: float = 60) -> None:
    """Wait until every instance accepts connections and all its workers finished startup."""

    def ready(instance: Instance) -> bool:
        if instance.server.process.poll() is not None:
            raise RuntimeError(
                f"{instance.name}: gunicorn exited with {instance.server.process.returncode}\n"
                f"{instance.server.log()[-4000:]}"
            )
        return instance.server.booted_workers() >= instance.workers and port_open(instance.port)

    try:
        wait_until(lambda: all(ready(i) for i in instances), timeout, "the app instances to boot")
    except TimeoutError as error:
        logs = "\n".join(f"--- {i.name} ---\n{i.server.log()[-3000:]}" for i in instances)
        raise RuntimeError(f"{error}\n{logs}") from error


# -- nginx with deploy/nginx.conf -------------------------------------------------------------


def render_nginx_conf(upstream_ports: Sequence[int], listen_port: int, scratch: Path) -> str:
    """deploy/nginx.conf with only its documented substitution points replaced."""
    text = NGINX_CONF.read_text()
    if len(upstream_ports) != len(COMPOSE_UPSTREAMS):
        raise ValueError(f"deploy/nginx.conf has {len(COMPOSE_UPSTREAMS)} upstream servers")
    for name, port in zip(COMPOSE_UPSTREAMS, upstream_ports, strict=True):
        text, count = re.subn(rf"(?m)^(\s*server\s+){re.escape(name)}(?=[\s;])", rf"\g<1>127.0.0.1:{port}", text)
        assert count == 1, f"expected one 'server {name}' line in {NGINX_CONF}, found {count}"
    text, count = re.subn(r"(?m)^(\s*listen\s+)80;", rf"\g<1>127.0.0.1:{listen_port};", text)
    assert count == 1, f"expected one 'listen 80;' in {NGINX_CONF}, found {count}"
    text, count = re.subn(rf"(?m)^(\s*\w+_temp_path\s+){re.escape(NGINX_SCRATCH_PREFIX)}", rf"\g<1>{scratch}/", text)
    assert count == TEMP_PATH_DIRECTIVES, f"expected {TEMP_PATH_DIRECTIVES} temp paths under {NGINX_SCRATCH_PREFIX}"
    return text


@dataclass
class Nginx(LocalServer):
    directory: Path

    def log(self) -> str:
        return (self.directory / "nginx.log").read_text(errors="replace")


@contextlib.contextmanager
def run_nginx(upstream_ports: Sequence[int], *, start_timeout: float = 20) -> Iterator[Nginx]:
    """Run deploy/nginx.conf in front of ``upstream_ports``, as an unprivileged user.

    Run as root (CI containers), it drops to ``nobody`` first: the file must work without
    root, as it does in any non-root nginx.
    """
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (scripts/system-packages.sh installs it)")
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="fasterapi-nginx-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        conf = directory / "nginx.conf"
        conf.write_text(render_nginx_conf(upstream_ports, port, directory))
        log_path = directory / "nginx.log"
        log_path.touch()
        user: int | None = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            user = nobody.pw_uid
            for path in (directory, conf, log_path):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        command = [
            binary,
            "-p", str(directory),
            "-c", str(conf),
            "-e", "stderr",
            "-g", f"daemon off; pid {directory}/nginx.pid;",
        ]  # fmt: skip
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
                user=user,
            )
        server = Nginx(process, port, directory)
        try:
            wait_until(lambda: process.poll() is not None or port_open(port), start_timeout, "nginx to listen")
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited with {process.returncode}")
        except Exception as error:
            raise RuntimeError(f"nginx did not start: {error}\n--- log ---\n{server.log()[-3000:]}") from error
        yield server
    finally:
        if process is not None:
            # SIGQUIT: graceful; SIGKILL follows if it lingers (open WebSockets would keep it).
            stop_process_group(process, signal.SIGQUIT, timeout=5)
        shutil.rmtree(directory, ignore_errors=True)


# -- the whole stack --------------------------------------------------------------------------


@dataclass
class Stack:
    """redis-server + app1 + app2 + nginx, as in docker-compose.yml."""

    redis: RedisServer
    instances: list[Instance]
    nginx: Nginx
    _pids: dict[int, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.nginx.base_url

    @property
    def ws_url(self) -> str:
        return self.nginx.ws_url

    def instance_of_pid(self, pid: int) -> Instance:
        for instance in self.instances:
            if pid in instance.worker_pids():
                return instance
        raise LookupError(f"pid {pid} is no worker of {[i.name for i in self.instances]}")

    def instance_of_upstream(self, address: str) -> Instance:
        """The instance behind an nginx ``$upstream_addr`` such as ``127.0.0.1:41234``."""
        port = int(address.rsplit(":", 1)[1])
        for instance in self.instances:
            if instance.port == port:
                return instance
        raise LookupError(f"no instance listens on {address}")

    def logs(self) -> str:
        parts = [f"--- {i.name} ---\n{i.server.log()[-3000:]}" for i in self.instances]
        parts.append(f"--- nginx ---\n{self.nginx.log()[-3000:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def run_stack(workers_per_instance: int = 2) -> Iterator[Stack]:
    """Start the compose topology on loopback ports; everything stops when the block ends."""
    with contextlib.ExitStack() as cleanup:
        redis = cleanup.enter_context(RedisServer())
        instances: list[Instance] = []
        for name in ("app1", "app2"):
            instance, log_path = start_instance(name, backend=redis.url, workers=workers_per_instance)
            cleanup.callback(log_path.unlink, missing_ok=True)
            cleanup.callback(stop_process_group, instance.server.process)
            instances.append(instance)
        # Both instances boot at the same time, as compose starts them.
        wait_booted(instances)
        nginx = cleanup.enter_context(run_nginx([i.port for i in instances]))
        yield Stack(redis, instances, nginx)


# -- the fasterapi command -------------------------------------------------------------------


FASTERAPI = str(Path(sys.executable).parent / "fasterapi")


class Served(Gunicorn):
    """A running ``fasterapi run``; ``output()`` is everything it printed so far."""

    def output(self) -> str:
        return self.log()


@contextlib.contextmanager
def fasterapi_run(
    *args: str,
    app: str = DEMO_APP,
    start_timeout: float = 20,
    ready_path: str = "/healthz",
    env: Mapping[str, str] | None = None,
    open_files: int | None = None,
) -> Iterator[Served]:
    """``fasterapi run APP --port P *args`` from the repository root, as a user runs it.

    Yields once ``ready_path`` answers 200; stops the whole process group afterwards. ``env``
    adds to what the command inherits; ``open_files`` sets its open-files limit (soft and hard).
    """
    port = free_port()
    fd, name = tempfile.mkstemp(prefix="fasterapi-run-", suffix=".log")
    # Nothing inherited that the command should set itself (the app is found from the cwd).
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("FASTERAPI_BACKEND", "PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR")
    }
    env = {**inherited, **(env or {})}
    with os.fdopen(fd, "wb") as log:
        process = subprocess.Popen(
            [FASTERAPI, "run", app, "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_preexec(open_files),
        )
    served = Served(process, port, Path(name))
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"fasterapi run exited with {process.returncode}:\n{served.output()}")
            try:
                return http(f"{served.base_url}{ready_path}", timeout=2).status == 200
            except OSError:
                return False

        wait_until(healthy, start_timeout, f"fasterapi run to serve {ready_path}")
        yield served
    finally:
        stop_process_group(process, signal.SIGTERM)
        with contextlib.suppress(OSError):
            os.unlink(name)


def _preexec(open_files: int | None) -> Callable[[], None] | None:
    """Between fork and exec: die with this process, and take ``open_files`` as the limit."""
    die = die_with_parent()
    if open_files is None:
        return die

    def preexec() -> None:
        if die is not None:
            die()
        resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    return preexec


# -- small HTTP helpers -----------------------------------------------------------------------


@dataclass
class HTTPResult:
    """A response; ``headers`` has lower-case names."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


def http(url: str, *, method: str = "GET", json_body: Any = None, timeout: float = 10) -> HTTPResult:
    """One request; 4xx/5xx answers are returned, not raised."""
    data = None if json_body is None else json.dumps(json_body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HTTPResult(response.status, _lower(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return HTTPResult(error.code, _lower(error.headers.items()), error.read())


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def metric_value(text: str, name: str) -> float | None:
    """The value of an unlabelled sample ``name`` in Prometheus text, or None."""
    match = re.search(rf"(?m)^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text)
    return None if match is None else float(match.group(1))
