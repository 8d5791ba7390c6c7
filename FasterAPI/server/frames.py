"""RFC 6455 frames built once per broadcast and written as-is to every member's transport.

A server's frames are not masked, so the same bytes are valid for every connection. For
connections that negotiated permessage-deflate *without server context takeover*, each
message is compressed on its own (RFC 7692), so one compressed frame also serves them all.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable

OP_TEXT = 0x1
OP_BINARY = 0x2

_FIN = 0x80
_RSV1 = 0x40
_SYNC_FLUSH_TAIL = b"\x00\x00\xff\xff"


def frame(opcode: int, payload: bytes, *, compressed: bool = False) -> bytes:
    """One complete (FIN) unmasked frame: header then payload."""
    first = _FIN | (_RSV1 if compressed else 0) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 126, length)
    else:
        header = struct.pack("!BBQ", first, 127, length)
    return header + payload


def deflate(payload: bytes, window_bits: int, mem_level: int = 5) -> bytes:
    """The permessage-deflate body of one message compressed with a fresh context."""
    compressor = zlib.compressobj(wbits=-window_bits, memLevel=mem_level)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    # RFC 7692 7.2.1: drop the 0x00 0x00 0xff 0xff that ends a sync flush.
    return data[:-4] if data.endswith(_SYNC_FLUSH_TAIL) else data


def plain_frame(payload: bytes, binary: bool) -> bytes:
    """The :data:`~FasterAPI.pubsub.delivery.Encoder` of an uncompressed broadcast frame."""
    return frame(OP_BINARY if binary else OP_TEXT, payload)


@functools.cache
def deflated_frame(window_bits: int) -> Callable[[bytes, bool], bytes]:
    """The encoder of a permessage-deflate frame without context takeover (one object per size)."""

    def encode(payload: bytes, binary: bool) -> bytes:
        return frame(OP_BINARY if binary else OP_TEXT, deflate(payload, window_bits), compressed=True)

    return encode
