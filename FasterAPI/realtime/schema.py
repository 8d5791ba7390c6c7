"""The realtime endpoint in the app's AsyncAPI document.

The endpoint is one channel at its path, carrying the protocol's frames (the Structs of
:mod:`~FasterAPI.realtime.frames`: what clients send, what the server sends). Each declared
room pattern is a channel too, at the same address (its rooms travel over that WebSocket):
its ``join`` frame with the payload type the guard declares, its ``publish`` frame with the data
type the publish handler declares, and its ``message`` frame with the type the publish handler
returns, where declared (else the protocol's frame, any value).
"""

from __future__ import annotations

import functools
import operator
import re
import types
import typing
from typing import TYPE_CHECKING, Any

import msgspec

from ..openapi.utils import openapi_path
from . import frames
from .rooms import RoomHandler

if TYPE_CHECKING:
    from ..asyncapi.utils import AsyncAPIBuilder
    from .endpoint import Realtime

__all__ = ["describe_realtime"]

CLIENT_FRAMES = [frames.Join, frames.Leave, frames.Publish, frames.Ping, frames.Pong]
SERVER_FRAMES = list(typing.get_args(frames.ServerFrame))


def describe_realtime(endpoint: Realtime, builder: AsyncAPIBuilder) -> None:
    """Add ``endpoint``'s channel and one channel per declared room pattern to ``builder``."""
    address = openapi_path(endpoint.path)
    builder.add_channel(
        f"realtime{endpoint.path}",
        address,
        title=f"Realtime endpoint {endpoint.path}",
        description=(
            "One WebSocket for every room of a connection (subprotocols "
            f"`{frames.SUBPROTOCOL}`, JSON, and `{frames.MSGPACK_SUBPROTOCOL}`). "
            f"The browser client is served at `{endpoint.path.rstrip('/')}/client.js`."
        ),
        receives=CLIENT_FRAMES,
        sends=SERVER_FRAMES,
    )
    publishers = {handler.pattern.pattern: handler for handler in endpoint.publishers.handlers}
    patterns = [handler.pattern.pattern for handler in endpoint.guards.handlers]
    patterns += [pattern for pattern in publishers if pattern not in patterns]
    guards = {handler.pattern.pattern: handler for handler in endpoint.guards.handlers}
    for pattern in patterns:
        guard, publisher = guards.get(pattern), publishers.get(pattern)
        receives: list[Any] = [_join_frame(pattern, guard)] if guard is not None else []
        if publisher is not None:
            receives.append(_publish_frame(pattern, publisher))
        builder.add_channel(
            f"realtime{endpoint.path} {pattern}",
            address,
            title=f"Rooms {pattern}",
            description=_room_description(pattern, guard, publisher),
            receives=receives,
            sends=[_message_frame(pattern, publisher)],
        )


def _room_description(pattern: str, guard: RoomHandler | None, publisher: RoomHandler | None) -> str:
    lines = [f"Rooms whose name matches `{pattern}` (each `{{name}}` is one or more characters other than `:`)."]
    if guard is None:
        lines.append("No guard is declared: joins are refused (`unknown_room`).")
    elif not guard.presence:
        lines.append("Declared with `presence=False`: members get no presence frames.")
    if publisher is None:
        lines.append("Members cannot publish (`publish_refused`); the app broadcasts.")
    for handler in (guard, publisher):
        doc = None if handler is None else handler.func.__doc__
        if doc:
            lines.append(doc.strip())
    return "\n\n".join(lines)


def _struct_name(kind: str, pattern: str) -> str:
    """``("Join", "chat:{room_id}")`` -> ``"JoinChatRoomId"``."""
    return kind + "".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", pattern))


def _join_frame(pattern: str, guard: RoomHandler) -> Any:
    if guard.payload_name is None:
        return frames.Join
    payload = _field("payload", guard.payload_type, required=guard.payload_required)
    fields = [("id", int), ("room", str), payload, ("since", frames.RoomPosition | None, None)]
    return _frame("Join", pattern, "join", fields, f"Join a room `{pattern}` with the payload its guard reads.")


def _publish_frame(pattern: str, publisher: RoomHandler) -> Any:
    if publisher.payload_name is None:
        return frames.Publish
    data = _field("data", publisher.payload_type, required=publisher.payload_required)
    fields = [("id", int), ("room", str), data]
    return _frame("Publish", pattern, "publish", fields, f"Publish to a room `{pattern}` what its handler reads.")


def _message_frame(pattern: str, publisher: RoomHandler | None) -> Any:
    returned = None if publisher is None else typing.get_type_hints(publisher.func).get("return")
    if typing.get_origin(returned) in (typing.Union, types.UnionType):
        # ``X | None``: None broadcasts nothing, so what arrives is an X.
        members = [member for member in typing.get_args(returned) if member is not type(None)]
        returned = functools.reduce(operator.or_, members)
    if returned is None or returned is Any or returned is type(None):
        return frames.Message
    fields = [("room", str), ("offset", int), ("epoch", str), ("data", returned)]
    return _frame("Message", pattern, "message", fields, f"What the publish handler of `{pattern}` broadcasts.")


def _field(name: str, tp: Any, *, required: bool) -> tuple[Any, ...]:
    return (name, tp) if required else (name, tp | msgspec.UnsetType, msgspec.UNSET)


def _frame(kind: str, pattern: str, op: str, fields: list[Any], doc: str) -> Any:
    # Required fields first, as a Struct wants them.
    fields = sorted(fields, key=lambda field: len(field) == 3)
    frame = msgspec.defstruct(_struct_name(kind, pattern), fields, tag=op, tag_field="op", omit_defaults=True)
    frame.__doc__ = doc
    return frame
