"""Client-caused protocol errors: counted by reason, logged at INFO at most once a second.

A client that sends an invalid UTF-8 text frame, an oversized message or header block, a
malformed frame or request, or never finishes its request headers has made a mistake (or is
probing): the server refuses it and goes on. Such a refusal is not a server fault, so it
gets no ERROR line and no traceback; and since each costs the client almost nothing, a storm
of them must not flood the logs. So every worker logs the first one of a second and keeps a
count of the rest, which one summary line reports when the second is over. Every refusal
is also counted by reason; ``/metrics`` exposes the counts as
``fasterapi_protocol_errors_total{reason}`` (:mod:`FasterAPI.metrics`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

__all__ = ["REASONS", "ClientErrors", "client_errors", "peer"]

#: uvicorn's own logger for what happens to connections: uvicorn and our gunicorn worker set
#: it up to show INFO lines, where the server's operator looks.
logger = logging.getLogger("uvicorn.error")

#: Every reason a refusal is counted under, with what it means.
REASONS: dict[str, str] = {
    "header_timeout": "the request headers were not complete within the header timeout",
    "headers_too_large": "a header line, the header count or the header block was over its limit (431)",
    "request_line_too_long": "the request line was over its limit (414)",
    "invalid_http": "the request was not valid HTTP/1.1 (400)",
    "invalid_handshake": "the WebSocket handshake request was not valid (400)",
    "message_too_big": "a WebSocket message was over the size limit, decompressed (1009)",
    "invalid_utf8": "a WebSocket text message was not valid UTF-8 (1007)",
    "bad_frame": "a WebSocket frame broke the protocol (1002)",
}


class ClientErrors:
    """One process's count of client protocol errors by reason, and their rate-limited log."""

    def __init__(
        self, log: logging.Logger = logger, interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.log = log
        self.interval = interval
        self.clock = clock
        #: Refusals since the process started, by reason (what ``/metrics`` reports).
        self.counts: collections.Counter[str] = collections.Counter()
        self._quiet_until = float("-inf")
        self._suppressed: collections.Counter[str] = collections.Counter()
        self._summary: asyncio.TimerHandle | None = None

    def report(self, reason: str, message: str, *args: object) -> None:
        """Count one refusal; log ``message % args`` unless a line went out less than a second ago."""
        self.counts[reason] += 1
        now = self.clock()
        if now >= self._quiet_until and not self._suppressed:
            self._quiet_until = now + self.interval
            self.log.info(message, *args)
            return
        self._suppressed[reason] += 1
        if self._summary is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop here: summarize now if the quiet second is over
            if now >= self._quiet_until:
                self.summarize()
            return
        self._summary = loop.call_later(max(0.0, self._quiet_until - now), self.summarize)

    def summarize(self) -> None:
        """Log one line for what was suppressed since the last line, if anything was."""
        self._summary = None
        if not self._suppressed:
            return
        total = sum(self._suppressed.values())
        detail = ", ".join(f"{reason} {count}" for reason, count in sorted(self._suppressed.items()))
        self._suppressed.clear()
        self._quiet_until = self.clock() + self.interval
        self.log.info("%d more client protocol errors since the last such line, not logged each (%s)", total, detail)


def peer(client: tuple[str, int] | None) -> str:
    """``host:port`` of a connection's client, for log lines."""
    return f"{client[0]}:{client[1]}" if client else "an unknown client"


#: This process's instance: every protocol of the server reports here.
client_errors = ClientErrors()
