"""Property tests (hypothesis) of the pub/sub wire format and of room-name validation.

The router's properties live in ``tests/test_routing.py``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from FasterAPI.pubsub.envelope import (
    KIND_BINARY,
    KIND_PING,
    KIND_TEXT,
    MAX_ROOM_NAME_BYTES,
    VERSION,
    Envelope,
    decode,
    encode,
    prepare,
    room_channel,
    validate_room,
    worker_channel,
)
from FasterAPI.pubsub.errors import InvalidEnvelope, InvalidRoomName, PayloadTooLarge

SETTINGS = settings(max_examples=300, deadline=None, database=None)

# -- the envelope decoder --------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)

#: msgpack arrays shaped more or less like an envelope: right length, plausible fields, or not.
_near_envelopes = st.lists(
    st.one_of(
        st.sampled_from([VERSION, VERSION + 1, 0, -1, KIND_TEXT, KIND_BINARY, KIND_PING, 3, 2**40]),
        st.binary(max_size=30),
        st.text(max_size=10),
        _values,
    ),
    max_size=9,
).map(msgspec.msgpack.encode)


@SETTINGS
@given(data=st.one_of(st.binary(max_size=200), _near_envelopes, _values.map(msgspec.msgpack.encode)))
def test_decode_raises_only_invalid_envelope(data: bytes) -> None:
    try:
        envelope = decode(data)
    except InvalidEnvelope:
        return
    # Whatever it accepts is a well-formed envelope of this version.
    assert envelope.v == VERSION
    assert envelope.kind in (KIND_TEXT, KIND_BINARY, KIND_PING)
    assert isinstance(envelope.payload, bytes)
    if envelope.kind == KIND_TEXT:
        envelope.payload.decode("utf-8")
    assert all(isinstance(f, str) for f in (envelope.room, envelope.target, envelope.exclude, envelope.origin))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_names = st.text(max_size=40)
_rooms = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=40)
_targets = st.builds(
    lambda worker, n: f"{worker}.{n}", st.text("0123456789abcdef", min_size=1, max_size=12), st.integers(0)
)


@SETTINGS
@given(
    data=st.one_of(st.text(), st.binary(), _json),
    address=st.one_of(_rooms.map(lambda room: ("room", room)), _targets.map(lambda target: ("target", target))),
    exclude=_names,
    origin=_names,
)
def test_prepare_then_decode_round_trips(data: Any, address: tuple[str, str], exclude: str, origin: str) -> None:
    kind, name = address
    room, target = (name, "") if kind == "room" else ("", name)
    if kind == "room":
        channel, packed = prepare(data, room=room, exclude=exclude, origin=origin, max_size=1 << 20)
        assert channel == room_channel(room)
    else:
        channel, packed = prepare(data, target=target, exclude=exclude, origin=origin, max_size=1 << 20)
        assert channel == worker_channel(target.partition(".")[0])
    envelope = decode(packed)
    if isinstance(data, bytes):
        assert (envelope.kind, envelope.payload) == (KIND_BINARY, data)
    elif isinstance(data, str):
        assert (envelope.kind, envelope.payload) == (KIND_TEXT, data.encode())
    else:
        assert envelope.kind == KIND_TEXT
        assert msgspec.json.decode(envelope.payload) == data
    assert (envelope.v, envelope.room, envelope.target, envelope.exclude, envelope.origin) == (
        VERSION,
        room,
        target,
        exclude,
        origin,
    )


_valid_envelopes = st.builds(
    Envelope,
    v=st.just(VERSION),
    kind=st.sampled_from([KIND_BINARY, KIND_PING]),
    payload=st.binary(max_size=100),
    room=_names,
    target=_names,
    exclude=_names,
    origin=_names,
) | st.builds(
    Envelope,
    v=st.just(VERSION),
    kind=st.just(KIND_TEXT),
    payload=st.text(max_size=100).map(str.encode),
    room=_names,
    target=_names,
    exclude=_names,
    origin=_names,
)


@SETTINGS
@given(envelope=_valid_envelopes)
def test_encode_then_decode_round_trips_every_valid_envelope(envelope: Envelope) -> None:
    assert decode(encode(envelope)) == envelope


@SETTINGS
@given(payload=st.binary(max_size=64), limit=st.integers(min_value=1, max_value=64))
def test_prepare_refuses_exactly_the_payloads_over_the_limit(payload: bytes, limit: int) -> None:
    if len(payload) > limit:
        with pytest.raises(PayloadTooLarge):
            prepare(payload, room="r", origin="o", max_size=limit)
    else:
        assert decode(prepare(payload, room="r", origin="o", max_size=limit)[1]).payload == payload


# -- room names ------------------------------------------------------------------------------


def is_valid_room(name: str) -> bool:
    """The documented rule: 1 to 200 bytes of UTF-8, no control character (Unicode ``Cc``)."""
    return 0 < len(name.encode("utf-8")) <= MAX_ROOM_NAME_BYTES and not any(
        unicodedata.category(c) == "Cc" for c in name
    )


#: Names around the byte limit, in 1- to 4-byte characters, with the odd control character.
_room_names = st.one_of(
    st.text(max_size=60),
    st.text(st.characters(codec="utf-8"), min_size=40, max_size=210),
    st.text(
        st.sampled_from(["a", "\u00e9", "\u20ac", "\U0001f600", "\x00", "\x1f", "\x7f", "\x85", "\u009f", " "]),
        max_size=205,
    ),
)


@SETTINGS
@given(name=_room_names)
def test_validate_room_accepts_exactly_the_documented_names(name: str) -> None:
    if is_valid_room(name):
        assert validate_room(name) == name
    else:
        with pytest.raises(InvalidRoomName):
            validate_room(name)


@SETTINGS
@given(name=st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
def test_validate_room_refuses_non_strings(name: Any) -> None:
    with pytest.raises(InvalidRoomName):
        validate_room(name)


@SETTINGS
@given(name=st.text(st.characters(codec=None, categories=["L", "N", "P", "Zs", "Cs"]), min_size=1, max_size=50))
@example(name="lobby")
@example(name="room-\udc80")  # what json.loads('"room-\\udc80"') returns
def test_every_accepted_room_name_can_be_published(name: str) -> None:
    """A name validate_room lets through must work as a room: an envelope and a channel name.

    Python strings can hold lone surrogates (``json.loads('"\\\\ud800"')`` makes one from a
    client's message); they are not UTF-8, so a room named with one can never be published.
    """
    try:
        validate_room(name)
    except InvalidRoomName:
        return
    decode(prepare("hello", room=name, origin="o", max_size=1024)[1])
    room_channel(name).encode("utf-8")
