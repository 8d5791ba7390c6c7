"""``install_metrics``: the hub's numbers in Prometheus text, one process (gunicorn: tests/deploy)."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from FasterAPI import Faster, WebSocket, WebSocketDisconnect
from FasterAPI.metrics import COUNTERS, HubMetrics, install_metrics
from FasterAPI.testclient import TestClient
from tests.cluster.processes import wait_until

pytestmark = [
    pytest.mark.timeout(30),
    # prometheus-client picks its storage once, at import, from this variable.
    pytest.mark.skipif(bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")), reason="needs single-process mode"),
]

TIMEOUT = 5.0


def make_app() -> tuple[Faster, HubMetrics]:
    app = Faster(backend="memory://")
    metrics = install_metrics(app, interval=0.05)

    @app.websocket("/ws/{room}")
    async def member(ws: WebSocket, room: str) -> None:
        await ws.accept()
        await ws.join(room)
        await ws.send_text("joined")
        try:
            async for text in ws.iter_text():
                await app.broadcast(room, text)
        except WebSocketDisconnect:
            pass

    return app, metrics


def scrape(client: TestClient) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for line in response.text.splitlines():
        match = re.fullmatch(r"(fasterapi_\w+) (\S+)", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def eventually(check: Callable[[], Any], what: str) -> None:
    """Poll ``check`` until it holds (the app closes sockets on its own loop, a moment later)."""
    wait_until(check, TIMEOUT, what, interval=0.02)


def test_metric_names_and_help() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        text = client.get("/metrics").text
    for name in (
        "fasterapi_connections",
        "fasterapi_rooms",
        "fasterapi_backend_up",
        *(f"{name}_total" for name, _ in COUNTERS.values()),
    ):
        assert re.search(rf"(?m)^# HELP {name} ", text), name
        assert re.search(rf"(?m)^{name} ", text), name


def test_connections_and_rooms_follow_sockets() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        before = scrape(client)
        assert before["fasterapi_connections"] == 0 and before["fasterapi_rooms"] == 0
        assert before["fasterapi_backend_up"] == 1
        with client.websocket_connect("/ws/a") as first:
            assert first.receive_text(timeout=TIMEOUT) == "joined"
            assert scrape(client)["fasterapi_connections"] == 1
            with client.websocket_connect("/ws/b") as second, client.websocket_connect("/ws/b") as third:
                assert second.receive_text(timeout=TIMEOUT) == third.receive_text(timeout=TIMEOUT) == "joined"
                now = scrape(client)
                assert now["fasterapi_connections"] == 3 and now["fasterapi_rooms"] == 2
            eventually(lambda: scrape(client)["fasterapi_connections"] == 1, "two sockets to close")
            assert scrape(client)["fasterapi_rooms"] == 1
        eventually(lambda: scrape(client)["fasterapi_connections"] == 0, "the last socket to close")
        assert scrape(client)["fasterapi_rooms"] == 0


def test_message_counters_move_with_traffic() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        start = scrape(client)
        with client.websocket_connect("/ws/r") as one, client.websocket_connect("/ws/r") as two:
            assert one.receive_text(timeout=TIMEOUT) == two.receive_text(timeout=TIMEOUT) == "joined"
            for n in range(3):
                one.send_text(f"m{n}")
            for ws in (one, two):
                assert [ws.receive_text(timeout=TIMEOUT) for _ in range(3)] == ["m0", "m1", "m2"]
            now = scrape(client)
        assert now["fasterapi_messages_published_total"] - start["fasterapi_messages_published_total"] == 3
        assert now["fasterapi_messages_delivered_total"] - start["fasterapi_messages_delivered_total"] == 6
        assert now["fasterapi_messages_dropped_total"] == start["fasterapi_messages_dropped_total"]


@pytest.mark.parametrize("field", sorted(COUNTERS))
def test_every_hub_counter_is_exported(field: str) -> None:
    app, _ = make_app()
    name = f"{COUNTERS[field][0]}_total"
    with TestClient(app) as client:
        start = scrape(client)[name]
        setattr(app.hub.stats, field, getattr(app.hub.stats, field) + 5)
        assert scrape(client)[name] == start + 5
        # Copied as increases: a second scrape adds nothing more.
        assert scrape(client)[name] == start + 5


def test_workers_sync_without_being_scraped() -> None:
    """The periodic task copies the counters even when nobody scrapes this worker (multiprocess)."""
    app, metrics = make_app()
    with TestClient(app):
        app.hub.stats.dropped += 7
        eventually(lambda: metrics.registry.get_sample_value("fasterapi_messages_dropped_total") == 7, "a sync")


def test_backend_up_follows_the_backend() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        assert scrape(client)["fasterapi_backend_up"] == 1
        app.hub.backend.available = False
        assert scrape(client)["fasterapi_backend_up"] == 0


def test_missing_prometheus_client_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ImportError, match=re.escape("pip install 'fasterapi-hub[metrics]'")):
        install_metrics(Faster())


def test_demo_hub_serves_metrics() -> None:
    from examples.demo_hub import app

    with TestClient(app) as client:
        with client.websocket_connect("/ws/demo-metrics?name=m") as ws:
            assert ws.receive_json(timeout=TIMEOUT)["type"] == "hello"
            assert scrape(client)["fasterapi_connections"] == 1


def test_multiproc_dir_set_too_late_falls_back_to_this_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """prometheus_client was imported before the variable: say so, and keep serving this process's numbers."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    app, _ = make_app()
    with TestClient(app) as client, client.websocket_connect("/ws/late") as ws:
        assert ws.receive_text(timeout=TIMEOUT) == "joined"
        assert scrape(client)["fasterapi_connections"] == 1
    assert "metrics are per process" in caplog.text
    assert list(tmp_path.iterdir()) == []
