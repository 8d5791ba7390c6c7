"""A ready realtime endpoint: declared rooms with join guards, presence, resume; one protocol.

``rt = app.realtime("/rt")`` serves every room of a connection on one WebSocket
(:class:`Realtime`), with the browser client at ``/rt/client.js`` and the Python client in
``FasterAPI.client``. The wire protocol is documented in ``docs/realtime-protocol.md``.
"""

from .endpoint import Realtime
from .errors import JoinDenied, PublishRefused, Refused

__all__ = ["JoinDenied", "PublishRefused", "Realtime", "Refused"]
