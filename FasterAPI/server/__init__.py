"""Our uvicorn WebSocket protocol (frame-once broadcast writes) and gunicorn worker (graceful drain).

Load the protocol with uvicorn's ``ws`` setting, ``--ws FasterAPI.server.protocol:FasterWebSocketProtocol``,
or run gunicorn with ``-k FasterAPI.server.worker.FasterWorker``, which also closes sockets
with 1001 over a jittered window on shutdown. Without them everything still works, through
the plain ASGI path.

Both extend private internals of uvicorn and websockets. ``fasterapi run`` and ``FasterWorker``
check them first (:mod:`.compat`) and, if they differ, log one warning and take that plain path.
"""
