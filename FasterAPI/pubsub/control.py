"""The hub's control messages: cluster-wide signals (kicks, resets, presence diffs) between
workers that never reach a socket.

A control message (:data:`~FasterAPI.pubsub.envelope.KIND_CONTROL`) travels like a broadcast,
on a room's channel or to the worker holding one connection, but the receiving hub hands it
to its :attr:`~ControlMessages.control_handlers` instead of the members' sinks.

:class:`ControlMessages` is a part of :class:`~FasterAPI.pubsub.hub.Hub` (a mixin), kept
apart so that ``hub.py`` holds the broadcast path; the state it uses is declared in
:mod:`.hub_state`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .envelope import Envelope, prepare
from .hub_state import HubState

__all__ = ["ControlHandler", "ControlMessages"]

logger = logging.getLogger("fasterapi.hub")

#: ``handler(envelope)``: a control message (``KIND_CONTROL``) for a room or connection here.
ControlHandler = Callable[[Envelope], None]


class ControlMessages(HubState):
    """Sending control messages, and handing received ones to the app's handlers."""

    async def send_control(
        self, payload: bytes, *, room: str | None = None, target: str | None = None, exclude: str = ""
    ) -> None:
        """Publish a control message (see :data:`~FasterAPI.pubsub.envelope.KIND_CONTROL`) to the
        workers with local members of ``room``, or to the worker holding connection ``target``."""
        channel, message = prepare(
            payload, room=room, target=target, exclude=exclude or None, origin=self.worker_id,
            max_size=self.config.max_message_size, secret=self._signing_secret, control=True,
        )  # fmt: skip
        await self.ensure_started()
        await self.backend.publish(channel, message)

    def _handle_control(self, envelope: Envelope) -> None:
        """Hand a received control message to every handler; one failing does not stop the rest."""
        for handler in list(self.control_handlers):
            try:
                handler(envelope)
            except Exception:
                self.stats.listener_errors += 1
                logger.exception("Control handler %r failed", handler)
