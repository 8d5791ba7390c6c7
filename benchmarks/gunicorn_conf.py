"""gunicorn hooks for ``benchmarks/fanout.py``: worker readiness markers and no orphans.

* ``post_fork``: the worker dies with its master (``PR_SET_PDEATHSIG``), so a killed runner
  (whose master dies with it the same way) leaves no worker behind.
* ``post_worker_init``: once uvicorn's ``Server.startup`` has run (lifespan done, sockets
  served), the worker touches ``$BENCH_READY_DIR/<pid>``. gunicorn listens before its workers
  boot, so the runner connects clients only when every worker has its marker. With
  ``--log-level warning`` uvicorn's "startup complete" line is not logged to wait for.
  Under gunicorn's own ASGI worker (``-k asgi``) the marker comes once the app's lifespan
  startup is complete; the worker starts serving right after it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def post_fork(server: Any, worker: Any) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def post_worker_init(worker: Any) -> None:
    directory = os.environ.get("BENCH_READY_DIR")
    if not directory:
        return
    if type(worker).__module__ == "gunicorn.workers.gasgi":
        _mark_after_lifespan(directory)
        return
    from uvicorn.server import Server

    original = Server.startup

    # wraps: FasterAPI's startup self-check (FasterAPI/server/compat.py) reads the code of
    # Server.startup through __wrapped__; a bare replacement would look like a uvicorn that
    # lacks what FasterServer extends, and FasterWorker would fall back to uvicorn's server.
    @functools.wraps(original)
    async def startup(self: Server, sockets: Any = None) -> None:
        await original(self, sockets=sockets)
        if self.started:
            Path(directory, str(os.getpid())).touch()

    Server.startup = startup  # type: ignore[method-assign]


def _mark_after_lifespan(directory: str) -> None:
    from gunicorn.asgi.lifespan import LifespanManager

    original = LifespanManager.startup

    @functools.wraps(original)
    async def startup(self: LifespanManager) -> None:
        await original(self)
        Path(directory, str(os.getpid())).touch()

    LifespanManager.startup = startup  # type: ignore[method-assign]
