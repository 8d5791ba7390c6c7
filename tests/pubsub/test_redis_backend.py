"""RedisBackend against a real redis-server: namespacing, connection economy, and recovery.

Each test gets its own redis-server on a free loopback port (the ``redis_server`` fixture),
which it may kill -9, restart on the same port, freeze, or tell to drop clients.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from FasterAPI.pubsub.backends.base import BackendUnavailable
from FasterAPI.pubsub.backends.redis import RedisBackend
from tests.redis_server import RedisServer
from tests.servers import free_port

from .test_backend_contract import RecordingListener, poll_until, run

pytestmark = pytest.mark.timeout(60)


def make(server: RedisServer, prefix: str = "t:", **options: Any) -> RedisBackend:
    """A backend tuned for fast tests: quick health checks, short timeouts, fast backoff."""
    settings: dict[str, Any] = {
        "prefix": prefix,
        "health_check_interval": 1.0,
        "socket_timeout": 1.0,
        "connect_timeout": 1.0,
        "backoff_base": 0.02,
        "backoff_cap": 0.2,
        "startup_wait": 5.0,
    }
    settings.update(options)
    return RedisBackend(server.url, **settings)


def clients_by_name(server: RedisServer) -> collections.Counter[str]:
    """Connections the server sees, by client name ("" for unnamed ones)."""
    return collections.Counter(entry.get("name", "") for entry in server.admin.client_list())


def subscriptions_of(server: RedisServer, name: str) -> list[int]:
    """The ``sub`` count of every connection named ``name``."""
    return [int(entry["sub"]) for entry in server.admin.client_list() if entry.get("name") == name]


def local_sockets_to(port: int) -> collections.Counter[str]:
    """States of this host's TCP sockets whose remote end is 127.0.0.1:``port`` (client sides).

    ``CLOSE_WAIT`` is a client socket the server closed but the client never did: a leak.
    """
    names = {"01": "ESTABLISHED", "08": "CLOSE_WAIT"}
    states: collections.Counter[str] = collections.Counter()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if remote == f"0100007F:{port:04X}" and state in names:
                states[names[state]] += 1
    return states


async def roundtrip(backend: RedisBackend, listener: RecordingListener, channel: str = "room") -> None:
    """Publish a unique payload on a subscribed channel and wait for it to come back."""
    token = os.urandom(8)
    await backend.publish(channel, token)
    await listener.wait_for(lambda: token in listener.on(channel), f"round trip on {channel!r}")


# Construction


def test_from_url_takes_backend_options_out_of_the_query() -> None:
    backend = RedisBackend.from_url(
        "rediss://user:s3cr%40t@example.com:6380/2?prefix=app1:&health_check_interval=2"
        "&ssl_cert_reqs=none&startup_wait=0.5",
        backoff_cap=3.0,
    )
    assert backend.prefix == "app1:"
    assert backend.health_check_interval == 2.0
    assert backend.startup_wait == 0.5
    assert backend.backoff.cap == 3.0
    # The rest goes to redis-py as it was: credentials, TLS, db and redis-py's own options.
    assert backend.url == "rediss://user:s3cr%40t@example.com:6380/2?ssl_cert_reqs=none"
    pool = backend._make_pool("pub")
    assert pool.connection_kwargs["password"] == "s3cr@t"
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["client_name"] == "app1:pub"
    assert "SSL" in pool.connection_class.__name__


def test_registry_builds_redis_backend_from_url() -> None:
    from FasterAPI.pubsub.backends import backend_from_url

    backend = backend_from_url("redis://127.0.0.1:1/0?prefix=x:")
    assert isinstance(backend, RedisBackend)
    assert backend.prefix == "x:"


def test_password_in_url() -> None:
    with RedisServer(password="s3cr@t/:x") as server:

        async def main() -> None:
            listener = RecordingListener()
            backend = RedisBackend.from_url(server.url + "?prefix=auth:", startup_wait=5.0)
            await backend.start(listener)
            try:
                assert backend.available
                await backend.subscribe("room")
                await roundtrip(backend, listener)
                await backend.presence.heartbeat("a", 5)
                await backend.presence.add("lobby", ["a.1"])
                assert await backend.presence.members("lobby") == ["a.1"]
            finally:
                await backend.stop()

            wrong = RedisBackend(f"redis://:wrong@127.0.0.1:{server.port}/0", startup_wait=0.3)
            wrong_listener = RecordingListener()
            await wrong.start(wrong_listener)
            try:
                assert not wrong.available
                assert wrong_listener.events == ["lost"]
            finally:
                await wrong.stop()

        run(main())


def test_rediss_tls_with_password(tmp_path: Path) -> None:
    """rediss:// with a password against a redis-server that only speaks TLS on that port."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tls_port = free_port()
    tls_args = ("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")  # fmt: skip
    with RedisServer(password="tls-pass", extra_args=tls_args):
        url = f"rediss://:tls-pass@127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}&prefix=tls:"

        async def main() -> None:
            listener = RecordingListener()
            backend = RedisBackend.from_url(url, startup_wait=5.0)
            await backend.start(listener)
            try:
                assert backend.available
                await backend.subscribe("room")
                await roundtrip(backend, listener)
                await backend.presence.heartbeat("a", 5)
                await backend.presence.add("lobby", ["a.1"])
                assert await backend.presence.count("lobby") == 1
            finally:
                await backend.stop()
            # The same port without TLS is refused: the connection really is encrypted.
            plain = RedisBackend(f"redis://:tls-pass@127.0.0.1:{tls_port}/0", startup_wait=0.5)
            plain_listener = RecordingListener()
            await plain.start(plain_listener)
            try:
                assert not plain.available
            finally:
                await plain.stop()

        run(main())


# Namespacing and connection economy


def test_prefixes_isolate_apps_on_one_server(redis_server: RedisServer) -> None:
    async def main() -> None:
        one_listener, two_listener = RecordingListener(), RecordingListener()
        one, two = make(redis_server, "app1:"), make(redis_server, "app2:")
        await one.start(one_listener)
        await two.start(two_listener)
        try:
            for backend in (one, two):
                await backend.subscribe("room")
            await one.publish("room", b"for app1")
            await two.publish("room", b"for app2")
            await roundtrip(one, one_listener)
            await roundtrip(two, two_listener)
            assert b"for app2" not in one_listener.on("room")
            assert b"for app1" not in two_listener.on("room")
            assert one_listener.on("room")[0] == b"for app1"
            assert two_listener.on("room")[0] == b"for app2"

            await one.presence.heartbeat("w", 30)
            await one.presence.add("lobby", ["w.1", "w.2"])
            assert await two.presence.count("lobby") == 0
            assert sorted(await one.presence.members("lobby")) == ["w.1", "w.2"]
            keys = sorted(redis_server.admin.keys("*"))
            assert keys == [b"app1:presence-workers", b"app1:presence:{lobby}"]
            assert 0 < redis_server.admin.zscore("app1:presence-workers", "w") - time.time() * 1000 <= 30_000
        finally:
            await one.stop()
            await two.stop()

    run(main())


def test_one_subscriber_connection_however_many_channels(redis_server: RedisServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server, "eco:")
        await backend.start(listener)
        try:
            channels = [f"room:{i}" for i in range(200)]
            for channel in channels:
                await backend.subscribe(channel)
            await asyncio.gather(*(backend.publish(channel, b"x") for channel in channels))
            await listener.wait_for(lambda: len(listener.messages) == 200, "a message per channel")
            assert backend.subscribed_channels == set(channels)
            names = clients_by_name(redis_server)
            assert names["eco:sub"] == 1
            assert subscriptions_of(redis_server, "eco:sub") == [200]
            assert 1 <= names["eco:pub"] <= 50  # a bounded pool, not one connection per message
            for _ in range(300):
                await backend.publish("room:0", b"y")
            assert clients_by_name(redis_server)["eco:pub"] == names["eco:pub"]
        finally:
            await backend.stop()
        assert clients_by_name(redis_server)["eco:sub"] == 0
        await poll_until(_no_clients(redis_server, "eco:"), "connections to close after stop")

    run(main())


def _no_clients(server: RedisServer, prefix: str) -> Any:
    async def check() -> bool:
        return not any(name.startswith(prefix) for name in clients_by_name(server))

    return check


# Recovery


def test_kill_and_restart_recovers_subscriptions(redis_server: RedisServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server)
        await backend.start(listener)
        try:
            await backend.subscribe("room")
            await backend.subscribe("dropped-while-down")
            await roundtrip(backend, listener)

            redis_server.kill()
            await listener.wait_for(lambda: listener.events == ["lost"], "on_connection_lost")
            assert not backend.available
            assert isinstance(listener.errors[0], Exception)
            # Subscription changes while down are recorded, not refused.
            await backend.subscribe("added-while-down")
            await backend.unsubscribe("dropped-while-down")

            redis_server.start()
            await listener.wait_for(lambda: listener.events == ["lost", "restored"], "on_connection_restored")
            assert backend.available
            assert backend.backoff.attempts == 0  # reset by the successful connection
            await roundtrip(backend, listener)
            await roundtrip(backend, listener, "added-while-down")
            assert subscriptions_of(redis_server, "t:sub") == [2]
        finally:
            await backend.stop()

    run(main())


def test_ten_restarts_leak_no_connections(redis_server: RedisServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server, "leak:")
        await backend.start(listener)
        try:
            await backend.subscribe("room")
            await roundtrip(backend, listener)
            baseline = clients_by_name(redis_server)
            sockets = local_sockets_to(redis_server.port)
            assert baseline["leak:sub"] == 1 and baseline["leak:pub"] >= 1
            assert sockets["CLOSE_WAIT"] == 0

            def seen(event: str, times: int) -> Callable[[], bool]:
                return lambda: listener.events.count(event) == times

            for cycle in range(1, 11):
                redis_server.kill()
                await listener.wait_for(seen("lost", cycle), f"loss #{cycle}")
                redis_server.start()
                await listener.wait_for(seen("restored", cycle), f"recovery #{cycle}")
                await roundtrip(backend, listener)
                assert clients_by_name(redis_server) == baseline, f"after restart #{cycle}"
                assert local_sockets_to(redis_server.port) == sockets, f"after restart #{cycle}"

            assert listener.events == ["lost", "restored"] * 10
            assert backend.connection_losses == 10
        finally:
            await backend.stop()
        # And stop() closes every socket.
        redis_server.close_clients()

        async def all_closed() -> bool:
            return sum(local_sockets_to(redis_server.port).values()) == 0

        await poll_until(all_closed, "every client socket to close")

    run(main())


def test_client_kill_type_pubsub_recovers(redis_server: RedisServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server)
        await backend.start(listener)
        try:
            await backend.subscribe("room")
            await roundtrip(backend, listener)
            killed = redis_server.admin.client_kill_filter(_type="pubsub")
            assert killed == 1
            await listener.wait_for(lambda: listener.events == ["lost", "restored"], "lost then restored")
            await roundtrip(backend, listener)
            assert clients_by_name(redis_server)["t:sub"] == 1
        finally:
            await backend.stop()

    run(main())


class GrumpyListener(RecordingListener):
    """Raises from the connection callbacks (after recording them)."""

    def on_connection_lost(self, error: BaseException | None) -> None:
        super().on_connection_lost(error)
        raise RuntimeError("bug in on_connection_lost")

    def on_connection_restored(self) -> None:
        super().on_connection_restored()
        raise RuntimeError("bug in on_connection_restored")


def test_raising_connection_callbacks_do_not_stop_recovery(redis_server: RedisServer) -> None:
    async def main() -> None:
        listener = GrumpyListener()
        backend = make(redis_server)
        await backend.start(listener)
        try:
            await backend.subscribe("room")
            for round_ in range(1, 3):
                redis_server.admin.client_kill_filter(_type="pubsub")
                await listener.wait_events(["lost", "restored"] * round_)
                await roundtrip(backend, listener)
        finally:
            await backend.stop()

    run(main())


def test_output_buffer_limit_disconnect_recovers(redis_server: RedisServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server)
        await backend.start(listener)
        admin = redis_server.admin
        try:
            await backend.subscribe("room")
            await roundtrip(backend, listener)
            admin.config_set("client-output-buffer-limit", "pubsub 1024 0 0")
            await backend.publish("room", b"x" * (1024 * 1024))  # over the limit: Redis drops us
            await listener.wait_for(lambda: "lost" in listener.events, "the disconnect")
            admin.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")
            await listener.wait_for(lambda: listener.events == ["lost", "restored"], "recovery")
            await roundtrip(backend, listener)
        finally:
            await backend.stop()

    run(main())


def test_half_open_connection_is_detected(redis_server: RedisServer) -> None:
    interval = 0.3

    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server, health_check_interval=interval, socket_timeout=0.5, connect_timeout=0.5)
        await backend.start(listener)
        try:
            await backend.subscribe("room")
            await roundtrip(backend, listener)
            redis_server.pause()  # the socket stays open; nothing answers
            waited = await listener.wait_for(lambda: listener.events == ["lost"], "half-open detection")
            assert waited <= 2 * interval + 0.5
            assert "PING" in str(listener.errors[0])
            redis_server.resume()
            await listener.wait_for(lambda: listener.events == ["lost", "restored"], "recovery", timeout=15)
            await roundtrip(backend, listener)
        finally:
            redis_server.resume()
            await backend.stop()

    run(main())


def test_publish_while_down_raises_at_once(redis_server: RedisServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server, backoff_base=0.5, backoff_cap=5.0)
        await backend.start(listener)
        try:
            await backend.subscribe("room")
            redis_server.kill()
            await listener.wait_for(lambda: listener.events == ["lost"], "on_connection_lost")
            for _ in range(5):
                started = time.perf_counter()
                with pytest.raises(BackendUnavailable, match="room"):
                    await backend.publish("room", b"x")
                assert time.perf_counter() - started < 0.05
            started = time.perf_counter()
            with pytest.raises(BackendUnavailable):
                await backend.presence.add("lobby", ["a.1"])
            with pytest.raises(BackendUnavailable):
                await backend.presence.count("lobby")
            assert time.perf_counter() - started < 0.05
        finally:
            await backend.stop()

    run(main())


def test_publish_error_is_chained_backend_unavailable(redis_server: RedisServer) -> None:
    """Redis stops answering before the listener notices: publish times out, chained."""

    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server, health_check_interval=30, socket_timeout=0.3)
        await backend.start(listener)
        try:
            await backend.subscribe("room")
            await roundtrip(backend, listener)
            redis_server.pause()
            started = time.perf_counter()
            with pytest.raises(BackendUnavailable, match="room") as caught:
                await backend.publish("room", b"x")
            assert time.perf_counter() - started < 2.0
            assert isinstance(caught.value.__cause__, sync_redis.RedisError)
        finally:
            redis_server.resume()
            await backend.stop()

    run(main())


def test_start_while_redis_is_down_then_connects(redis_server: RedisServer) -> None:
    async def main() -> None:
        redis_server.kill()
        listener = RecordingListener()
        backend = make(redis_server, startup_wait=0.3)
        await backend.subscribe("room")
        started = time.perf_counter()
        await backend.start(listener)
        elapsed = time.perf_counter() - started
        try:
            assert 0.3 <= elapsed < 1.5
            assert not backend.available
            assert listener.events == ["lost"]
            with pytest.raises(BackendUnavailable):
                await backend.publish("room", b"x")
            redis_server.start()
            await listener.wait_for(lambda: listener.events == ["lost", "restored"], "first connection")
            assert backend.available
            await roundtrip(backend, listener)
        finally:
            await backend.stop()

    run(main())


def test_stop_during_outage_returns_promptly(redis_server: RedisServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server)
        await backend.start(listener)
        redis_server.pause()  # connection attempts now hang until their timeouts
        try:
            started = time.perf_counter()
            await backend.stop()
            await backend.stop()
            assert time.perf_counter() - started < 2.5
        finally:
            redis_server.resume()

    run(main())


def test_start_while_redis_hangs_reports_the_loss_before_returning(redis_server: RedisServer) -> None:
    """A silent Redis: no attempt has failed when startup_wait runs out, yet start() says it is down."""

    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server, startup_wait=0.3, connect_timeout=2.0, socket_timeout=2.0)
        await backend.subscribe("room")
        redis_server.pause()
        try:
            started = time.perf_counter()
            await backend.start(listener)
            assert time.perf_counter() - started < 1.5
            assert not backend.available
            assert listener.events == ["lost"]
            assert backend.connection_losses == 1
        finally:
            redis_server.resume()
        try:
            await listener.wait_events(["lost", "restored"], timeout=15)
            assert backend.available
            await roundtrip(backend, listener)
            assert backend.connection_losses == 1  # the failing attempts of one outage are one loss
        finally:
            await backend.stop()

    run(main())


def test_outage_log_lines(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """The lines the fault tests and operators grep for, from loggers under ``fasterapi.``."""
    caplog.set_level(logging.INFO, logger="fasterapi")

    async def main() -> None:
        listener = RecordingListener()
        backend = make(redis_server, "logs:")
        await backend.start(listener)
        try:
            await backend.subscribe("room")
            redis_server.kill()
            await listener.wait_events(["lost"])
            redis_server.start()
            await listener.wait_events(["lost", "restored"])
        finally:
            await backend.stop()

    run(main())
    lines = [record.getMessage() for record in caplog.records]
    assert all(record.name.startswith("fasterapi.") for record in caplog.records), caplog.records
    pid, url = os.getpid(), re.escape(redis_server.url)
    patterns = [
        rf"pid {pid}: connected to Redis at {url} \(prefix 'logs:'\)",
        rf"pid {pid}: Redis pub/sub connection to {url} lost at \S+: \w+Error: .+; reconnecting "
        r"\(backoff 0\.02s\.\.0\.20s\)",
        rf"pid {pid}: Redis pub/sub connection to {url} recovered at \S+ after [\d.]+s outage; "
        r"1 channel\(s\) resubscribed",
    ]
    for pattern in patterns:
        assert any(re.fullmatch(pattern, line) for line in lines), (pattern, lines)
