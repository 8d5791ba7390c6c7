"""The realtime protocol's frames (version 1): reading the client's, writing the server's.

Two forms of the same objects: JSON text frames (:data:`SUBPROTOCOL`, the default) and msgpack
binary frames (:data:`MSGPACK_SUBPROTOCOL`), each a :class:`Codec`. Frames are built as JSON
here; a msgpack connection gets each one converted (:meth:`Codec.delivery`), and a frame
shared by many connections (:class:`SharedFrame`) is converted once per worker.

Client frames are read in two steps, so that each problem gets its own code: the text must be
a JSON object with a string ``op`` (else ``bad_frame`` / ``unknown_op``), then the fields of
that op must have their types (else ``bad_request``, naming the field). Server frames are
built here and nowhere else; a broadcast is wrapped by :func:`wrap_message`, once per worker
per broadcast (:meth:`~FasterAPI.pubsub.delivery.Delivery.derived`).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from ..pubsub.delivery import Delivery, Transform
from ..pubsub.envelope import InvalidRoomName, validate_room
from ..pubsub.history import Position

__all__ = [
    "SUBPROTOCOL",
    "Ack",
    "BadFrame",
    "Denied",
    "Error",
    "ErrorCode",
    "Join",
    "Joined",
    "Leave",
    "Left",
    "Message",
    "Ping",
    "Pong",
    "Presence",
    "Publish",
    "Request",
    "Reset",
    "RoomPosition",
    "ServerFrame",
    "Welcome",
    "read_frame",
    "wrap_message",
]

#: The WebSocket subprotocol of the JSON form (also what a client offering none speaks).
SUBPROTOCOL = "fasterapi.v1"
#: The same objects as msgpack, in binary frames.
MSGPACK_SUBPROTOCOL = "fasterapi.v1.msgpack"
VERSION = 1

_encode = msgspec.json.Encoder().encode
_decode_any = msgspec.json.Decoder().decode
_msgpack_encode = msgspec.msgpack.Encoder().encode
_msgpack_decode = msgspec.msgpack.Decoder().decode


class ErrorCode(enum.StrEnum):
    """The codes of ``error`` and ``denied`` replies."""

    BAD_FRAME = "bad_frame"
    UNKNOWN_OP = "unknown_op"
    BAD_REQUEST = "bad_request"
    UNKNOWN_ROOM = "unknown_room"
    FORBIDDEN = "forbidden"
    INVALID_PAYLOAD = "invalid_payload"
    TOO_LARGE = "too_large"
    TOO_MANY_ROOMS = "too_many_rooms"
    NOT_JOINED = "not_joined"
    PUBLISH_REFUSED = "publish_refused"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"


# -- client frames --------------------------------------------------------------------------

RequestId = Annotated[int, msgspec.Meta(gt=0)]


class RoomPosition(msgspec.Struct):
    """A message's place in its room's history: ``offset`` within ``epoch``."""

    offset: int
    epoch: str


class Join(msgspec.Struct, tag="join", tag_field="op"):
    """Join ``room``; ``since``: resume after that position; ``payload``: for the room's guard."""

    id: RequestId
    room: str
    since: RoomPosition | None = None
    payload: Any = msgspec.UNSET


class Leave(msgspec.Struct, tag="leave", tag_field="op"):
    """Leave ``room`` (answered ``left`` even when not in it)."""

    id: RequestId
    room: str


class Publish(msgspec.Struct, tag="publish", tag_field="op"):
    """Publish ``data`` to ``room`` through the room's publish handler."""

    id: RequestId
    room: str
    data: Any = msgspec.UNSET


class Ping(msgspec.Struct, tag="ping", tag_field="op"):
    """Keepalive, either way: the other side answers ``pong``."""


class Pong(msgspec.Struct, tag="pong", tag_field="op"):
    """The answer to a ``ping``."""


Request = Join | Leave | Publish | Ping | Pong
_OPS: dict[str, type[Request]] = {"join": Join, "leave": Leave, "publish": Publish, "ping": Ping, "pong": Pong}


class BadFrame(Exception):
    """A client frame that cannot be served: answered with ``error`` (``request_id`` when known)."""

    def __init__(self, code: ErrorCode, reason: str, request_id: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.request_id = request_id


def read_frame(text: str) -> Request:
    """The request in a JSON text frame; raises :class:`BadFrame` naming the problem."""
    try:
        frame = _decode_any(text)
    except (msgspec.DecodeError, RecursionError) as error:
        raise BadFrame(ErrorCode.BAD_FRAME, f"Not JSON: {error}") from None
    return _request(frame)


def read_msgpack_frame(data: bytes) -> Request:
    """The request in a msgpack binary frame; raises :class:`BadFrame` naming the problem."""
    try:
        frame = _msgpack_decode(data)
    except (msgspec.DecodeError, RecursionError) as error:
        raise BadFrame(ErrorCode.BAD_FRAME, f"Not msgpack: {error}") from None
    return _request(frame)


def _request(frame: Any) -> Request:
    if not isinstance(frame, dict):
        raise BadFrame(ErrorCode.BAD_FRAME, f"A frame is a JSON object, got {type(frame).__name__}")
    raw_id = frame.get("id")
    request_id = raw_id if type(raw_id) is int and raw_id > 0 else None
    op = frame.get("op")
    if not isinstance(op, str):
        raise BadFrame(ErrorCode.BAD_REQUEST, "A frame needs a string field 'op'", request_id)
    kind = _OPS.get(op)
    if kind is None:
        raise BadFrame(ErrorCode.UNKNOWN_OP, f"Unknown op {op[:40]!r}", request_id)
    try:
        request = msgspec.convert(frame, kind)
    except msgspec.ValidationError as error:
        raise BadFrame(ErrorCode.BAD_REQUEST, f"{op}: {error}", request_id) from None
    if isinstance(request, Join | Leave | Publish):
        try:
            validate_room(request.room)
        except InvalidRoomName as error:
            raise BadFrame(ErrorCode.BAD_REQUEST, str(error), request_id) from None
    return request


# -- server frames --------------------------------------------------------------------------


class Welcome(msgspec.Struct, tag="welcome", tag_field="op"):
    """The server's first frame: the connection's id and the ping interval (seconds)."""

    connection: str
    ping_interval: float
    version: int


class Joined(msgspec.Struct, tag="joined", tag_field="op"):
    """A join succeeded: the room's top, and its members' presence metadata by connection id."""

    id: int
    room: str
    recovered: bool
    position: RoomPosition | None
    presence: dict[str, Any]


class Denied(msgspec.Struct, tag="denied", tag_field="op"):
    """A join was refused (``code`` is one of :class:`ErrorCode`, or a guard's own)."""

    id: int
    room: str
    code: str
    reason: str


class Left(msgspec.Struct, tag="left", tag_field="op", omit_defaults=True):
    """Out of ``room``: the answer to a ``leave`` (with ``id``), or the server's doing (with ``reason``)."""

    room: str
    id: int | msgspec.UnsetType = msgspec.UNSET
    reason: str | msgspec.UnsetType = msgspec.UNSET


class Ack(msgspec.Struct, tag="ack", tag_field="op"):
    """A publish succeeded: the broadcast's place in the room's history (null: none kept or made)."""

    id: int
    room: str
    position: RoomPosition | None


class Error(msgspec.Struct, tag="error", tag_field="op"):
    """A request failed, or (``id`` null) a frame could not be read."""

    id: int | None
    code: str
    reason: str


class Message(msgspec.Struct, tag="message", tag_field="op", omit_defaults=True):
    """A broadcast to ``room`` (``""``: to this connection alone); bytes are base64 with ``binary``."""

    room: str
    offset: int
    epoch: str
    data: Any
    binary: bool | msgspec.UnsetType = msgspec.UNSET


class Presence(msgspec.Struct, tag="presence", tag_field="op"):
    """Who joined ``room`` (connection id: metadata) and who left it."""

    room: str
    joins: dict[str, Any]
    leaves: list[str]


class Reset(msgspec.Struct, tag="reset", tag_field="op"):
    """Messages of ``room`` were lost for this connection: reload the room's state."""

    room: str


#: What the server sends (:func:`wrap_message` and :func:`presence_diff` write their frames
#: directly, for speed; ``Message`` and ``Presence`` describe what they write).
ServerFrame = Welcome | Joined | Denied | Left | Ack | Error | Message | Presence | Reset | Ping | Pong


def _position(position: Position | None) -> RoomPosition | None:
    return None if position is None else RoomPosition(position.offset, position.epoch)


def welcome(connection_id: str, ping_interval: float) -> bytes:
    return _encode(Welcome(connection_id, ping_interval, VERSION))


def joined(request_id: int, room: str, recovered: bool, position: Position | None, presence: dict[str, Any]) -> bytes:
    return _encode(Joined(request_id, room, recovered, _position(position), presence))


def denied(request_id: int, room: str, code: str, reason: str) -> bytes:
    return _encode(Denied(request_id, room, code, reason))


def left(request_id: int, room: str) -> bytes:
    return _encode(Left(room, id=request_id))


def removed(room: str, reason: str) -> bytes:
    """``left`` without an id: the server took the connection out of ``room``."""
    return _encode(Left(room, reason=reason))


def ack(request_id: int, room: str, position: Position | None) -> bytes:
    return _encode(Ack(request_id, room, _position(position)))


def error(request_id: int | None, code: str, reason: str) -> bytes:
    return _encode(Error(request_id, code, reason))


def reset(room: str) -> bytes:
    return _encode(Reset(room))


def presence_diff(room: str, joins: dict[str, bytes], leaves: list[str]) -> bytes:
    """A ``presence`` frame; ``joins`` maps connection ids to their metadata (JSON bytes)."""
    raw_joins = {member: msgspec.Raw(metadata or b"null") for member, metadata in joins.items()}
    return _encode({"op": "presence", "room": room, "joins": raw_joins, "leaves": leaves})


PING = b'{"op":"ping"}'
PONG = b'{"op":"pong"}'


def wrap_msgpack_message(delivery: Delivery) -> Delivery:
    """:func:`wrap_message` for msgpack connections: bytes stay bytes, JSON becomes msgpack."""
    if delivery.binary:
        data: Any = delivery.payload
    elif delivery.is_json:
        data = _decode_any(delivery.payload)
    else:
        data = delivery.payload.decode("utf-8")
    frame = {"op": "message", "room": delivery.room, "offset": delivery.offset, "epoch": delivery.epoch, "data": data}
    return Delivery(_msgpack_encode(frame), True, delivery.offset, room=delivery.room, epoch=delivery.epoch)


def wrap_message(delivery: Delivery) -> Delivery:
    """A broadcast as a ``message`` frame (the transform every realtime member of a worker shares).

    JSON that was sent goes in as is; a ``str`` becomes a JSON string; bytes become base64
    with ``"binary":true``.
    """
    head = b'{"op":"message","room":%s,"offset":%d,"epoch":%s,"data":' % (
        _encode(delivery.room),
        delivery.offset,
        _encode(delivery.epoch),
    )
    if delivery.binary:
        frame = head + b'"' + base64.b64encode(delivery.payload) + b'","binary":true}'
    elif delivery.is_json:
        frame = head + delivery.payload + b"}"
    else:
        frame = head + _encode(delivery.payload.decode("utf-8")) + b"}"
    return Delivery(frame, False, delivery.offset, room=delivery.room, epoch=delivery.epoch, is_json=True)


# -- control messages between workers ---------------------------------------------------------

#: How a room control message that is a presence frame begins (what :func:`presence_diff` writes).
PRESENCE_PREFIX = b'{"op":"presence",'


class Kick(msgspec.Struct, tag="kick", tag_field="op"):
    """Take connection ``target`` (the envelope's) out of ``room``, telling it ``reason``."""

    room: str
    reason: str


_kick_decoder = msgspec.json.Decoder(Kick)


def kick(room: str, reason: str) -> bytes:
    return _encode(Kick(room, reason))


def read_kick(payload: bytes) -> Kick | None:
    try:
        return _kick_decoder.decode(payload)
    except msgspec.DecodeError:
        return None


# -- the two forms ----------------------------------------------------------------------------


class Codec:
    """One form of the protocol: how its frames are read, and how a JSON-built frame is sent."""

    def __init__(self, subprotocol: str, binary: bool, read: Callable[[Any], Request], wrap: Transform) -> None:
        self.subprotocol = subprotocol
        #: Client frames come in binary frames (msgpack) or text frames (JSON).
        self.binary = binary
        self.read = read
        #: The transform every member's broadcasts go through (shared per worker, per form).
        self.wrap = wrap

    def delivery(self, frame: bytes) -> Delivery:
        """A server frame built as JSON, in this form."""
        if not self.binary:
            return Delivery(frame, False)
        return Delivery(_msgpack_encode(_decode_any(frame)), True)


JSON = Codec(SUBPROTOCOL, False, read_frame, wrap_message)
MSGPACK = Codec(MSGPACK_SUBPROTOCOL, True, read_msgpack_frame, wrap_msgpack_message)
CODECS = {codec.subprotocol: codec for codec in (JSON, MSGPACK)}


def choose_codec(offered: Any) -> tuple[Codec, str | None]:
    """The form of the first subprotocol of ours the client offered (its preference), and the
    subprotocol to accept with; JSON without a subprotocol when it offered none of ours."""
    for name in offered or ():
        codec = CODECS.get(name)
        if codec is not None:
            return codec, name
    return JSON, None


class SharedFrame:
    """A server frame many connections of a worker receive (a presence diff, a ping, a reset):
    one delivery per form, built on first use, so each form is framed once."""

    __slots__ = ("_forms", "frame")

    def __init__(self, frame: bytes) -> None:
        self.frame = frame
        self._forms: dict[Codec, Delivery] = {}

    def delivery(self, codec: Codec) -> Delivery:
        found = self._forms.get(codec)
        if found is None:
            found = self._forms[codec] = codec.delivery(self.frame)
        return found
