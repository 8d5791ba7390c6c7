"""The benchmark's apps as granian serves them: each worker says when it is ready.

gunicorn's workers report readiness through hooks in ``benchmarks/gunicorn_conf.py``; granian
has no per-worker hook, but runs the app's lifespan startup in each worker just before that
worker serves. So these apps touch ``$BENCH_READY_DIR/<pid>`` once the wrapped app has
completed its startup. Every other scope goes straight to the wrapped app: the wrapper is a
plain function returning the app's own coroutine, so a connection holds no extra frame.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from benchmarks.stacks import bare_asgi_app, fasterapi_app

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]


def ready_after_startup(app: ASGIApp) -> ASGIApp:
    """``app``, touching the readiness marker when it sends ``lifespan.startup.complete``."""

    def serve(scope: Message, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "lifespan":
            return app(scope, receive, send)

        async def marking_send(message: Message) -> None:
            await send(message)
            directory = os.environ.get("BENCH_READY_DIR")
            if message["type"] == "lifespan.startup.complete" and directory:
                Path(directory, str(os.getpid())).touch()

        return app(scope, receive, marking_send)

    return serve


bare_asgi = ready_after_startup(bare_asgi_app.app)
fasterapi = ready_after_startup(fasterapi_app.app)
