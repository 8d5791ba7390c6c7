"""Exact delivery for rooms with history: gap repair, resync after a reconnect, joins that resume.

One :class:`Recovery` per hub follows every local room that keeps history with a
:class:`~FasterAPI.pubsub.history.RoomCursor`. It hands the hub, in order and exactly once,
every stamped broadcast of such a room: the next offset goes straight through; one beyond it
waits while the missing range is read from the relay's history; one at or below the last is a
duplicate and is dropped. What the history no longer holds is a
:class:`~FasterAPI.pubsub.history.Gap`, reported once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .backends.base import Backend
from .delivery import Delivery, Sink
from .envelope import Envelope, decode
from .errors import BackendUnavailable, InvalidEnvelope
from .history import (
    CursorState,
    Gap,
    Joiner,
    JoinResult,
    Position,
    Retention,
    RoomCursor,
    covers,
    delivery_of,
    sent_data,
)

__all__ = ["Recovery"]

logger = logging.getLogger("fasterapi.history")

#: ``fan_out(room, delivery, exclude)``: hand one broadcast to the room's local members.
FanOut = Callable[[str, Delivery, str], None]


class Recovery:
    """Keeps this worker's rooms with history in order (see the module docstring)."""

    def __init__(
        self,
        backend: Backend,
        retention_of: Callable[[str], Retention | None],
        fan_out: FanOut,
        members_of: Callable[[str], dict[str, Sink] | None],
        report_gap: Callable[[Gap], None],
        count_repaired: Callable[[int], None],
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        self.backend = backend
        self.retention_of = retention_of
        self.cursors: dict[str, RoomCursor] = {}
        self._fan_out = fan_out
        self._members_of = members_of
        self._report_gap = report_gap
        self._count_repaired = count_repaired
        self._spawn = spawn

    # -- rooms ---------------------------------------------------------------------------

    def open(self, room: str) -> None:
        """The room got its first local member: follow it (messages wait until :meth:`start`)."""
        self.cursors[room] = RoomCursor()

    def close(self, room: str) -> None:
        """The room lost its last local member."""
        self.cursors.pop(room, None)

    def position(self, room: str) -> Position | None:
        cursor = self.cursors.get(room)
        return None if cursor is None else cursor.position

    async def start(self, room: str, retention: Retention) -> None:
        """Read the room's top, then deliver what waited above it. Never raises for an outage."""
        cursor = self.cursors.get(room)
        if cursor is None:
            return
        try:
            found = await self.backend.read_history(retention, 0, 0)
        except BackendUnavailable:
            return  # stays STARTING: resync() starts it once the relay is back
        if self.cursors.get(room) is not cursor:
            return
        cursor.epoch, cursor.last, cursor.state = found.epoch, found.top, CursorState.LIVE
        # Messages at or below the top were published before this worker followed the room.
        cursor.waiting = [e for e in cursor.waiting if e.epoch != found.epoch or e.offset > found.top]
        self._advance(room, cursor)

    # -- live messages -------------------------------------------------------------------

    def receive(self, envelope: Envelope) -> None:
        """A stamped broadcast arrived from the relay."""
        room = envelope.room
        cursor = self.cursors.get(room)
        if cursor is None:  # not followed here (no history for it in this worker's settings)
            self._fan_out(room, delivery_of(envelope), envelope.exclude)
            return
        if cursor.state is CursorState.LIVE and envelope.offset == cursor.last + 1 and envelope.epoch == cursor.epoch:
            cursor.last += 1
            self._fan_out(room, delivery_of(envelope), envelope.exclude)
            if cursor.joiners:
                self._promote(room, cursor)
            return
        cursor.waiting.append(envelope)
        if cursor.state is CursorState.LIVE:
            self._advance(room, cursor)

    def _advance(self, room: str, cursor: RoomCursor) -> None:
        """Deliver waiting messages in order, until none is left or a gap needs the history."""
        waiting = cursor.waiting
        while waiting:
            envelope = waiting[0]
            if envelope.epoch != cursor.epoch:
                # The room's history was lost and made anew: what this worker missed of the
                # old epoch cannot be told apart any more.
                self._lost_epoch(room, cursor)
                cursor.epoch, cursor.last = envelope.epoch, 0
            if envelope.offset <= cursor.last:
                waiting.pop(0)  # a duplicate (a replay and the live message crossed)
                continue
            if envelope.offset > cursor.last + 1:
                cursor.state = CursorState.REPAIRING
                self._spawn(self._repair(room, cursor, envelope.offset - 1), f"history repair of {room!r}")
                return
            waiting.pop(0)
            cursor.last = envelope.offset
            self._fan_out(room, delivery_of(envelope), envelope.exclude)
        cursor.state = CursorState.LIVE
        if cursor.joiners:
            self._promote(room, cursor)

    async def _repair(self, room: str, cursor: RoomCursor, upto: int) -> None:
        """Read offsets after ``cursor.last`` up to ``upto`` from the history, deliver them, go on."""
        retention = self.retention_of(room)
        found = None
        if retention is not None:
            try:
                found = await self.backend.read_history(retention, cursor.last, min(upto - cursor.last, retention.size))
            except BackendUnavailable:
                if self.cursors.get(room) is cursor:
                    cursor.state = CursorState.STALLED  # resync() picks it up after the reconnect
                return
            except Exception:
                logger.exception("Reading the history of room %r failed", room)
        if self.cursors.get(room) is not cursor:
            return
        if found is not None and found.epoch != cursor.epoch:
            self._lost_epoch(room, cursor)
            cursor.epoch, cursor.last = found.epoch, 0
            # Waiting messages of the old epoch are stale; repair the new one from its start.
            cursor.waiting = [envelope for envelope in cursor.waiting if envelope.epoch == found.epoch]
            if found.top > 0:
                self._spawn(self._repair(room, cursor, found.top), f"history repair of {room!r}")
            else:
                self._advance(room, cursor)
            return
        if found is not None:
            repaired = 0
            for envelope in self._decoded(room, found.entries):
                if envelope.offset <= cursor.last or envelope.offset > upto:
                    continue
                if envelope.offset > cursor.last + 1:
                    self._gap(Gap(room, cursor.last + 1, envelope.offset - 1, False))
                cursor.last = envelope.offset
                self._fan_out(room, delivery_of(envelope), envelope.exclude)
                repaired += 1
            self._count_repaired(repaired)
        if cursor.last < upto:
            self._gap(Gap(room, cursor.last + 1, upto, False))
            cursor.last = upto
        self._advance(room, cursor)

    def _decoded(self, room: str, entries: list[bytes]) -> list[Envelope]:
        decoded = []
        for raw in entries:
            try:
                decoded.append(decode(raw))
            except InvalidEnvelope as error:
                logger.warning("Skipped an undecodable entry in the history of room %r: %s", room, error)
        return decoded

    def _lost_epoch(self, room: str, cursor: RoomCursor) -> None:
        if cursor.epoch:  # "" means already reported (or never known): once per loss
            self._gap(Gap(room, cursor.last + 1, 0, True))
        cursor.epoch = ""

    def _gap(self, gap: Gap) -> None:
        try:
            self._report_gap(gap)
        except Exception:
            logger.exception("Reporting a gap in room %r failed", gap.room)

    # -- after a reconnect ---------------------------------------------------------------

    async def resync(self) -> None:
        """Catch every followed room up with its history: also the last message before a quiet spell."""
        for room, cursor in list(self.cursors.items()):
            retention = self.retention_of(room)
            if cursor.state is CursorState.STARTING and retention is not None:
                await self.start(room, retention)
        followed = [room for room, cursor in self.cursors.items() if cursor.state is not CursorState.STARTING]
        try:
            tops = await self.backend.history_tops(followed)
        except BackendUnavailable:
            return  # down again: the next reconnect tries again
        for room, top in tops.items():
            followed_cursor = self.cursors.get(room)
            if followed_cursor is None or followed_cursor.state is CursorState.REPAIRING:
                continue
            cursor = followed_cursor
            if top is None or top.epoch != cursor.epoch:
                self._lost_epoch(room, cursor)
                cursor.last = 0
                if top is None:
                    # No history now (so what waited is of the lost epoch): the next message
                    # brings the new epoch.
                    cursor.state, cursor.waiting = CursorState.LIVE, []
                    continue
                cursor.epoch = top.epoch
                cursor.waiting = [envelope for envelope in cursor.waiting if envelope.epoch == top.epoch]
            if top.offset > cursor.last:
                cursor.state = CursorState.REPAIRING
                self._spawn(self._repair(room, cursor, top.offset), f"history repair of {room!r}")
            else:
                self._advance(room, cursor)

    # -- joins that resume ---------------------------------------------------------------

    async def resume(self, room: str, retention: Retention, joiner: Joiner, since: Position) -> JoinResult:
        """Replay to ``joiner`` what came after ``since`` (if the history still holds all of it).

        Raises :class:`BackendUnavailable` when the history cannot be read (the relay is down):
        the history may still hold every message, so the caller should try again with the same
        ``since`` rather than go on live with a gap.
        """
        found = await self.backend.read_history(retention, since.offset, retention.size)
        entries = self._decoded(room, found.entries) if found.epoch == since.epoch else []
        recovered = covers(since, found, entries)
        joiner.replay(entries if recovered else [], found.top)
        cursor = self.cursors.get(room)
        if cursor is None or cursor.epoch != found.epoch or cursor.last >= found.top:
            self._finish(room, joiner)
        else:
            cursor.joiners.append(joiner)  # the cursor is behind this replay: promote it later
        return JoinResult(recovered, Position(found.top, found.epoch))

    def _promote(self, room: str, cursor: RoomCursor) -> None:
        ready = [joiner for joiner in cursor.joiners if cursor.last >= joiner.threshold]
        if ready:
            cursor.joiners = [joiner for joiner in cursor.joiners if joiner not in ready]
            for joiner in ready:
                self._finish(room, joiner)

    def _finish(self, room: str, joiner: Joiner) -> None:
        """Put the connection's own sink in the room in place of its joiner (if still there)."""
        members = self._members_of(room)
        if members is not None and members.get(joiner.connection_id) is joiner:
            members[joiner.connection_id] = joiner.sink

    # -- reading -------------------------------------------------------------------------

    async def read(self, room: str, since: Position | None, limit: int) -> list[tuple[Position, Any]]:
        """The retained messages of ``room`` after ``since`` (the newest ``limit`` without it)."""
        retention = self.retention_of(room)
        if retention is None:
            raise ValueError(f"Room {room!r} keeps no history (History is off for it)")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if since is None:
            head = await self.backend.read_history(retention, 0, 0)
            after = max(0, head.top - limit)
        else:
            after = since.offset
        found = await self.backend.read_history(retention, after, limit)
        if since is not None and found.epoch != since.epoch:
            # Another epoch: ``since`` means nothing in it; start from the oldest retained.
            found = await self.backend.read_history(retention, 0, limit)
        return [(Position(e.offset, e.epoch), sent_data(e)) for e in self._decoded(room, found.entries)]
