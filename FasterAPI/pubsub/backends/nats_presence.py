"""Presence in a NATS JetStream key-value bucket, with one heartbeat per worker.

Bucket ``<prefix>presence`` (non-alphanumerics of the prefix become ``_``; made on first use,
so the server must run JetStream, ``nats-server -js``). Keys: ``r.<room>`` holds the room's
members (a msgpack map: connection id -> its metadata, b"" for none; a list of ids as written by
earlier versions is read too; the room name base64url-encoded into the key), changed by
compare-and-set so concurrent joins on several workers are never lost; ``w.<worker>`` holds
when that worker's heartbeat runs out (unix milliseconds). A read keeps the members whose
worker is alive and removes the others.
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import msgspec
from nats.errors import Error as NatsError
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError

from .base import BackendUnavailable, PresenceStore, describe_error, worker_part

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js.kv import KeyValue

__all__ = ["NatsPresence"]

#: Compare-and-set attempts before a membership change gives up (only under heavy contention).
_CAS_ATTEMPTS = 50

_encode = msgspec.msgpack.Encoder().encode
_decoder = msgspec.msgpack.Decoder(dict[str, bytes] | list[str])


def _decode(value: bytes | None) -> dict[str, bytes]:
    found = _decoder.decode(value or b"\x80")
    return dict.fromkeys(found, b"") if isinstance(found, list) else found


def _room_key(room: str) -> str:
    return "r." + base64.urlsafe_b64encode(room.encode("utf-8", "surrogatepass")).decode().rstrip("=")


class NatsPresence(PresenceStore):
    """Presence in JetStream KV (see the module docstring); ``client()`` is the live connection."""

    def __init__(self, prefix: str, client: Callable[[], NatsClient]) -> None:
        self.bucket = re.sub(r"[^A-Za-z0-9_-]", "_", prefix) + "presence"
        self._client = client
        self._kv: tuple[NatsClient, KeyValue] | None = None

    async def _store(self) -> KeyValue:
        client = self._client()  # raises BackendUnavailable while NATS is down
        if self._kv is not None and self._kv[0] is client:
            return self._kv[1]
        js = client.jetstream()
        try:
            try:
                kv = await js.key_value(self.bucket)
            except BucketNotFoundError:
                kv = await js.create_key_value(bucket=self.bucket, history=1)
        except NatsError as err:
            raise BackendUnavailable(
                f"NATS presence needs JetStream (nats-server -js): bucket {self.bucket!r}: {describe_error(err)}"
            ) from err
        self._kv = (client, kv)
        return kv

    async def _change(
        self, room: str, members: Iterable[str], add: bool, metadata: Mapping[str, bytes] | None = None
    ) -> None:
        entries = set(members)
        if not entries:
            return
        kv = await self._store()
        key = _room_key(room)
        try:
            for _ in range(_CAS_ATTEMPTS):
                try:
                    entry = await kv.get(key)
                except KeyNotFoundError:
                    if not add:
                        return
                    try:
                        await kv.create(key, _encode(_changed({}, entries, add, metadata)))
                        return
                    except KeyWrongLastSequenceError:
                        continue  # another worker made it first
                current = _decode(entry.value)
                changed = _changed(current, entries, add, metadata)
                if changed == current:
                    return
                try:
                    await kv.update(key, _encode(changed), last=entry.revision)
                    return
                except KeyWrongLastSequenceError:
                    continue  # changed meanwhile: read again
        except NatsError as err:
            raise BackendUnavailable(f"NATS failed to change presence in {room!r}: {describe_error(err)}") from err
        raise BackendUnavailable(f"Presence of {room!r} kept changing under {_CAS_ATTEMPTS} attempts")

    async def add(self, room: str, members: Iterable[str], metadata: Mapping[str, bytes] | None = None) -> None:
        await self._change(room, members, add=True, metadata=metadata)

    async def remove(self, room: str, members: Iterable[str]) -> None:
        await self._change(room, members, add=False)

    async def heartbeat(self, worker: str, ttl: float) -> bool:
        kv = await self._store()
        now_ms = int(time.time() * 1000)
        key = "w." + worker
        try:
            try:
                previous = int((await kv.get(key)).value or b"0")
            except KeyNotFoundError:
                previous = 0
            await kv.put(key, str(now_ms + max(1, math.ceil(ttl * 1000))).encode())
        except NatsError as err:
            raise BackendUnavailable(f"NATS failed to refresh worker {worker!r}: {describe_error(err)}") from err
        return previous <= now_ms

    async def retire(self, worker: str) -> None:
        kv = await self._store()
        try:
            await kv.delete("w." + worker)
        except NatsError as err:
            raise BackendUnavailable(f"NATS failed to retire worker {worker!r}: {describe_error(err)}") from err

    async def members(self, room: str) -> list[str]:
        return list(await self.described(room))

    async def described(self, room: str) -> dict[str, bytes]:
        kv = await self._store()
        now_ms = int(time.time() * 1000)
        try:
            try:
                members = _decode((await kv.get(_room_key(room))).value)
            except KeyNotFoundError:
                return {}
            alive: dict[str, bool] = {}
            for worker in {worker_part(member) for member in members}:
                try:
                    alive[worker] = int((await kv.get("w." + worker)).value or b"0") > now_ms
                except KeyNotFoundError:
                    alive[worker] = False
        except NatsError as err:
            raise BackendUnavailable(f"NATS failed to read presence in {room!r}: {describe_error(err)}") from err
        live = {member: value for member, value in members.items() if alive[worker_part(member)]}
        if len(live) < len(members):
            # Members of workers that died without cleanup: stop carrying them.
            await self._change(room, [member for member in members if not alive[worker_part(member)]], add=False)
        return live

    async def count(self, room: str) -> int:
        return len(await self.members(room))


def _changed(
    current: dict[str, bytes], entries: set[str], add: bool, metadata: Mapping[str, bytes] | None
) -> dict[str, bytes]:
    """The members of a room after adding (with their metadata) or removing ``entries``."""
    if not add:
        return {member: value for member, value in current.items() if member not in entries}
    changed = dict(current)
    for member in entries:
        changed.setdefault(member, b"")
    for member, value in (metadata or {}).items():
        if member in entries:
            changed[member] = value
    return changed
