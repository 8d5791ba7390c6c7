"""Prometheus metrics for the hub, correct across gunicorn workers: ``install_metrics(app)``.

One process (``PROMETHEUS_MULTIPROC_DIR`` unset): the metrics live in a registry of the app's
own. Several gunicorn workers: set ``PROMETHEUS_MULTIPROC_DIR`` (``deploy/gunicorn.conf.py``
does it in ``on_starting``, and its ``child_exit`` hook calls
``prometheus_client.multiprocess.mark_process_dead``); every worker then writes its values to
files in that directory, and whichever worker is scraped sums them all:

==============================================  =======  ==========================================
metric                                          type     across workers
==============================================  =======  ==========================================
``fasterapi_connections``                       gauge    sum over live workers
``fasterapi_rooms``                             gauge    sum over live workers (local rooms each)
``fasterapi_messages_published_total``          counter  sum over every worker that ever ran
``fasterapi_messages_delivered_total``          counter  idem
``fasterapi_messages_dropped_total``            counter  idem
``fasterapi_slow_consumer_closes_total``        counter  idem
``fasterapi_invalid_envelopes_total``           counter  idem
``fasterapi_listener_errors_total``             counter  idem
``fasterapi_backend_outages_total``             counter  idem
``fasterapi_backend_reconnects_total``          counter  idem
``fasterapi_protocol_errors_total{reason}``     counter  idem; client mistakes our server refused
                                                         (``FasterAPI.server.errors.REASONS``)
``fasterapi_backend_up``                        gauge    minimum over live workers (0 if any is cut off)
==============================================  =======  ==========================================

The hub keeps plain ``int`` counters (no metrics library on its hot path), so each worker
copies them into the Prometheus objects: every ``interval`` seconds from a small task started
with the app (or by the first scrape), and once more in the scraped worker right before it
renders. A worker's numbers are so at most ``interval`` seconds old in a scrape.

prometheus-client is optional: ``pip install 'fasterapi-hub[metrics]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from .responses import Response

if TYPE_CHECKING:
    from .applications import Faster
    from .pubsub.hub import Hub

__all__ = ["MULTIPROC_ENV", "HubMetrics", "install_metrics", "multiprocess_enabled"]

logger = logging.getLogger("fasterapi.metrics")

#: The environment variable that switches prometheus-client to its multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: HubStats field -> (metric name without ``_total``, help text).
COUNTERS: dict[str, tuple[str, str]] = {
    "published": ("fasterapi_messages_published", "Messages published to the backend (broadcasts and direct sends)."),
    "delivered": ("fasterapi_messages_delivered", "Messages written to a local WebSocket."),
    "dropped": ("fasterapi_messages_dropped", "Messages dropped by full or closed send queues."),
    "slow_consumer_closes": ("fasterapi_slow_consumer_closes", "Connections closed for not keeping up."),
    "invalid_envelopes": ("fasterapi_invalid_envelopes", "Messages from the backend that failed to decode."),
    "listener_errors": ("fasterapi_listener_errors", "Messages whose local dispatch raised."),
    "backend_outages": ("fasterapi_backend_outages", "Times the backend connection was lost."),
    "backend_reconnects": ("fasterapi_backend_reconnects", "Times the backend connection was restored."),
    "history_repaired": ("fasterapi_history_repaired", "Room messages delivered from history to fill a gap."),
    "history_gaps": ("fasterapi_history_gaps", "Gaps in a room that its history no longer covered."),
}


def multiprocess_enabled() -> bool:
    """True when metrics are shared through files (``PROMETHEUS_MULTIPROC_DIR`` is set)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def _require_prometheus_client() -> None:
    if importlib.util.find_spec("prometheus_client") is None:
        raise ImportError("FasterAPI.metrics needs prometheus-client: pip install 'fasterapi-hub[metrics]'")


class HubMetrics:
    """The Prometheus objects for one app's hub, and the copying of its counters into them.

    prometheus-client is imported on first use, not at construction: it decides once, at
    import, whether values go to shared files, and an app module imported by a gunicorn master
    (``preload_app``) runs before ``on_starting`` has set ``PROMETHEUS_MULTIPROC_DIR``.

    In multiprocess mode the metrics are per process, not per app: install them on one app
    per worker process (two would overwrite each other's values in the shared files).
    """

    def __init__(self, app: Faster, *, interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        _require_prometheus_client()
        self.app = app
        self.interval = interval
        self._built = False
        self._multiprocess = False
        self._registry: Any = None
        self._counters: dict[str, Any] = {}
        self._connections: Any = None
        self._rooms: Any = None
        self._backend_up: Any = None
        self._protocol_errors: Any = None
        self._seen_protocol_errors: dict[str, int] = {}
        # The hub's counter values as of the last sync: only the increase since is added.
        self._seen: dict[str, int] = {}
        self._seen_hub: Hub | None = None
        self._task: asyncio.Task[None] | None = None

    def _build(self) -> None:
        if self._built:
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, values

        multiprocess = multiprocess_enabled()
        if multiprocess and values.ValueClass.__name__ != "MmapedValue":
            # prometheus_client was imported before the variable was set (by something else in
            # this process): its values live in memory, and the shared files would miss them.
            logger.warning(
                "%s was set after prometheus_client was imported in pid %d: metrics are per process",
                MULTIPROC_ENV,
                os.getpid(),
            )
            multiprocess = False
        self._multiprocess = multiprocess
        # Multiprocess values live in files, not in a registry: rendering collects the files.
        registry = None if multiprocess else CollectorRegistry(auto_describe=True)
        self._registry = registry
        for field, (name, documentation) in COUNTERS.items():
            self._counters[field] = Counter(name, documentation, registry=registry)
        # "livesum": a dead worker's connections and rooms are gone, so they stop counting.
        self._connections = Gauge(
            "fasterapi_connections",
            "Open WebSocket connections.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._rooms = Gauge(
            "fasterapi_rooms",
            "Rooms with local members (each worker counts its own).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._protocol_errors = Counter(
            "fasterapi_protocol_errors",
            "Client protocol errors the server refused, by reason (bad frames, oversized or late headers...).",
            ["reason"],
            registry=registry,
        )
        # "livemin": 1 only when every live worker reaches the backend.
        self._backend_up = Gauge(
            "fasterapi_backend_up",
            "1 when the pub/sub backend is reachable, else 0.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._built = True

    @property
    def registry(self) -> Any:
        """This app's ``CollectorRegistry``; None in multiprocess mode (values live in files)."""
        self._build()
        return self._registry

    def sync(self) -> None:
        """Copy the hub's counters and gauges into the Prometheus objects (cheap, sync)."""
        self._build()
        hub = self.app.hub
        if hub is not self._seen_hub:
            self._seen_hub, self._seen = hub, {}
        stats = hub.stats
        for field in fields(stats):
            counter = self._counters.get(field.name)
            if counter is None:
                continue
            value: int = getattr(stats, field.name)
            delta = value - self._seen.get(field.name, 0)
            if delta > 0:
                counter.inc(delta)
            # A smaller value means the counters were reset: count on from there.
            self._seen[field.name] = value
        self._sync_protocol_errors()
        self._connections.set(self.app.open_websockets)
        self._rooms.set(len(hub.rooms))
        self._backend_up.set(1 if hub.backend.available else 0)

    def _sync_protocol_errors(self) -> None:
        # Counted by this process's server protocols (FasterAPI.server), not by the hub.
        from .server.errors import client_errors

        seen = self._seen_protocol_errors
        for reason, value in list(client_errors.counts.items()):
            delta = value - seen.get(reason, 0)
            if delta > 0:
                self._protocol_errors.labels(reason=reason).inc(delta)
            seen[reason] = value

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every worker (multiprocess) or of this app; and its media type."""
        self.sync()
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self._multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self._registry), CONTENT_TYPE_LATEST

    # -- the periodic copy ---------------------------------------------------------------

    def start(self) -> None:
        """Start the periodic sync on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fasterapi metrics sync")

    async def stop(self) -> None:
        """Stop the periodic sync after one last copy (so a leaving worker's counts are kept)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            self.sync()

    async def _run(self) -> None:
        while True:
            try:
                self.sync()
            except Exception:
                # Metrics must never take a worker down; say so and try again next time.
                logger.exception("Metrics sync failed")
            await asyncio.sleep(self.interval)


def install_metrics(app: Faster, path: str = "/metrics", *, interval: float = 1.0) -> HubMetrics:
    """Serve the hub's metrics at ``path`` and keep them current in every worker.

    Raises ImportError naming the extra to install when prometheus-client is missing.
    """
    metrics = HubMetrics(app, interval=interval)
    app.state.metrics = metrics
    # Every worker syncs on its own from startup: a scrape reaches one worker and reads the
    # others' values from the shared files, which only they can keep current.
    app.on_startup.append(metrics.start)
    app.on_shutdown.append(metrics.stop)

    async def metrics_endpoint() -> Response:
        metrics.start()  # for servers that run no lifespan
        body, media_type = metrics.render()
        return Response(body, media_type=media_type)

    app.get(path)(metrics_endpoint)
    return metrics
