"""Every error of ``FasterAPI.pubsub``, under one base class, :class:`PubSubError`.

Each keeps the built-in class it always had (``ValueError`` for bad input, ``RuntimeError``
for an unavailable relay), so ``except ValueError`` around a broadcast still works.
"""

from __future__ import annotations

__all__ = ["BackendUnavailable", "InvalidEnvelope", "InvalidRoomName", "PayloadTooLarge", "PubSubError", "TooManyRooms"]


class PubSubError(Exception):
    """Base class of every rooms-and-broadcast error."""


class BackendUnavailable(PubSubError, RuntimeError):
    """The backend cannot carry this operation now (not started, or its connection is down)."""


class InvalidRoomName(PubSubError, ValueError):
    """A room name is not a str, is empty, too long, not valid Unicode or holds control characters."""


class PayloadTooLarge(PubSubError, ValueError):
    """A broadcast payload is over ``max_message_size``; refused before it reaches the relay."""


class TooManyRooms(PubSubError, ValueError):
    """A connection asked to join more rooms than ``max_rooms_per_connection`` allows."""


class InvalidEnvelope(PubSubError, ValueError):
    """Bytes on a channel are not a valid envelope of a version this worker understands."""
