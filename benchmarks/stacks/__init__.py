"""The WebSocket fan-out apps that ``benchmarks/fanout.py`` serves with gunicorn, one module per stack.

Every app has the same shape: receivers connect and are put in one room/channel (``bench``),
and a publisher connection sends text messages that the app broadcasts to that room with the
stack's own idiom. The Redis URL comes from ``BENCH_REDIS_URL``.
"""
