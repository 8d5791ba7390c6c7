"""The reconnect machinery on its own (``FasterAPI.pubsub.backends._reconnect``), with no broker.

:class:`Backoff` is a pure object. :class:`Supervisor` runs against :class:`FakeLink`, whose
connect and listen wait for the test to say how they end, so every interleaving is chosen
by the test. Synchronisation is by events and poll-until-deadline, never by fixed sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections.abc import Callable

import pytest

from FasterAPI.pubsub.backends._reconnect import Backoff, Supervisor
from FasterAPI.pubsub.backends._url import redact_url

from .test_backend_contract import RecordingListener, run

pytestmark = pytest.mark.timeout(60)


# The backoff policy, as a pure object


def test_backoff_is_exponential_capped_and_resets() -> None:
    top = Backoff(base=0.1, cap=1.0, rand=lambda: 1.0)
    assert [top.next_delay() for _ in range(7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
    top.reset()
    assert top.next_delay() == pytest.approx(0.1)
    bottom = Backoff(base=0.1, cap=1.0, rand=lambda: 0.0)
    assert [bottom.next_delay() for _ in range(5)] == [0.0] * 5
    many = Backoff(base=0.1, cap=5.0)
    for _ in range(10_000):  # no overflow however long the outage
        assert 0.0 <= many.next_delay() <= 5.0
    with pytest.raises(ValueError):
        Backoff(base=0, cap=1)
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)


def test_backoff_has_full_jitter() -> None:
    rng = random.Random(1234)
    samples = []
    for _ in range(2000):
        policy = Backoff(base=0.1, cap=5.0, rand=rng.random)
        for _ in range(3):
            policy.next_delay()
        samples.append(policy.next_delay())  # the 4th delay: ceiling 0.8
    assert all(0.0 <= delay <= 0.8 for delay in samples)
    assert min(samples) < 0.05 and max(samples) > 0.75  # spread over the whole range
    assert 0.35 < sum(samples) / len(samples) < 0.45  # uniform: mean is half the ceiling


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://user:pw@host/1?x=y") == "rediss://user:***@host/1?x=y"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


# The supervisor, against a scripted fake link


class RecordingBackoff(Backoff):
    """No jitter (delay = ceiling), and every delay handed out is kept."""

    def __init__(self, base: float = 0.001, cap: float = 0.008) -> None:
        super().__init__(base, cap, rand=lambda: 1.0)
        self.delays: list[float] = []

    def next_delay(self) -> float:
        delay = super().next_delay()
        self.delays.append(delay)
        return delay


class Session:
    """One fake connection: ``end`` resolves with the error it fails with (or raises a bug)."""

    def __init__(self) -> None:
        self.end: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()


class FakeLink:
    """The backend side of a supervisor: its owner state and its three coroutines.

    ``connect`` waits until the test calls :meth:`accept` or :meth:`refuse` (or fails at once
    while ``refuse_all`` is set); ``listen`` waits until :meth:`drop` or :meth:`crash`.
    """

    def __init__(self) -> None:
        self.available = False
        self.subscribed_channels = {"room:a", "room:b"}
        self.attempts = 0
        self.abandoned = 0
        self.refuse_all: BaseException | None = None
        self.abandon_error: BaseException | None = None
        self.pending: asyncio.Future[None] | None = None
        self.session: Session | None = None

    async def connect(self) -> Session:
        self.attempts += 1
        if self.refuse_all is not None:
            raise self.refuse_all
        self.pending = asyncio.get_running_loop().create_future()
        try:
            await self.pending
        finally:
            self.pending = None
        return Session()

    async def listen(self, session: Session) -> BaseException:
        self.session = session
        try:
            return await session.end
        finally:
            self.session = None

    async def abandon(self) -> None:
        self.abandoned += 1
        if self.abandon_error is not None:
            error, self.abandon_error = self.abandon_error, None
            raise error

    async def connecting(self) -> asyncio.Future[None]:
        """Wait until a connect attempt waits for the test's verdict."""
        await until(lambda: self.pending is not None and not self.pending.done(), "a connect attempt")
        assert self.pending is not None
        return self.pending

    async def accept(self) -> None:
        (await self.connecting()).set_result(None)
        await until(lambda: self.session is not None, "the session to be listened to")

    async def refuse(self, error: BaseException | None = None) -> None:
        (await self.connecting()).set_exception(error or ConnectionRefusedError("refused"))

    async def listening(self) -> Session:
        await until(lambda: self.session is not None and not self.session.end.done(), "a listening session")
        assert self.session is not None
        return self.session

    async def drop(self, error: BaseException | None = None) -> None:
        """End the session as a network failure would: listen returns the error."""
        (await self.listening()).end.set_result(error or ConnectionResetError("reset by peer"))

    async def crash(self, bug: BaseException) -> None:
        """End the session as a bug would: listen raises."""
        (await self.listening()).end.set_exception(bug)


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.001)


def supervise(link: FakeLink, backoff: Backoff | None = None, startup_wait: float = 5.0) -> Supervisor[Session]:
    return Supervisor(
        link,
        name="Fake",
        target="fake://broker",
        detail="prefix 'p:'",
        connect=link.connect,
        listen=link.listen,
        abandon=link.abandon,
        backoff=backoff or RecordingBackoff(),
        startup_wait=startup_wait,
        stop_timeout=1.0,
    )


def test_connect_then_lost_then_restored() -> None:
    async def main() -> None:
        link, listener = FakeLink(), RecordingListener()
        supervisor = supervise(link)
        starting = asyncio.create_task(supervisor.start(listener))
        await link.accept()
        await starting
        assert link.available and listener.events == []
        await link.drop()
        await listener.wait_events(["lost"])
        assert not link.available
        assert isinstance(listener.errors[0], ConnectionResetError)
        assert link.abandoned == 1  # the failed session was dropped before the retry
        await link.accept()
        await listener.wait_events(["lost", "restored"])
        assert link.available
        assert supervisor.connection_losses == 1
        await supervisor.stop()
        assert not link.available
        assert listener.events == ["lost", "restored"]  # a stop is not a loss

    run(main())


def test_first_connect_failing_is_a_loss_and_alternation_starts_with_lost() -> None:
    async def main() -> None:
        link, listener = FakeLink(), RecordingListener()
        supervisor = supervise(link)
        starting = asyncio.create_task(supervisor.start(listener))
        await link.refuse()
        await listener.wait_events(["lost"])
        await link.refuse()
        await link.refuse()  # one outage, however many attempts: still one "lost"
        assert listener.events == ["lost"]
        assert not starting.done()  # start() waits for a first connection, up to startup_wait
        await link.accept()
        await starting
        assert listener.events == ["lost", "restored"]
        assert link.available
        assert supervisor.connection_losses == 1
        await supervisor.stop()

    run(main())


def test_lost_and_restored_strictly_alternate_whatever_happens() -> None:
    async def main(seed: int) -> None:
        rng = random.Random(seed)
        link, listener = FakeLink(), RecordingListener()
        supervisor = supervise(link)
        starting = asyncio.create_task(supervisor.start(listener))

        def connecting() -> bool:
            return link.pending is not None and not link.pending.done()

        def listening() -> bool:
            return link.session is not None and not link.session.end.done()

        for _ in range(40):
            await until(lambda: connecting() or listening(), "the next connect or session")
            if connecting():
                await (link.accept() if rng.random() < 0.5 else link.refuse())
            else:
                await (link.drop() if rng.random() < 0.7 else link.crash(RuntimeError("bug")))
            await until(lambda: connecting() or listening(), "the verdict to be handled")
            events = listener.events
            assert events == ["lost", "restored"] * (len(events) // 2) + ["lost"] * (len(events) % 2), events
            if listening():
                assert link.available and (not events or events[-1] == "restored")
            else:
                assert not link.available and events[-1] == "lost"
            assert supervisor.connection_losses == events.count("lost")
        await supervisor.stop()
        await starting

    for seed in range(5):
        run(main(seed))


def test_backoff_grows_while_down_and_resets_after_a_success() -> None:
    async def main() -> None:
        link, listener = FakeLink(), RecordingListener()
        backoff = RecordingBackoff(base=0.001, cap=0.004)
        supervisor = supervise(link, backoff)
        starting = asyncio.create_task(supervisor.start(listener))
        for _ in range(4):
            await link.refuse()
        await link.accept()
        await starting
        assert backoff.delays == pytest.approx([0.001, 0.002, 0.004, 0.004])  # capped
        assert backoff.attempts == 0
        await link.drop()
        await link.refuse()
        await link.accept()
        # The first retry of the new outage starts again from base.
        assert backoff.delays[4:] == pytest.approx([0.001, 0.002])
        assert listener.events == ["lost", "restored", "lost", "restored"]
        await supervisor.stop()

    run(main())


def test_a_bug_in_listen_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fasterapi.backends.reconnect")

    async def main() -> None:
        link, listener = FakeLink(), RecordingListener()
        supervisor = supervise(link)
        starting = asyncio.create_task(supervisor.start(listener))
        await link.accept()
        await starting
        await link.crash(KeyError("bug in listen"))
        await listener.wait_events(["lost"])
        assert listener.errors == [None]  # not a network error: there is none to report
        assert not link.available
        await until(lambda: link.abandoned == 1, "the session to be abandoned")
        # A bug in abandon too: logged, and the loop still goes on.
        link.abandon_error = RuntimeError("bug in abandon")
        await link.refuse()
        await link.accept()
        await listener.wait_events(["lost", "restored"])
        await link.drop()
        await link.accept()
        await listener.wait_events(["lost", "restored"] * 2)
        await supervisor.stop()

    run(main())
    bugs = [record for record in caplog.records if "unexpected error in the Fake listener" in record.getMessage()]
    assert len(bugs) == 1 and bugs[0].exc_info is not None
    assert isinstance(bugs[0].exc_info[1], KeyError)
    assert any("abandoning the Fake session failed" in record.getMessage() for record in caplog.records)
    assert not any(record.levelno >= logging.CRITICAL for record in caplog.records)


def test_raising_listener_callbacks_do_not_stop_the_loop() -> None:
    class Grumpy(RecordingListener):
        def on_connection_lost(self, error: BaseException | None) -> None:
            super().on_connection_lost(error)
            raise RuntimeError("bug in on_connection_lost")

        def on_connection_restored(self) -> None:
            super().on_connection_restored()
            raise RuntimeError("bug in on_connection_restored")

    async def main() -> None:
        link, listener = FakeLink(), Grumpy()
        supervisor = supervise(link)
        starting = asyncio.create_task(supervisor.start(listener))
        await link.accept()
        await starting
        for round_ in range(1, 3):
            await link.drop()
            await link.accept()
            await listener.wait_events(["lost", "restored"] * round_)
        await supervisor.stop()

    run(main())


def test_start_returns_after_startup_wait_while_connect_keeps_failing() -> None:
    async def main() -> None:
        link, listener = FakeLink(), RecordingListener()
        link.refuse_all = ConnectionRefusedError("nobody home")
        supervisor = supervise(link, startup_wait=0.2)
        started = time.monotonic()
        await supervisor.start(listener)
        assert 0.2 <= time.monotonic() - started < 1.0
        assert not link.available
        assert listener.events == ["lost"]
        assert isinstance(listener.errors[0], ConnectionRefusedError)
        attempts = link.attempts
        await until(lambda: link.attempts > attempts, "retries in the background")
        link.refuse_all = None
        await link.accept()
        await listener.wait_events(["lost", "restored"])
        assert supervisor.connection_losses == 1
        await supervisor.stop()

    run(main())


def test_start_reports_the_loss_when_the_first_connect_hangs() -> None:
    """A silent network: no attempt has failed by startup_wait, yet the listener must know."""

    async def main() -> None:
        link, listener = FakeLink(), RecordingListener()
        supervisor = supervise(link, startup_wait=0.1)
        await supervisor.start(listener)
        assert listener.events == ["lost"]
        assert isinstance(listener.errors[0], TimeoutError)
        assert not link.available
        await link.refuse()  # the hanging attempt fails later: the same outage, no second "lost"
        await link.accept()
        await listener.wait_events(["lost", "restored"])
        assert supervisor.connection_losses == 1
        await supervisor.stop()

    run(main())


def test_stop_ends_the_loop_while_it_is_connecting() -> None:
    async def main() -> None:
        link, listener = FakeLink(), RecordingListener()
        supervisor = supervise(link)
        starting = asyncio.create_task(supervisor.start(listener))
        await link.connecting()
        started = time.monotonic()
        await supervisor.stop()
        assert time.monotonic() - started < 0.5
        await asyncio.wait_for(starting, 1.0)  # a start() still waiting returns too
        assert not supervisor.running and not link.available
        assert link.pending is None  # the connect attempt was cancelled
        assert listener.events == []
        await supervisor.stop()  # idempotent

    run(main())


def test_stop_cancels_until_it_sticks() -> None:
    """A cancel swallowed below (asyncio.wait_for on Python 3.11 can) does not keep the loop alive."""

    class Stubborn(FakeLink):
        swallowed = 0

        async def connect(self) -> Session:
            try:
                return await super().connect()
            except asyncio.CancelledError:
                self.swallowed += 1
                return await super().connect()  # carries on as if nothing happened

    async def main() -> None:
        link, listener = Stubborn(), RecordingListener()
        supervisor = supervise(link, startup_wait=0.0)
        await supervisor.start(listener)
        await link.connecting()
        await supervisor.stop()
        assert link.swallowed == 1
        assert not supervisor.running and link.pending is None

    run(main())


def test_stop_then_start_again() -> None:
    async def main() -> None:
        link, listener = FakeLink(), RecordingListener()
        supervisor = supervise(link)
        for _ in range(2):
            starting = asyncio.create_task(supervisor.start(listener))
            await link.accept()
            await starting
            with pytest.raises(RuntimeError, match="already started"):
                await supervisor.start(listener)
            await supervisor.stop()
        assert listener.events == []

    run(main())


def test_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    """The formats the fault tests grep, with the broker's name and target from the parameters."""
    caplog.set_level(logging.INFO, logger="fasterapi")

    async def main() -> None:
        link, listener = FakeLink(), RecordingListener()
        supervisor = supervise(link, RecordingBackoff(base=0.25, cap=2.0))
        starting = asyncio.create_task(supervisor.start(listener))
        await link.accept()
        await starting
        await link.drop(ConnectionResetError("reset by peer"))
        await link.accept()
        await listener.wait_events(["lost", "restored"])
        await supervisor.stop()
        link.refuse_all = OSError("down")
        unreachable = supervise(link, startup_wait=0.1)
        await unreachable.start(RecordingListener())
        await unreachable.stop()

    run(main())
    pid = os.getpid()
    lines = [record.getMessage() for record in caplog.records]
    assert {record.name for record in caplog.records} == {"fasterapi.backends.reconnect"}
    patterns = [
        rf"pid {pid}: connected to Fake at fake://broker \(prefix 'p:'\)",
        rf"pid {pid}: Fake pub/sub connection to fake://broker lost at \S+: ConnectionResetError: reset by peer; "
        r"reconnecting \(backoff 0\.25s\.\.2\.00s\)",
        rf"pid {pid}: Fake pub/sub connection to fake://broker recovered at \S+ after [\d.]+s outage; "
        r"2 channel\(s\) resubscribed",
        rf"pid {pid}: Fake at fake://broker not reachable within 0\.1s of start; "
        r"starting without it and retrying in the background",
    ]
    for pattern in patterns:
        assert any(re.fullmatch(pattern, line) for line in lines), (pattern, lines)
