"""Benchmarks: in-process HTTP (``http_asgi.py``) and WebSocket fan-out across stacks (``fanout.py``)."""
