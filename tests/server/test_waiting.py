"""MessageQueue and WaitFlag: asyncio.Queue's and asyncio.Event's semantics, storage on demand."""

from __future__ import annotations

import asyncio

import pytest

from FasterAPI.server.waiting import MessageQueue, WaitFlag

pytestmark = pytest.mark.timeout(10)


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def test_queue_is_fifo_and_keeps_no_storage_once_drained() -> None:
    async def scenario() -> None:
        queue: MessageQueue[int] = MessageQueue()
        assert queue.empty() and queue.qsize() == 0
        for n in range(5):
            queue.put_nowait(n)
        assert queue.qsize() == 5 and not queue.empty()
        assert [await queue.get() for _ in range(5)] == [0, 1, 2, 3, 4]
        assert queue.empty()
        assert queue._items is None and queue._getters is None
        with pytest.raises(asyncio.QueueEmpty):
            queue.get_nowait()

    asyncio.run(scenario())


def test_a_put_wakes_the_longest_waiting_getter() -> None:
    async def scenario() -> None:
        queue: MessageQueue[str] = MessageQueue()
        first = asyncio.create_task(queue.get())
        await settle()
        second = asyncio.create_task(queue.get())
        await settle()
        assert not first.done() and not second.done()
        queue.put_nowait("a")
        await settle()
        assert first.done() and first.result() == "a"
        assert not second.done()
        queue.put_nowait("b")
        assert await asyncio.wait_for(second, 1) == "b"
        assert queue._getters is None

    asyncio.run(scenario())


def test_a_cancelled_get_loses_no_message() -> None:
    async def scenario() -> None:
        queue: MessageQueue[str] = MessageQueue()
        # Timed out while waiting: it leaves the getters, and the next put is not lost.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), 0.01)
        assert queue._getters == []
        queue.put_nowait("kept")
        assert await queue.get() == "kept"

        # Woken by a put, then cancelled before it ran: the wake-up passes to the next getter.
        first = asyncio.create_task(queue.get())
        second = asyncio.create_task(queue.get())
        await settle()
        queue.put_nowait("x")
        first.cancel()
        assert await asyncio.wait_for(second, 1) == "x"
        assert first.cancelled()

    asyncio.run(scenario())


def test_flag_wait_returns_at_once_when_set_and_wakes_every_waiter() -> None:
    async def scenario() -> None:
        flag = WaitFlag(True)
        assert flag.is_set()
        assert await flag.wait() is True
        assert flag._waiters is None

        flag.clear()
        assert not flag.is_set()
        waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
        await settle()
        assert not any(w.done() for w in waiters)
        flag.set()
        assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]
        assert flag._waiters is None
        flag.set()  # setting a set flag is a no-op

    asyncio.run(scenario())


def test_a_cancelled_flag_wait_leaves_the_waiters() -> None:
    async def scenario() -> None:
        flag = WaitFlag()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flag.wait(), 0.01)
        assert flag._waiters == []
        remaining = asyncio.create_task(flag.wait())
        await settle()
        flag.set()
        assert await asyncio.wait_for(remaining, 1) is True

    asyncio.run(scenario())


def test_a_get_is_a_coroutine_object_that_runs_its_hook_after_each_take() -> None:
    taken: list[tuple[str, int]] = []

    def then(owner: str) -> None:
        taken.append((owner, queue.qsize()))

    queue: MessageQueue[int] = MessageQueue()

    async def scenario() -> None:
        waiting = queue.get(then, "owner")
        assert asyncio.iscoroutine(waiting)
        task = asyncio.create_task(waiting)  # type: ignore[arg-type]
        await settle()
        assert not task.done() and taken == []
        queue.put_nowait(1)
        queue.put_nowait(2)
        assert await asyncio.wait_for(task, 1) == 1
        assert taken == [("owner", 1)]
        assert await queue.get(then, "owner") == 2  # at once: it never waits
        assert taken == [("owner", 1), ("owner", 0)]

    asyncio.run(scenario())


def test_a_closed_or_failed_get_withdraws_and_hands_its_wake_up_on() -> None:
    async def scenario() -> None:
        queue: MessageQueue[str] = MessageQueue()
        first = queue.get()
        assert isinstance(first.send(None), asyncio.Future)
        second = asyncio.create_task(queue.get())
        await settle()
        queue.put_nowait("x")  # wakes the first getter, which then never runs
        first.close()
        assert await asyncio.wait_for(second, 1) == "x"
        assert not queue._getters

        third = queue.get()
        third.send(None)
        with pytest.raises(KeyError):
            third.throw(KeyError("thrown in"))
        assert not queue._getters
        queue.put_nowait("kept")
        assert await queue.get() == "kept"

    asyncio.run(scenario())
