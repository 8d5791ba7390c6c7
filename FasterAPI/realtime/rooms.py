"""Room patterns (``"chat:{room_id}"``) and the handlers declared on them: join guards, publish handlers.

A handler's parameters resolve as a route's do, through the same
:class:`~FasterAPI.dependencies.Dependant`: the pattern's parameters as path parameters (typed
and converted), the connection (``ws: WebSocket``), ``Depends(...)``, query parameters of the
connect URL; and one parameter annotated with a ``msgspec.Struct`` (or a dict type) takes the
join payload or the published data, converted to that type.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import msgspec

from ..dependencies import Dependant
from ..websockets import WebSocket

__all__ = ["InvalidPayload", "RoomHandler", "RoomPattern"]

_PARAM = re.compile(r"\{([A-Za-z_]\w*)\}")


class RoomPattern:
    """``"chat:{room_id}"``: literal text, and parameters that each match one or more
    characters other than ``:`` (so ``"doc:{id}:cursors"`` works as expected)."""

    def __init__(self, pattern: str) -> None:
        if not pattern:
            raise ValueError("A room pattern must not be empty")
        self.pattern = pattern
        names: list[str] = []
        parts: list[str] = []
        position = 0
        for match in _PARAM.finditer(pattern):
            parts.append(re.escape(pattern[position : match.start()]))
            name = match.group(1)
            if name in names:
                raise ValueError(f"Duplicate parameter {name!r} in room pattern {pattern!r}")
            names.append(name)
            parts.append(f"(?P<{name}>[^:]+)")
            position = match.end()
        rest = pattern[position:]
        if "{" in rest or "}" in rest:
            raise ValueError(f"Bad room pattern {pattern!r}: parameters are written {{name}}")
        parts.append(re.escape(rest))
        self.names = frozenset(names)
        self._regex = re.compile("".join(parts))

    def match(self, room: str) -> dict[str, str] | None:
        """The parameters of ``room`` if it fits the pattern, else None."""
        found = self._regex.fullmatch(room)
        return None if found is None else found.groupdict()

    def __repr__(self) -> str:
        return f"RoomPattern({self.pattern!r})"


class InvalidPayload(Exception):
    """The join payload or published data does not fit the handler's declared type."""


class RoomHandler:
    """A guard or publish handler on a room pattern, compiled once."""

    def __init__(self, pattern: RoomPattern, func: Callable[..., Any], *, presence: bool = True) -> None:
        self.pattern = pattern
        self.func = func
        #: Members of these rooms get presence diffs and the member list on joining.
        self.presence = presence
        self.dependant = Dependant(func, pattern.names)
        #: The parameter that takes the payload (a Struct or dict annotation), if any.
        self.payload_name: str | None = None
        self.payload_type: Any = None
        self.payload_required = False
        body = self.dependant.body
        if body is not None:
            # The payload comes from the frame, not from an HTTP body: take it off the plan.
            self.dependant.body = None
            self.dependant.needs_body = any(sub.needs_body for _, sub in self.dependant.sub)
            self.payload_name = body.name
            self.payload_type = typing.get_type_hints(func).get(body.name, Any)
            self.payload_required = body.default is msgspec.UNSET

    def convert(self, value: Any) -> Any:
        """``value`` (decoded JSON, ``msgspec.UNSET`` when absent) as the declared type; a handler
        that declares no payload parameter ignores it."""
        if self.payload_name is None:
            return msgspec.UNSET
        if value is msgspec.UNSET:
            if self.payload_required:
                raise InvalidPayload(f"A payload is required (parameter {self.payload_name!r})")
            return msgspec.UNSET
        try:
            return msgspec.convert(value, self.payload_type)
        except msgspec.ValidationError as error:
            raise InvalidPayload(str(error).replace("`$", "`payload")) from None

    async def call(self, ws: WebSocket, params: dict[str, str], payload: Any) -> Any:
        """Resolve the parameters (raises ``WebSocketRequestValidationError``) and call the handler."""
        dependant = self.dependant
        if dependant.needs_stack:
            async with AsyncExitStack() as stack:
                kwargs = await dependant.arguments(ws, params, stack)
                self._add_payload(kwargs, payload)
                return await dependant.run(kwargs, stack)
        kwargs = await dependant.arguments(ws, params, None)
        self._add_payload(kwargs, payload)
        return await dependant.run(kwargs, None)

    def _add_payload(self, kwargs: dict[str, Any], payload: Any) -> None:
        if self.payload_name is not None and payload is not msgspec.UNSET:
            kwargs[self.payload_name] = payload


class RoomTable:
    """The handlers of one kind (guards, or publish handlers), first declared pattern first."""

    def __init__(self) -> None:
        self.handlers: list[RoomHandler] = []

    def add(self, pattern: str, func: Callable[..., Any], *, presence: bool = True) -> None:
        self.handlers.append(RoomHandler(RoomPattern(pattern), func, presence=presence))

    def find(self, room: str) -> tuple[RoomHandler, dict[str, str]] | None:
        for handler in self.handlers:
            params = handler.pattern.match(room)
            if params is not None:
                return handler, params
        return None
