"""What the parts of the hub share: the state :class:`~FasterAPI.pubsub.hub.Hub` makes and they use.

Presence (:mod:`.room_presence`), control messages (:mod:`.control`) and the relay's
self-ping (:mod:`.relay_health`) are mixins of the hub; they derive from :class:`HubState`
so that what they need of it is declared once, for readers and for the type checker.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import HubConfig
    from .backends.base import Backend, PresenceStore
    from .control import ControlHandler
    from .delivery import Sink
    from .hub import HubStats

__all__ = ["HubState"]


class HubState:
    """Declarations only: every attribute here is set by ``Hub.__init__``."""

    config: HubConfig
    backend: Backend
    presence: PresenceStore
    stats: HubStats
    #: room -> {connection id: sink}, local members only.
    rooms: dict[str, dict[str, Sink]]
    #: Called (on the event loop, must not block) with every control message this worker
    #: receives: on a room's channel when it has local members, or addressed to a local connection.
    control_handlers: list[ControlHandler]
    relay_ok: bool
    last_relay_ok: float | None
    _started: bool
    _secrets: list[bytes]
    #: room -> {connection id: presence metadata (JSON)}, for local members that have some.
    _metadata: dict[str, dict[str, bytes]]
    #: ping nonce -> the future its return resolves.
    _pings: dict[bytes, asyncio.Future[None]]

    if TYPE_CHECKING:

        @property
        def worker_id(self) -> str: ...

        @property
        def _signing_secret(self) -> bytes: ...

        async def ensure_started(self) -> None: ...
