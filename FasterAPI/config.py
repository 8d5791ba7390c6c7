"""Every hub setting in one place: ``Faster(...)`` arguments, else ``FASTERAPI_*`` variables.

=========================  ==============================  =========================================
setting                    environment variable            default
=========================  ==============================  =========================================
backend                    FASTERAPI_BACKEND               ``memory://``
send_queue_size            FASTERAPI_SEND_QUEUE_SIZE       512 messages per connection
overflow                   FASTERAPI_OVERFLOW              ``close`` (1013), or ``drop_oldest``
max_message_size           FASTERAPI_MAX_MESSAGE_SIZE      1 MiB per broadcast payload
presence_ttl               FASTERAPI_PRESENCE_TTL          10 s: a dead worker's members stop counting by
                                                           then (one heartbeat per worker per ttl/3)
health_interval            FASTERAPI_HEALTH_INTERVAL       5 s between end-to-end relay self-pings
history_size               FASTERAPI_HISTORY_SIZE          0: no room history; else the messages kept
                                                           per room (``Faster(history=History(...))``)
history_ttl                FASTERAPI_HISTORY_TTL           300 s a room's history outlives its last message
max_rooms_per_connection   FASTERAPI_MAX_ROOMS_PER_CONNECTION  100: the next join raises TooManyRooms
relay_secret               FASTERAPI_RELAY_SECRET          "": when set, every envelope is signed (HMAC-
                                                           SHA256) and unsigned ones are dropped; during
                                                           a rotation ``new,old`` (sign new, accept both)
write_delay                FASTERAPI_WRITE_DELAY           0 s: broadcasts are written at once; else each
                                                           connection's broadcasts are collected for up
                                                           to this long and written in one call
drain_window               FASTERAPI_DRAIN_WINDOW          2 s: on shutdown, sockets close with 1001
                                                           at random moments over this window
header_timeout             FASTERAPI_HEADER_TIMEOUT        10 s: a request's line and headers must be
                                                           complete this long after it starts, or the
                                                           connection is closed
=========================  ==============================  =========================================

``drain_window`` and ``header_timeout`` are settings of our gunicorn worker and server
(``FasterAPI.server``), read from the environment only. The server also reads
``FASTERAPI_MAX_MESSAGE_SIZE`` from the environment, as its limit on each incoming WebSocket
message (decompressed): it starts before it imports the app, so an app that changes the
limit should set the variable rather than pass ``Faster(max_message_size=...)``.

A slow connection therefore holds at most ``send_queue_size`` messages of at most
``max_message_size`` bytes each, on top of the server's own socket buffer.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class Overflow(enum.Enum):
    """What happens when a connection's send queue is full."""

    CLOSE = "close"  #: close it with 1013 (try again later); the client reconnects and resyncs
    DROP_OLDEST = "drop_oldest"  #: drop its oldest queued message to make room


class _Settings:
    """Load a frozen dataclass of settings from arguments, then ``FASTERAPI_*`` variables."""

    @classmethod
    def load(cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Any:
        """Arguments first, then ``FASTERAPI_<NAME>`` variables, then the defaults."""
        environ = os.environ if environ is None else environ
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(options) - set(known)
        if unknown:
            raise TypeError(f"Unknown option(s) {sorted(unknown)}; expected some of {sorted(known)}")
        values: dict[str, Any] = {}
        for name, field in known.items():
            if options.get(name) is not None:
                raw: Any = options[name]
            elif f"FASTERAPI_{name.upper()}" in environ:
                raw = environ[f"FASTERAPI_{name.upper()}"]
            else:
                continue
            values[name] = _coerce(name, field.default, raw)
        return cls(**values)


@dataclass(frozen=True)
class HubConfig(_Settings):
    backend: str = "memory://"
    send_queue_size: int = 512
    overflow: Overflow = Overflow.CLOSE
    max_message_size: int = 1024 * 1024
    presence_ttl: float = 10.0
    health_interval: float = 5.0
    history_size: int = 0
    history_ttl: float = 300.0
    max_rooms_per_connection: int = 100
    relay_secret: str = ""
    write_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.send_queue_size < 1:
            raise ValueError(f"send_queue_size must be at least 1, got {self.send_queue_size}")
        if self.max_message_size < 1:
            raise ValueError(f"max_message_size must be at least 1, got {self.max_message_size}")
        if self.presence_ttl <= 0:
            raise ValueError(f"presence_ttl must be positive, got {self.presence_ttl}")
        if self.health_interval <= 0:
            raise ValueError(f"health_interval must be positive, got {self.health_interval}")
        if self.history_size < 0:
            raise ValueError(f"history_size must not be negative, got {self.history_size}")
        if self.history_ttl <= 0:
            raise ValueError(f"history_ttl must be positive, got {self.history_ttl}")
        if self.max_rooms_per_connection < 1:
            raise ValueError(f"max_rooms_per_connection must be at least 1, got {self.max_rooms_per_connection}")
        if not 0 <= self.write_delay <= 1:
            raise ValueError(f"write_delay must be between 0 and 1 second, got {self.write_delay}")

    @property
    def relay_secrets(self) -> list[bytes]:
        """The relay secrets, comma-separated: the first signs, every one is accepted (rotation)."""
        return [secret.strip().encode() for secret in self.relay_secret.split(",") if secret.strip()]


@dataclass(frozen=True)
class ServerConfig(_Settings):
    drain_window: float = 2.0
    header_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.drain_window < 0:
            raise ValueError(f"drain_window must not be negative, got {self.drain_window}")
        if self.header_timeout <= 0:
            raise ValueError(f"header_timeout must be positive, got {self.header_timeout}")


def _coerce(name: str, default: Any, raw: Any) -> Any:
    try:
        if isinstance(default, Overflow):
            return raw if isinstance(raw, Overflow) else Overflow(str(raw).lower())
        if isinstance(default, bool):
            return raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        return str(raw)
    except ValueError:
        choices = f" (one of {[o.value for o in Overflow]})" if isinstance(default, Overflow) else ""
        raise ValueError(f"Bad value {raw!r} for hub setting {name!r}{choices}") from None
