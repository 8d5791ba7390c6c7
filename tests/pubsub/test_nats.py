"""The NATS backend: subjects, its URL, what it does not keep, confirmations, a restart of nats-server.

The contract suite (test_backend_contract.py) runs on it too, against a nats-server with
JetStream that each test starts on a free port.
"""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from FasterAPI.pubsub.backends import backend_from_url
from FasterAPI.pubsub.backends.base import BackendUnavailable
from FasterAPI.pubsub.backends.nats import NatsBackend, subject_token
from FasterAPI.pubsub.history import History, Retention
from FasterAPI.pubsub.hub import Hub
from tests.nats_server import NatsServer
from tests.network_proxy import NetworkProxy
from tests.pubsub.test_backend_contract import RecordingListener, run

pytestmark = pytest.mark.timeout(60)

#: The issue's bound: every room receives again within 5 s of nats-server coming back.
RECOVERY_BOUND = 5.0


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=30), st.text(max_size=30))
def test_a_channel_is_one_subject_token_and_no_two_channels_share_one(a: str, b: str) -> None:
    token = subject_token(a)
    assert not any(char in token for char in ".*>") and not any(char.isspace() for char in token)
    assert (subject_token(a) == subject_token(b)) == (a == b)


def test_the_url_names_servers_and_options() -> None:
    backend = backend_from_url("nats://u:pw@10.0.0.1:4333,10.0.0.2?prefix=shop.&health_check_interval=2")
    assert isinstance(backend, NatsBackend)
    assert backend.servers == ["nats://u:pw@10.0.0.1:4333", "nats://u:pw@10.0.0.2:4222"]
    assert (backend.prefix, backend.health_check_interval) == ("shop.", 2.0)
    assert backend.subject("room:a.b c") == "shop.room:a%2Eb%20c"
    bad_urls = (("nats://", "at least one server"), ("nats://h:x", "Bad NATS server"), ("nats://h?x=1", "Unknown"))
    for bad, why in bad_urls:
        with pytest.raises(ValueError, match=why):
            NatsBackend.from_url(bad)


def test_nats_keeps_no_history_and_says_so(nats_server: NatsServer) -> None:
    with pytest.raises(TypeError, match="keeps no room history"):
        Hub(NatsBackend.from_url(nats_server.url), history=History(size=10))

    async def main() -> None:
        backend = NatsBackend.from_url(nats_server.url)
        await backend.start(RecordingListener())
        try:
            assert not backend.keeps_history
            with pytest.raises(BackendUnavailable, match="history"):
                await backend.publish("room:a", b"x", Retention("a", 10, 60))
        finally:
            await backend.stop()

    run(main())


def test_a_restarted_nats_server_is_followed_within_seconds(nats_server: NatsServer) -> None:
    async def main() -> None:
        listeners = [RecordingListener(), RecordingListener()]
        workers = [NatsBackend.from_url(nats_server.url, backoff_cap=0.5) for _ in listeners]
        try:
            for worker, listener in zip(workers, listeners, strict=True):
                await worker.start(listener)
                await worker.subscribe("room:a")
            nats_server.kill()
            for listener in listeners:
                await listener.wait_for(lambda lis=listener: lis.events == ["lost"], "the loss")  # type: ignore[misc]
            with pytest.raises(BackendUnavailable):
                await workers[0].publish("room:a", b"while down")
            nats_server.start()
            back = time.monotonic()
            for listener in listeners:
                await listener.wait_for(
                    lambda lis=listener: lis.events == ["lost", "restored"], "the restore", timeout=RECOVERY_BOUND  # type: ignore[misc]
                )
            await workers[1].publish("room:a", b"after")
            for listener in listeners:
                await listener.wait_for(lambda lis=listener: b"after" in lis.on("room:a"), "the message", timeout=5)  # type: ignore[misc]
            recovered = time.monotonic() - back
            assert recovered < RECOVERY_BOUND
            print(f"\nnats-server restarted: both workers receiving again {recovered:.2f}s after it was back")
        finally:
            for worker in workers:
                await worker.stop()

    run(main())


#: One line every 0.2 s on the way from the worker to nats-server: two writes the client made a
#: moment apart reach the server far apart, so a confirmation that overtakes them shows.
SLOW_LINE = 0.2


def test_subscribed_means_on_the_server_even_over_a_slow_link(nats_server: NatsServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        publisher = await nats.connect(nats_server.url)
        async with NetworkProxy(nats_server.port, line_delay=SLOW_LINE) as link:
            worker = NatsBackend.from_url(f"nats://127.0.0.1:{link.port}", connect_timeout=10)
            try:
                await worker.start(listener)
                await worker.subscribe("room:a")
                await publisher.publish(worker.subject("room:a"), b"right after subscribe")
                await publisher.flush()
                await listener.wait_for(lambda: listener.on("room:a") == [b"right after subscribe"], "the message")

                await publisher.close()
                nats_server.restart()  # the worker resubscribes over the same slow link
                await listener.wait_for(lambda: listener.events == ["lost", "restored"], "the restore", timeout=30)
                publisher = await nats.connect(nats_server.url)  # a client of its own, not nats-py's reconnect
                await publisher.publish(worker.subject("room:a"), b"right after the restore")
                await publisher.flush()
                await listener.wait_for(lambda: b"right after the restore" in listener.on("room:a"), "the message")
            finally:
                await worker.stop()
                await publisher.close()

    run(main())


def test_published_means_on_the_server_even_over_a_slow_link(nats_server: NatsServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        receiver = NatsBackend.from_url(nats_server.url)
        publisher = await nats.connect(nats_server.url)
        async with NetworkProxy(nats_server.port, line_delay=SLOW_LINE) as link:
            slow = NatsBackend.from_url(f"nats://127.0.0.1:{link.port}", connect_timeout=10)
            try:
                await receiver.start(listener)
                await receiver.subscribe("room:a")
                await slow.start(RecordingListener())
                await slow.publish("room:a", b"first")
                # Published after the slow worker's publish returned: it must arrive second.
                await publisher.publish(receiver.subject("room:a"), b"second")
                await publisher.flush()
                await listener.wait_for(lambda: len(listener.on("room:a")) == 2, "both messages")
                assert listener.on("room:a") == [b"first", b"second"]
            finally:
                await slow.stop()
                await receiver.stop()
                await publisher.close()

    run(main())


def test_no_echo_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="no_echo"):
        NatsBackend(connect_options={"no_echo": True})


def test_concurrent_publishes_share_barriers_and_each_arrives_once(nats_server: NatsServer) -> None:
    async def main() -> None:
        listener = RecordingListener()
        receiver = NatsBackend.from_url(nats_server.url)
        sender = NatsBackend.from_url(nats_server.url)
        try:
            await receiver.start(listener)
            await receiver.subscribe("room:a")
            await sender.start(RecordingListener())
            await asyncio.gather(*(sender.publish("room:a", b"%d" % n) for n in range(200)))
            await listener.wait_for(lambda: len(listener.on("room:a")) >= 200, "every message")
            assert sorted(listener.on("room:a"), key=int) == [b"%d" % n for n in range(200)]
            assert sender._session is not None
            # One barrier in flight, the rest waiting for the next: a handful, not 200.
            assert sender._session._last_token <= 10
        finally:
            await sender.stop()
            await receiver.stop()

    run(main())


#: A user allowed only what a worker needs: its prefix's subjects, JetStream's API (presence is
#: a KV bucket) and the replies to its own requests. Publishing to _INBOX is not among them, nor
#: is the room "closed".
PREFIX_ONLY_USER = """
authorization {
  users = [
    {user: worker, password: secret, permissions: {
      publish: {allow: ["fasterapi.>", "$JS.API.>", "$KV.>"], deny: ["fasterapi.closed"]},
      subscribe: ["fasterapi.>", "_INBOX.>"]
    }}
  ]
}
"""


def test_a_user_allowed_only_the_prefix_and_jetstream_is_enough(caplog: pytest.LogCaptureFixture) -> None:
    server = NatsServer(config=PREFIX_ONLY_USER)

    async def main() -> None:
        url = f"nats://worker:secret@127.0.0.1:{server.port}"
        listener = RecordingListener()
        receiver, sender = NatsBackend.from_url(url), NatsBackend.from_url(url)
        try:
            await receiver.start(listener)
            await receiver.subscribe("room:a")
            await sender.start(RecordingListener())
            assert receiver.available and sender.available
            await sender.publish("room:a", b"hello")
            await listener.wait_for(lambda: listener.on("room:a") == [b"hello"], "the message")
            # A refused publish cannot fail the call (the server's refusal is asynchronous), but
            # it is logged, by the time the publish returns: the barrier came after it.
            await sender.publish("closed", b"refused")
            warnings = [r.getMessage().lower() for r in caplog.records if r.levelname == "WARNING"]
            assert any('permissions violation for publish to "fasterapi.closed"' in w for w in warnings)
        finally:
            await sender.stop()
            await receiver.stop()

    try:
        server.start()
        run(main())
    finally:
        server.stop()
