"""Room history in Redis: a stream and a small hash per room, written by one Lua script per publish.

Keys, per room: ``{prefix}history:{<room>}`` (a stream: the last ``size`` stamped envelopes,
the offset as entry id) and ``{prefix}history-meta:{<room>}`` (a hash: ``epoch`` and ``top``).
The room name is their hash tag, so both keys live in one slot of a Redis Cluster. Both expire
``ttl`` seconds after the room's last message. A room whose hash is gone (never used, expired,
evicted, or Redis restarted empty) gets a new random epoch and starts again at offset 1.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from ..envelope import MAX_EPOCH_LENGTH
from ..history import HistoryRange, Position, Retention
from .redis_presence import CommandGuard, RoomTag, braced

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["RedisHistory"]

# Stamping by hand is what FasterAPI.pubsub.envelope.stamp does: the envelope's last two
# fields (offset 0, epoch "") become a msgpack uint64 and a fixstr.
_STAMP = r"""
local function stamp(envelope, offset, epoch)
  local bytes, n = {}, offset
  for i = 8, 1, -1 do
    bytes[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return string.sub(envelope, 1, -3) .. '\207' .. table.concat(bytes) .. string.char(160 + string.len(epoch)) .. epoch
end
"""

#: KEYS: meta, stream. ARGV: channel, envelope, size, ttl in ms, the epoch for a room that has none.
_PUBLISH = (
    _STAMP
    + r"""
if string.sub(ARGV[2], -2) ~= '\0\160' then
  return redis.error_reply('fasterapi: not an unstamped envelope')
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local stamped = stamp(ARGV[2], offset, epoch)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], string.format('%d-1', offset), 'm', stamped)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], stamped)
return {offset, epoch}
"""
)

#: KEYS: meta, stream. ARGV: after, limit, ttl in ms, the epoch for a room that has none.
_READ = r"""
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'top')
local epoch, top = meta[1], tonumber(meta[2])
if not epoch then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'top', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {ARGV[4], 0, {}}
end
local after, limit, entries = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
if limit > 0 and top > after then
  local rows = redis.call('XRANGE', KEYS[2], string.format('%d-1', after + 1), '+', 'COUNT', limit)
  for i, row in ipairs(rows) do
    entries[i] = row[2][2]
  end
end
return {epoch, top, entries}
"""


def _new_epoch() -> str:
    epoch = secrets.token_hex(8)
    assert len(epoch) <= MAX_EPOCH_LENGTH
    return epoch


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisHistory:
    """The history half of :class:`~FasterAPI.pubsub.backends.redis.RedisBackend`.

    It borrows the backend's command client through ``guard``, so it fails fast (with
    BackendUnavailable) exactly when publishing does.
    """

    def __init__(
        self, prefix: str, guard: CommandGuard, *, room_tag: RoomTag = braced, publish_command: str = "PUBLISH"
    ) -> None:
        self.prefix = prefix
        self._guard = guard
        self._room_tag = room_tag
        # SPUBLISH on a Redis Cluster: the room's channel shares its keys' slot.
        self._publish_source = _PUBLISH.replace("'PUBLISH'", repr(publish_command))
        self._publish_script: AsyncScript | None = None
        self._read_script: AsyncScript | None = None

    def keys(self, room: str) -> list[str]:
        """The room's hash and stream, which share the room's hash tag."""
        tag = self._room_tag(room)
        return [f"{self.prefix}history-meta:{tag}", f"{self.prefix}history:{tag}"]

    async def publish(self, channel_key: str, data: bytes, retention: Retention) -> Position:
        """Store, stamp and publish ``data`` on ``channel_key`` (a Redis channel name) atomically."""
        with self._guard("publish to", retention.room) as client:
            if self._publish_script is None:
                self._publish_script = client.register_script(self._publish_source)
            ttl = _milliseconds(retention.ttl)
            args: list[str | bytes | int] = [channel_key, data, retention.size, ttl, _new_epoch()]
            try:
                offset, epoch = await self._publish_script(keys=self.keys(retention.room), args=args, client=client)
            except ResponseError as error:
                if "not an unstamped envelope" in str(error):
                    what = f"Cannot keep {len(data)} bytes in history: not an envelope from prepare()"
                    raise ValueError(what) from None
                raise
            return Position(int(offset), _text(epoch))

    async def read(self, retention: Retention, after: int, limit: int) -> HistoryRange:
        """The room's epoch and top, and up to ``limit`` stored envelopes above offset ``after``."""
        with self._guard("read the history of", retention.room) as client:
            if self._read_script is None:
                self._read_script = client.register_script(_READ)
            args: list[str | bytes | int] = [max(after, 0), max(limit, 0), _milliseconds(retention.ttl), _new_epoch()]
            epoch, top, entries = await self._read_script(keys=self.keys(retention.room), args=args, client=client)
            return HistoryRange(_text(epoch), int(top), [bytes(entry) for entry in entries])

    async def tops(self, rooms: Sequence[str]) -> dict[str, Position | None]:
        """Each room's top position (None: it has no history), in one pipelined round trip."""
        if not rooms:
            return {}
        with self._guard("read the history tops of", f"{len(rooms)} rooms") as client:
            pipe = client.pipeline(transaction=False)
            for room in rooms:
                pipe.hmget(self.keys(room)[0], "epoch", "top")
            replies = await pipe.execute()
        tops: dict[str, Position | None] = {}
        for room, (epoch, top) in zip(rooms, replies, strict=True):
            tops[room] = None if epoch is None else Position(int(top or 0), _text(epoch))
        return tops


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
