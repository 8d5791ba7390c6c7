"""The wire format between workers: a small versioned msgpack envelope (never pickle).

An envelope is built once per publish by :func:`prepare`, the one publish step the hub and
:class:`~FasterAPI.pubsub.publisher.Publisher` share, and decoded once per receiving worker.
Anything that does not decode into a valid version-1 envelope raises
:class:`InvalidEnvelope`, which the hub logs, counts and drops.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from .errors import InvalidEnvelope, InvalidRoomName, PayloadTooLarge

__all__ = [
    "ENVELOPE_OVERHEAD",
    "KIND_BINARY",
    "KIND_CONTROL",
    "KIND_PING",
    "KIND_TEXT",
    "MAX_ROOM_NAME_BYTES",
    "Envelope",
    "InvalidEnvelope",
    "InvalidRoomName",
    "PayloadTooLarge",
    "decode",
    "encode",
    "encode_payload",
    "prepare",
    "room_channel",
    "sign",
    "stamp",
    "validate_room",
    "verify",
    "worker_channel",
    "worker_of",
]

VERSION = 1
KIND_TEXT = 0
KIND_BINARY = 1
KIND_PING = 2  #: a worker's end-to-end self-check; never delivered to sockets
#: A message for the hub's control handlers (``Hub.control_handlers``), never handed to a sink as
#: is: e.g. a presence diff of a room, or a kick for one connection. Never kept in history.
KIND_CONTROL = 3

MAX_ROOM_NAME_BYTES = 200
#: Bytes an envelope may carry besides its payload (room, ids, signature, position), at most.
ENVELOPE_OVERHEAD = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Identified(Protocol):
    """Anything with a connection id (a ``WebSocket``)."""

    @property
    def id(self) -> str:
        """The connection's id."""


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    """One message between workers.

    ``room`` is set for broadcasts, ``target`` (a connection id) for direct sends;
    ``exclude`` is a connection id to skip; ``origin`` the publishing worker; ``is_json``:
    the text payload is a JSON-encoded value (so history can give back what was sent); ``sig``
    an HMAC-SHA256 of the envelope without ``sig``, ``offset`` and ``epoch``, when the app has
    a ``relay_secret`` (:func:`signed`, :func:`verify`).
    ``offset`` and ``epoch`` are the message's position in its room's history, stamped by the
    relay (:func:`stamp`); 0 and "" without history. Fields are only ever added at the end:
    a worker ignores trailing fields it does not know, so versions can be mixed while deploying.
    """

    v: int
    kind: int
    payload: bytes
    room: str = ""
    target: str = ""
    exclude: str = ""
    origin: str = ""
    is_json: bool = False
    sig: bytes = b""
    offset: int = 0
    epoch: str = ""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)
_json_encode = msgspec.json.Encoder().encode


def validate_room(room: Any) -> str:
    """Return ``room`` if it is a usable room name, else raise :class:`InvalidRoomName`."""
    if not isinstance(room, str):
        raise InvalidRoomName(f"A room name must be a str, got {type(room).__name__}")
    if not room:
        raise InvalidRoomName("A room name must not be empty")
    try:
        size = len(room.encode("utf-8"))
    except UnicodeEncodeError as error:
        # A lone surrogate (e.g. from json.loads of "\udc80") can never go on the wire.
        raise InvalidRoomName(f"Room name {room!r} is not valid Unicode text: {error.reason}") from None
    if size > MAX_ROOM_NAME_BYTES:
        raise InvalidRoomName(f"Room name is {size} bytes long; the limit is {MAX_ROOM_NAME_BYTES}")
    bad = _CONTROL.search(room)
    if bad is not None:
        raise InvalidRoomName(f"Room name {room!r} holds control character {bad.group()!r} at {bad.start()}")
    return room


def encode_payload(data: Any) -> tuple[int, bytes]:
    """``str`` -> text, ``bytes`` -> binary, anything else -> JSON text via msgspec."""
    if isinstance(data, str):
        return KIND_TEXT, data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        return KIND_BINARY, bytes(data)
    try:
        return KIND_TEXT, _json_encode(data)
    except (TypeError, msgspec.EncodeError) as error:
        raise TypeError(f"Cannot send {type(data).__name__} as JSON: {error}") from None


def encode(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def room_channel(room: str) -> str:
    """The logical channel carrying ``room``'s broadcasts."""
    return "room:" + room


def worker_channel(worker_id: str) -> str:
    """The logical channel of one worker: direct sends and its self-pings."""
    return "worker:" + worker_id


def prepare(
    data: Any,
    *,
    room: str | None = None,
    target: str | None = None,
    exclude: str | Identified | None = None,
    origin: str,
    max_size: int,
    secret: bytes = b"",
    control: bool = False,
) -> tuple[str, bytes]:
    """Check the address, encode ``data`` once, enforce ``max_size`` and wrap it in an envelope.

    Exactly one of ``room`` (a broadcast; ``exclude`` is a connection or its id to skip) and
    ``target`` (a connection id: a direct send) is given. Returns the logical channel to
    publish on and the envelope bytes. Raises :class:`InvalidRoomName`, ``ValueError`` for a
    malformed connection id, ``TypeError`` for data that is not JSON-encodable and
    :class:`PayloadTooLarge`; nothing has been published then. With ``secret`` the envelope
    is signed (see :func:`verify`).
    """
    if (room is None) == (target is None):
        raise TypeError("prepare() needs exactly one of room= and target=")
    if room is not None:
        channel = room_channel(validate_room(room))
    else:
        channel = worker_channel(worker_of(target))  # type: ignore[arg-type]
    exclude_id = exclude if exclude is None or isinstance(exclude, str) else exclude.id
    kind, payload = encode_payload(data)
    if control:
        if kind != KIND_BINARY:
            raise TypeError("A control message is bytes")
        kind = KIND_CONTROL
    if len(payload) > max_size:
        raise PayloadTooLarge(f"Payload of {len(payload)} bytes is over max_message_size ({max_size} bytes); not sent")
    is_json = not control and not isinstance(data, str | bytes | bytearray | memoryview)
    envelope = Envelope(VERSION, kind, payload, room or "", target or "", exclude_id or "", origin, is_json)
    return channel, _encoder.encode(sign(envelope, secret) if secret else envelope)


def sign(envelope: Envelope, secret: bytes) -> Envelope:
    """``envelope`` with its signature under ``secret`` (see :func:`verify`)."""
    return msgspec.structs.replace(envelope, sig=_signature(_encoder.encode(envelope), secret))


def _signature(unsigned: bytes, secret: bytes) -> bytes:
    return hmac.new(secret, unsigned, hashlib.sha256).digest()


def verify(envelope: Envelope, secrets: Sequence[bytes]) -> bool:
    """True when ``envelope`` was signed with one of ``secrets`` (several during a key rotation)."""
    if not envelope.sig:
        return False
    unsigned = _encoder.encode(msgspec.structs.replace(envelope, sig=b"", offset=0, epoch=""))
    return any(hmac.compare_digest(envelope.sig, _signature(unsigned, secret)) for secret in secrets)


#: How an unstamped envelope ends: ``offset`` 0 and ``epoch`` "" (what :func:`stamp` replaces).
UNSTAMPED_TAIL = b"\x00\xa0"
#: Epochs are short strings (a msgpack fixstr), so a relay script can stamp them by hand.
MAX_EPOCH_LENGTH = 31


def stamp(data: bytes, offset: int, epoch: str) -> bytes:
    """``data`` (an envelope from :func:`prepare`) with its history position set.

    The relay stamps in the same atomic step that stores and publishes it; Redis does the same
    in Lua, byte for byte: the two trailing fields become a msgpack uint64 and a fixstr.
    """
    raw_epoch = epoch.encode()
    if not data.endswith(UNSTAMPED_TAIL) or len(raw_epoch) > MAX_EPOCH_LENGTH or not 0 < offset < 2**64:
        raise ValueError(f"Cannot stamp offset {offset} and epoch {epoch!r} on this envelope")
    return data[:-2] + b"\xcf" + offset.to_bytes(8, "big") + bytes((0xA0 | len(raw_epoch),)) + raw_epoch


def worker_of(connection_id: str) -> str:
    """The worker id inside a connection id (``"<worker>.<n>"``); ValueError if malformed."""
    worker, dot, number = connection_id.partition(".") if isinstance(connection_id, str) else ("", "", "")
    if not (dot and worker and number.isdigit()):
        raise ValueError(f"Not a connection id: {connection_id!r} (expected '<worker>.<number>', as ws.id)")
    return worker


def decode(data: bytes) -> Envelope:
    """Decode and check an envelope; raises :class:`InvalidEnvelope` naming the problem."""
    try:
        envelope = _decoder.decode(data)
    except (msgspec.DecodeError, RecursionError) as error:
        raise InvalidEnvelope(f"Undecodable envelope ({len(data)} bytes): {error}") from None
    if envelope.v != VERSION:
        raise InvalidEnvelope(f"Envelope version {envelope.v} is not supported (this worker speaks {VERSION})")
    if envelope.kind not in (KIND_TEXT, KIND_BINARY, KIND_PING, KIND_CONTROL):
        raise InvalidEnvelope(f"Unknown envelope kind {envelope.kind}")
    if envelope.kind == KIND_TEXT:
        try:
            envelope.payload.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEnvelope("Text envelope payload is not valid UTF-8") from None
    return envelope
