"""Work to do after the response is sent: ``BackgroundTask`` and ``BackgroundTasks``.

As in FastAPI, a handler takes a ``BackgroundTasks`` argument and adds to it; the app runs
the tasks once the response has gone out. A response can also carry its own
(``Response(..., background=task)``). Sync functions run in a worker thread. A task that
raises is logged with its traceback and the next task still runs: each task is its own
piece of work, and the response has already been sent, so nobody else would see the error.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["BACKGROUND_SCOPE_KEY", "BackgroundTask", "BackgroundTasks"]

logger = logging.getLogger("fasterapi")

#: Where the request's injected ``BackgroundTasks`` lives in its scope.
BACKGROUND_SCOPE_KEY = "fasterapi.background"


class BackgroundTask:
    """``func(*args, **kwargs)`` to run after the response; ``func`` may be sync or async."""

    __slots__ = ("args", "func", "is_async", "kwargs")

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        target = func if inspect.isroutine(func) else getattr(func, "__call__", func)  # noqa: B004
        self.is_async = inspect.iscoroutinefunction(target)

    async def __call__(self) -> None:
        """Run the task; an exception is logged with its traceback, never raised."""
        try:
            if self.is_async:
                await self.func(*self.args, **self.kwargs)
            else:
                await asyncio.to_thread(functools.partial(self.func, *self.args, **self.kwargs))
        except Exception:
            logger.exception("Background task %s failed", getattr(self.func, "__qualname__", repr(self.func)))

    def __repr__(self) -> str:
        return f"BackgroundTask({getattr(self.func, '__qualname__', repr(self.func))})"


class BackgroundTasks(BackgroundTask):
    """Tasks run in the order added, after the response: ``tasks.add_task(send_email, to)``."""

    __slots__ = ("tasks",)

    def __init__(self, tasks: list[BackgroundTask] | None = None) -> None:
        self.tasks = list(tasks or [])

    def add_task(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.tasks.append(BackgroundTask(func, *args, **kwargs))

    async def __call__(self) -> None:
        # Taken one at a time, so a task may add another (it runs too, after the others).
        while self.tasks:
            await self.tasks.pop(0)()

    def __repr__(self) -> str:
        return f"BackgroundTasks({self.tasks!r})"
