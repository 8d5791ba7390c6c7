"""Presence bookkeeping of the hub: who is in which room, with what metadata, across workers.

Presence costs one heartbeat per worker every ``presence_ttl / 3``, whatever the number of
rooms: members are written when they join and leave, and count only while their worker's
heartbeat lasts, so the members of a worker that died without cleanup stop counting within
``presence_ttl`` seconds.

:class:`RoomPresence` is a part of :class:`~FasterAPI.pubsub.hub.Hub` (a mixin), kept apart
so that ``hub.py`` holds the broadcast path; the state it uses is declared in :mod:`.hub_state`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import msgspec

from .envelope import validate_room
from .errors import BackendUnavailable
from .hub_state import HubState

__all__ = ["RoomPresence"]

logger = logging.getLogger("fasterapi.hub")


class RoomPresence(HubState):
    """The hub's presence: writes on join and leave, a heartbeat per worker, and the queries."""

    async def room_size(self, room: str) -> int:
        """How many connections are in ``room`` across the cluster."""
        validate_room(room)
        await self.ensure_started()
        return await self.presence.count(room)

    async def room_members(self, room: str) -> list[str]:
        """The connection ids in ``room`` across the cluster."""
        validate_room(room)
        await self.ensure_started()
        return await self.presence.members(room)

    async def presence_of(self, room: str) -> dict[str, Any]:
        """``{connection id: metadata}`` of ``room`` across the cluster (None: a member without any)."""
        validate_room(room)
        await self.ensure_started()
        described = await self.presence.described(room)
        return {member: _metadata_value(raw) for member, raw in described.items()}

    async def _write_member(self, room: str, connection_id: str, metadata: bytes | None) -> None:
        """Record a member that joined ``room`` (with its metadata, if any)."""
        if metadata is None:
            await self._presence_call(self.presence.add(room, [connection_id]))
        else:
            self._metadata.setdefault(room, {})[connection_id] = metadata
            await self._presence_call(self.presence.add(room, [connection_id], {connection_id: metadata}))

    def _forget_metadata(self, connection_id: str, room: str) -> None:
        described = self._metadata.get(room)
        if described is not None:
            described.pop(connection_id, None)
            if not described:
                del self._metadata[room]

    async def _presence_call(self, call: Coroutine[Any, Any, None]) -> None:
        try:
            await call
        except BackendUnavailable:
            # The refresher re-adds entries once the backend is back.
            logger.debug("Presence update skipped: backend unavailable")

    async def _keep_presence(self) -> None:
        interval = self.config.presence_ttl / 3
        while self._started:
            await asyncio.sleep(interval)
            try:
                await self._heartbeat()
            except BackendUnavailable:
                pass
            except Exception:
                logger.exception("Presence heartbeat failed")

    async def _heartbeat(self) -> None:
        """One write per interval, whatever the number of rooms; members again only if it lapsed."""
        if await self.presence.heartbeat(self.worker_id, self.config.presence_ttl):
            await self._add_all_presence()

    async def _add_all_presence(self) -> None:
        for room, members in list(self.rooms.items()):
            if not members:
                continue
            try:
                await self.presence.add(room, list(members), self._metadata.get(room))
            except BackendUnavailable:
                raise
            except Exception:
                # One bad room must not stop the others.
                logger.exception("Presence of room %r could not be written", room)

    async def _remove_all_presence(self) -> None:
        for room, members in list(self.rooms.items()):
            if members:
                await self.presence.remove(room, list(members))
        await self.presence.retire(self.worker_id)


def _metadata_value(raw: bytes) -> Any:
    """A member's stored presence metadata as a value (None when it has none or it is unreadable)."""
    if not raw:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
