"""The container files, read as data: docker-compose.yml, deploy/Dockerfile, deploy/gunicorn.conf.py."""

from __future__ import annotations

import os
import re
import runpy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import prometheus_client  # noqa: F401  (imported now: see test_gunicorn_conf_sets_up_metrics_dir)
import pytest
import yaml

from tests.deploy.stack import COMPOSE_UPSTREAMS, ROOT

pytestmark = pytest.mark.timeout(30)

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
APPS = ("app1", "app2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def env_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment, from either of compose's two spellings."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", *APPS, "nginx"}


def test_redis_has_a_healthcheck(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    test = redis["healthcheck"]["test"]
    command = test if isinstance(test, str) else " ".join(test)
    assert "redis-cli ping" in command


@pytest.mark.parametrize("name", APPS)
def test_app_services(compose: dict[str, Any], name: str) -> None:
    app = compose["services"][name]
    assert app["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    env = env_of(app)
    assert env["FASTERAPI_BACKEND"] == "redis://redis:6379/0"
    assert int(env["WEB_CONCURRENCY"]) >= 1
    # Starts only once Redis answers, not merely once its container exists.
    assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in app, "the app instances are reached through nginx only"


def test_nginx_service(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    assert nginx["image"].split(":")[0] == "nginx"
    assert nginx["ports"] == ["8080:80"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert set(nginx["depends_on"]) == set(APPS)
    # The upstream names in nginx.conf are the compose service names, on the app's port.
    conf = NGINX_CONF.read_text()
    for upstream in COMPOSE_UPSTREAMS:
        assert re.search(rf"(?m)^\s*server\s+{re.escape(upstream)}[\s;]", conf), upstream
    assert re.search(r"(?m)^\s*listen\s+80;", conf)


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    base = next(line for line in instructions if line.startswith("FROM "))
    assert re.fullmatch(r"FROM python:3\.11-slim(@sha256:\w+)?", base), base
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the app must not run as root"
    assert re.search(r"(?m)^HEALTHCHECK .*\n?.*/healthz", text)
    assert not any("curl" in line for line in instructions), "slim images have no curl"
    assert "[redis,server,metrics]" in text
    assert re.search(r"(?m)^COPY examples ", text)
    cmd = next(line for line in instructions if line.startswith("CMD "))
    assert "gunicorn" in cmd and "deploy/gunicorn.conf.py" in cmd and "examples.demo_hub:app" in cmd


def test_dockerignore_keeps_the_image_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests", "**/node_modules"):
        assert entry in ignored


@contextmanager
def patched_environ(**values: str) -> Iterator[None]:
    keys = ("WEB_CONCURRENCY", "BIND", "HOST", "PORT", "PROMETHEUS_MULTIPROC_DIR")
    clean = {key: value for key, value in os.environ.items() if key not in keys}
    with mock.patch.dict(os.environ, {**clean, **values}, clear=True):
        yield


def load_gunicorn_conf(**environ: str) -> dict[str, Any]:
    with patched_environ(**environ):
        return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_conf_uses_uvicorn_worker() -> None:
    conf = load_gunicorn_conf()
    assert conf["worker_class"] == "FasterAPI.server.worker.FasterWorker"
    # Ours is the maintained uvicorn-worker class, not the deprecated uvicorn.workers one.
    from uvicorn_worker import UvicornWorker

    from FasterAPI.server.worker import FasterWorker

    assert issubclass(FasterWorker, UvicornWorker)
    assert conf["preload_app"] is False
    assert conf["graceful_timeout"] > 0 and conf["timeout"] > 0 and conf["keepalive"] > 0
    assert callable(conf["on_starting"]) and callable(conf["child_exit"])


def test_gunicorn_conf_reads_the_environment() -> None:
    conf = load_gunicorn_conf(WEB_CONCURRENCY="3", BIND="127.0.0.1:9001")
    assert conf["workers"] == 3
    assert conf["bind"] == ["127.0.0.1:9001"]
    conf = load_gunicorn_conf(HOST="10.0.0.5", PORT="7000")
    assert conf["bind"] == ["10.0.0.5:7000"]


def test_gunicorn_conf_defaults() -> None:
    conf = load_gunicorn_conf()
    assert conf["bind"] == ["0.0.0.0:8000"]
    assert 1 <= conf["workers"] <= 8
    assert conf["workers"] == min(2 * (os.cpu_count() or 1), 8)


def test_gunicorn_conf_sets_up_metrics_dir(tmp_path: Path) -> None:
    """on_starting gives the workers a clean multiprocess directory; child_exit and on_exit clean up.

    child_exit imports prometheus_client, which fixes its storage mode from the environment at
    first import: this module imports it at the top, so the patched variable cannot switch this
    whole test process to multiprocess mode.
    """
    server = mock.Mock()
    with patched_environ():
        conf = runpy.run_path(str(GUNICORN_CONF))
        conf["on_starting"](server)
        directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert directory.is_dir()
        (directory / "gauge_livesum_4242.db").write_bytes(b"")
        conf["child_exit"](server, mock.Mock(pid=4242))
        assert not (directory / "gauge_livesum_4242.db").exists()
        conf["on_exit"](server)
        assert not directory.exists()

    stale = tmp_path / "counter_1.db"
    stale.write_bytes(b"old run")
    with patched_environ(PROMETHEUS_MULTIPROC_DIR=str(tmp_path)):
        conf = runpy.run_path(str(GUNICORN_CONF))
        conf["on_starting"](server)
        assert not stale.exists(), "files of an earlier run would add to this run's counts"
        conf["on_exit"](server)
        assert tmp_path.is_dir(), "a directory the user chose is not removed"
