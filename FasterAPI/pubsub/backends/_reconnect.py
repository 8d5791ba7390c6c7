"""Keeping a backend connected: backoff, and the supervisor loop that reconnects for ever.

Nothing here knows a broker. A backend hands :class:`Supervisor` three coroutines (connect,
listen, abandon) and gets the rest: retries with :class:`Backoff`, ``available`` flipping,
lost/restored notifications that strictly alternate, outage log lines, a bounded stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from .base import BackendListener, describe_error, wall_clock

__all__ = ["Backoff", "Supervised", "Supervisor", "check_cancelled"]

log = logging.getLogger("fasterapi.backends.reconnect")

#: What ``connect`` hands to ``listen``: whatever the backend needs to read its session.
S = TypeVar("S")


class Backoff:
    """Exponential backoff with full jitter.

    The n-th delay (counting from 0 since the last :meth:`reset`) is drawn uniformly from
    ``[0, min(cap, base * 2**n)]``: it spreads a crowd of workers that lost their broker at the
    same moment, so they do not reconnect in lock-step.
    """

    def __init__(self, base: float = 0.1, cap: float = 5.0, rand: Callable[[], float] = random.random):
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self._rand = rand
        #: Delays handed out since the last reset.
        self.attempts = 0

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        # The exponent is clamped so a long outage cannot overflow a float.
        return min(self.cap, self.base * 2.0 ** min(self.attempts, 64))

    def next_delay(self) -> float:
        """The next delay in seconds, and advance."""
        delay = self.ceiling() * self._rand()
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Start again from ``base`` (after a successful connection)."""
        self.attempts = 0


def check_cancelled() -> None:
    """Raise CancelledError if the current task was asked to stop.

    A cancel that something below swallowed (an ``asyncio.wait_for`` completing in the same
    step, on Python 3.11) is still counted by the task; a loop that checks this cannot miss it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Supervised(Protocol):
    """What a supervisor keeps up to date, and reads: in practice the backend itself."""

    #: Flipped by the supervisor: True from a successful connect until the session fails.
    available: bool

    @property
    def subscribed_channels(self) -> set[str]:
        """The channels ``connect`` subscribes; counted in the "recovered" log line."""
        ...


class Supervisor(Generic[S]):
    """Runs one backend's connection: connect, listen, and on any failure reconnect, for ever.

    The backend supplies:

    - ``connect()``: open a session, subscribe every wanted channel, wait for the broker to
      confirm; return the session, or raise on failure.
    - ``listen(session)``: deliver until the session fails; return the error (an exception
      raised out of it is taken for a bug: logged with its traceback, then handled as a loss).
    - ``abandon()``: drop whatever session there is (failed, or half-built). Called after
      every failed connect, every failed session and every bug, before the retry.

    The supervisor owns everything else: ``owner.available`` (True only between a successful
    connect and the end of its session), :class:`Backoff` between attempts (reset by each
    success), telling the listener ``on_connection_lost`` / ``on_connection_restored`` (strictly
    alternating, starting with lost, one pair per outage however many attempts it takes),
    :attr:`connection_losses`, and the log lines, which name the broker ``name`` at ``target``
    (already redacted) and end the "connected" line with ``(detail)``. Whatever goes wrong,
    the loop logs it and goes round again; only :meth:`stop` ends it.
    """

    def __init__(
        self,
        owner: Supervised,
        *,
        name: str,
        target: str,
        detail: str,
        connect: Callable[[], Awaitable[S]],
        listen: Callable[[S], Awaitable[BaseException]],
        abandon: Callable[[], Awaitable[None]],
        backoff: Backoff,
        startup_wait: float,
        stop_timeout: float,
    ) -> None:
        if startup_wait < 0:
            raise ValueError("startup_wait must be >= 0")
        self.name = name
        self.target = target
        self.detail = detail
        self.backoff = backoff
        self.startup_wait = startup_wait
        self.stop_timeout = stop_timeout
        #: How many outages began (a first connection that fails at start counts as one).
        self.connection_losses = 0
        self._owner = owner
        self._connect = connect
        self._listen = listen
        self._abandon = abandon
        self._listener: BackendListener | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_connected: asyncio.Event | None = None
        # What the listener was last told: "up" by convention before the start, so the first
        # failure is reported as a loss and the first success after it as a restore.
        self._told_up = True
        self._down_since = 0.0

    @property
    def running(self) -> bool:
        """True from :meth:`start` until :meth:`stop`."""
        return self._task is not None

    async def start(self, listener: BackendListener) -> None:
        """Start the loop; return once connected, or after ``startup_wait`` with the loss reported.

        When not connected in time, the listener is told ``on_connection_lost`` before this
        returns (if no attempt has failed yet, the wait itself is the reason) and the loop goes
        on trying; ``on_connection_restored`` follows when it gets through.
        """
        if self._task is not None:
            raise RuntimeError(f"the {self.name} connection is already started")
        self._listener = listener
        self._told_up = True
        self.backoff.reset()
        first_connected = self._first_connected = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"fasterapi {self.name} listener for {self.target}")
        self._task.add_done_callback(self._task_done)
        try:
            async with asyncio.timeout(self.startup_wait):
                await first_connected.wait()
        except TimeoutError:
            log.warning(
                "pid %d: %s at %s not reachable within %.1fs of start; "
                "starting without it and retrying in the background",
                os.getpid(),
                self.name,
                self.target,
                self.startup_wait,
            )
            # An attempt still hanging (a silent network) has not failed yet; the backend's
            # contract says the listener knows it is down by now.
            self._down(TimeoutError(f"not connected within {self.startup_wait}s of start"))

    async def stop(self) -> None:
        """Cancel the loop and wait for it, at most ``stop_timeout``. Idempotent; no notification.

        The backend closes its connections afterwards (``abandon`` and its pools): if the loop
        did not end in time, it ends by itself at its next turn, seeing it was replaced.
        """
        self._owner.available = False
        task, self._task = self._task, None
        if self._first_connected is not None:
            self._first_connected.set()  # a start() still waiting returns now
        if task is not None:
            # Cancel again until it sticks: an asyncio.wait_for() that completes in the same
            # step as a cancel swallows it on Python 3.11 (fakeredis reads through one).
            deadline = time.monotonic() + self.stop_timeout
            while not task.done() and time.monotonic() < deadline:
                task.cancel()
                await asyncio.wait({task}, timeout=0.05)
        self._listener = None

    def _task_done(self, task: asyncio.Task[None]) -> None:
        # The loop catches everything but cancellation; this is the last line so that nothing
        # ends it silently.
        if task.cancelled():
            return
        err = task.exception()
        if err is not None:
            self._owner.available = False
            log.critical(
                "pid %d: the %s listener task ended: %s; messages will no longer be received",
                os.getpid(),
                self.name,
                describe_error(err),
                exc_info=err,
            )

    async def _run(self) -> None:
        retrying = False
        while True:
            check_cancelled()
            if self._task is not asyncio.current_task():
                return  # stop() gave up waiting for this task and closed the connections under it
            try:
                if retrying:
                    await asyncio.sleep(self.backoff.next_delay())
                retrying = True
                try:
                    session = await self._connect()
                except Exception as err:
                    if not self._down(err):  # this outage was reported already: one warning per outage
                        log.debug(
                            "pid %d: %s reconnect attempt failed: %s", os.getpid(), self.name, describe_error(err)
                        )
                    await self._drop()
                    continue
                self._up()
                error = await self._listen(session)
                self._down(error)
                await self._drop()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug, not a network failure: log it, drop whatever session there is and go
                # round again, so the worker keeps receiving once the cause goes away.
                log.exception("pid %d: unexpected error in the %s listener; reconnecting", os.getpid(), self.name)
                self._down(None)
                await self._drop()

    def _up(self) -> None:
        """A session is connected and subscribed: available, and say so once per outage."""
        self.backoff.reset()
        self._owner.available = True
        assert self._first_connected is not None
        self._first_connected.set()
        if self._told_up:
            log.info("pid %d: connected to %s at %s (%s)", os.getpid(), self.name, self.target, self.detail)
            return
        self._told_up = True
        log.info(
            "pid %d: %s pub/sub connection to %s recovered at %s after %.2fs outage; %d channel(s) resubscribed",
            os.getpid(),
            self.name,
            self.target,
            wall_clock(),
            time.monotonic() - self._down_since,
            len(self._owner.subscribed_channels),
        )
        self._notify_restored()

    def _down(self, error: BaseException | None) -> bool:
        """Unavailable now; report the loss unless this outage was reported already (then False)."""
        self._owner.available = False
        if not self._told_up:
            return False
        self._told_up = False
        self._down_since = time.monotonic()
        self.connection_losses += 1
        log.warning(
            "pid %d: %s pub/sub connection to %s lost at %s: %s; reconnecting (backoff %.2fs..%.2fs)",
            os.getpid(),
            self.name,
            self.target,
            wall_clock(),
            describe_error(error),
            self.backoff.base,
            self.backoff.cap,
        )
        self._notify_lost(error)
        return True

    async def _drop(self) -> None:
        try:
            await self._abandon()
        except Exception:
            # Kept out of the loop's own error path: a failing abandon must not end the loop.
            log.exception("pid %d: abandoning the %s session failed", os.getpid(), self.name)

    def _notify_lost(self, error: BaseException | None) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener.on_connection_lost(error)
        except Exception:
            log.exception("listener.on_connection_lost raised")

    def _notify_restored(self) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener.on_connection_restored()
        except Exception:
            log.exception("listener.on_connection_restored raised")
