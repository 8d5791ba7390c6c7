"""gunicorn settings for a FasterAPI app: ``gunicorn -c deploy/gunicorn.conf.py examples.demo_hub:app``.

Everything a deployment changes comes from the environment, so one image serves every
environment:

- ``WEB_CONCURRENCY``: worker processes (default: 2 per core, at most 8)
- ``BIND``: listen address(es), comma separated (default: ``HOST:PORT``)
- ``HOST``, ``PORT``: used when ``BIND`` is unset (default ``0.0.0.0`` and ``8000``)
- ``LOG_LEVEL``: gunicorn and uvicorn log level (default ``info``)
- ``FORWARDED_ALLOW_IPS``: proxies trusted for ``X-Forwarded-*`` headers (default ``127.0.0.1``)
- ``GRACEFUL_TIMEOUT``: seconds a stopping worker gets to finish (default 30)
- ``GUNICORN_CONTROL_SOCKET``: path of gunicorn's control socket (default: none, disabled)
- ``PROMETHEUS_MULTIPROC_DIR``: where workers share metrics, wiped at start (default: a new
  temporary directory, removed at exit)
- ``FASTERAPI_BACKEND``: the pub/sub backend URL, read by the app (default ``memory://``)
- ``FASTERAPI_HEADER_TIMEOUT``: seconds a request's line and headers may take before the
  connection is closed (default 10; FasterWorker, see FasterAPI/server/http.py)
- ``FASTERAPI_MAX_MESSAGE_SIZE``: the largest incoming WebSocket message, decompressed, and
  the largest broadcast (default 1 MiB)

At start the master raises its soft open-file limit to the hard limit (every worker inherits
it) and logs both.

Command-line flags (``--workers``, ``--bind``) still win over this file.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _default_workers() -> int:
    # Workers are asyncio event loops, so one per core already keeps the CPUs busy; two per
    # core covers time spent blocked outside the loop (TLS, GC, the odd sync call). The cap
    # keeps a big host from opening dozens of Redis connections (each worker holds a
    # subscriber and a publish pool) for little gain; scale out with more instances instead.
    return max(1, min(2 * (os.cpu_count() or 1), 8))


def _bind() -> list[str]:
    raw = os.environ.get("BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
    return [address.strip() for address in raw.split(",") if address.strip()]


# ASGI workers: uvicorn inside gunicorn's process management. FasterWorker subclasses
# uvicorn_worker.UvicornWorker (the maintained home of that class; the old
# "uvicorn.workers.UvicornWorker" is deprecated) and adds two things: our WebSocket protocol,
# which writes each broadcast frame once to every member's transport, and a shutdown that
# closes sockets with 1001 spread over FASTERAPI_DRAIN_WINDOW seconds (default 2).
worker_class = "FasterAPI.server.worker.FasterWorker"
workers = int(os.environ.get("WEB_CONCURRENCY") or _default_workers())
bind = _bind()

# Import the app in each worker after the fork, never in the master: the hub and the metrics
# are per-process state (own worker id, own backend connections, own metric files) that must
# not be created once and copied into every worker.
preload_app = False

# A stopping worker (deploy, scale-down, SIGTERM from the orchestrator) closes its WebSockets
# with 1001 "going away" at jittered moments over the drain window, so its clients reconnect
# to live workers gradually, and gets this long to finish. Keep the orchestrator's stop timeout
# above it (compose: stop_grace_period).
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))

# A worker whose event loop has not checked in with the master for this long is hung (a
# blocking call in a handler): it is killed and replaced. Idle WebSockets do not count, the
# loop keeps checking in while they wait.
timeout = 30

# Workers prove they are alive by touching a file every few seconds; on a container's overlay
# filesystem that write can stall long enough to get a healthy worker killed. Memory is safer.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# Idle keep-alive HTTP connections stay open this long. Above nginx's upstream keepalive_timeout
# (60 s), so that nginx is always the side that closes an idle connection; otherwise it can
# reuse one at the very moment the app closes it, and answer 502.
keepalive = 75

# Behind a proxy, trust its X-Forwarded-For/-Proto only from these addresses (compose sets
# "*": the app ports are reachable from the internal network only).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# gunicorn >= 25 opens a control socket at one fixed path per user ($HOME/.gunicorn/gunicorn.ctl):
# two instances on one host would take it from each other. Off unless a path is given.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

loglevel = os.environ.get("LOG_LEVEL", "info")
accesslog = "-"  # to stdout, collected by the container runtime
errorlog = "-"

# Set by on_starting when this master made the metrics directory itself (removed on exit).
_created_metrics_dir: str | None = None


def on_starting(server: Any) -> None:
    """Raise the open-file limit; give the workers a clean directory for prometheus-client's multiprocess mode.

    Runs in the master before any worker forks, so every worker inherits the variable and
    prometheus-client, imported later in the workers, uses the shared files.
    """
    global _created_metrics_dir
    # Every socket is a file: the usual soft limit (1,024) would refuse clients long before
    # the workers are busy.
    from FasterAPI.server.files import raise_open_file_limit

    file_limit = raise_open_file_limit()
    if file_limit is not None:
        server.log.info("%s", file_limit)
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        os.makedirs(directory, exist_ok=True)
        # Files left by an earlier run would add dead workers' counts to this one's.
        for stale in glob.glob(os.path.join(directory, "*.db")):
            with contextlib.suppress(OSError):
                os.unlink(stale)
    else:
        directory = _created_metrics_dir = tempfile.mkdtemp(prefix="fasterapi-metrics-")
        os.environ[MULTIPROC_ENV] = directory
    server.log.info("Prometheus multiprocess metrics in %s", directory)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (connections, rooms) so they stop counting."""
    try:
        from prometheus_client import multiprocess
    except ImportError:  # metrics not installed: nothing to clean
        return
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """Remove the metrics directory this master created."""
    if _created_metrics_dir is not None:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
