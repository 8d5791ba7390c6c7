"""The relay's health, as one worker sees it: a ping published to itself through the backend.

:class:`RelayHealth` is a part of :class:`~FasterAPI.pubsub.hub.Hub` (a mixin), kept apart so
that ``hub.py`` holds the broadcast path; the state it uses is declared in :mod:`.hub_state`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time

from .envelope import KIND_PING, VERSION, Envelope, encode, sign, worker_channel
from .errors import BackendUnavailable
from .hub_state import HubState

__all__ = ["RelayHealth"]

logger = logging.getLogger("fasterapi.hub")


class RelayHealth(HubState):
    """The self-ping that tells whether broadcasts get through the relay."""

    async def check_relay(self, timeout: float = 2.0) -> bool:
        """Publish a ping to this worker through the backend and wait for it to come back."""
        if not self._started or not self.backend.available:
            self.relay_ok = False
            return False
        nonce = secrets.token_bytes(8)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[nonce] = future
        try:
            ping_envelope = Envelope(VERSION, KIND_PING, nonce, origin=self.worker_id)
            ping = encode(sign(ping_envelope, self._signing_secret) if self._secrets else ping_envelope)
            await self.backend.publish(worker_channel(self.worker_id), ping)
            # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancel that lands
            # together with the result, and stop() must always be able to end this loop.
            await asyncio.wait((future,), timeout=timeout)
            ok = future.done()
        except BackendUnavailable:
            ok = False
        finally:
            self._pings.pop(nonce, None)
        if ok:
            self.last_relay_ok = time.monotonic()
        elif self.relay_ok:
            logger.warning("Hub %s (pid %d): relay self-ping failed", self.worker_id, os.getpid())
        self.relay_ok = ok
        return ok

    async def _watch_relay(self) -> None:
        while self._started:
            await self.check_relay(timeout=self.config.health_interval)
            await asyncio.sleep(self.config.health_interval)

    def _answer_ping(self, envelope: Envelope) -> None:
        """A ping came back: the relay works."""
        future = self._pings.get(envelope.payload)
        if future is not None and not future.done():
            future.set_result(None)
