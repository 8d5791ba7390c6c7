"""The refusals a realtime guard or publish handler raises."""

from __future__ import annotations

__all__ = ["JoinDenied", "PublishRefused", "Refused"]


class Refused(Exception):
    """A request of a realtime client is refused: it gets ``code`` and ``reason``; its socket stays open."""

    default_code = "refused"

    def __init__(self, reason: str = "", *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code or self.default_code


class JoinDenied(Refused):
    """Raised by a room guard: the join is answered ``denied`` (code ``forbidden`` unless given).

    Raised when the connection is already in the room (a rejoin re-runs the guard), it also
    takes the connection out of the room: the permission was revoked.
    """

    default_code = "forbidden"


class PublishRefused(Refused):
    """Raised by a publish handler: the publish is answered ``error`` (code ``publish_refused``)."""

    default_code = "publish_refused"
