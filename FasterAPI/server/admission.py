"""Admission: a worker stops accepting connections short of its open-files limit.

Every connection is a file, and so is everything else a worker opens while it serves: the
Redis or NATS connection a reconnect or a burst of joins needs, the file a ``FileResponse``
sends. A process at its soft ``RLIMIT_NOFILE`` can open none of them. Neither event loop
handles the wall well: asyncio's stops accepting for a second and logs an error each time,
and uvloop (libuv) accepts every waiting connection and closes it at once, so clients that
a sibling worker could have served are refused.

So a worker keeps a reserve. At :attr:`Admission.limit` connections it stops accepting: it
closes its own descriptor of each listening socket (keeping a duplicate), and new
connections wait in the socket's backlog, where a sibling worker takes them (gunicorn's
workers share the listening socket), or until this worker has room again. When its
connections fall 1% below the limit it listens again on the kept duplicates.

uvloop (the default where installed) accepts one connection per callback, so a worker stops
at its limit exactly; asyncio's own loop accepts every connection waiting at once (up to
the listen backlog) before the first is counted, so a burst can pass the limit by that many.

The limit is the soft open-files limit, minus the files open when the worker started (the
app, its backend connections), minus a reserve of 256 plus 2% of the limit for what the
worker opens later. ``fasterapi run`` and ``deploy/gunicorn.conf.py`` raise the soft limit to
the hard one first; :mod:`.files` reads both numbers.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = ["Admission", "AdmissionState", "AdmittedConnections", "connection_limit"]

logger = logging.getLogger("uvicorn.error")

#: Files kept free for what a worker opens after it started: at least this many...
RESERVE_FILES = 256
#: ...plus this share of the open-files limit.
RESERVE_SHARE = 0.02
#: Accepting resumes once the connections are this share of the limit below it.
RESUME_SHARE = 0.01


def connection_limit(soft_limit: int, open_files: int) -> int:
    """The connections a worker accepts: its open-files limit less those open and a reserve."""
    reserve = RESERVE_FILES + int(soft_limit * RESERVE_SHARE)
    return max(1, soft_limit - open_files - reserve)


class AdmissionState(enum.Enum):
    """Whether a worker's listeners take new connections."""

    ACCEPTING = "accepting"
    PAUSED = "paused"  #: at the limit: the listeners are closed, their duplicates kept
    RESUMING = "resuming"  #: below the resume mark: listening again on the duplicates
    CLOSED = "closed"  #: shutting down: never listens again


#: Starts a server on one kept listening socket (``loop.create_server(factory, sock=sock)``).
Listen = Callable[[socket.socket], Awaitable[Any]]


class Admission:
    """Pauses a worker's listeners at ``limit`` connections; resumes them 1% below.

    ``servers`` is the worker's list of listening servers (uvicorn's ``Server.servers``),
    replaced in place on a resume, so that whoever closes the servers at shutdown closes the
    current ones; ``listen`` starts a server on one listening socket.
    """

    def __init__(self, limit: int, servers: list[Any], listen: Listen) -> None:
        self.limit = limit
        self.resume_below = max(0, limit - max(1, int(limit * RESUME_SHARE)))
        self.state = AdmissionState.ACCEPTING
        self.pauses = 0
        self._servers = servers
        self._listen = listen
        self._kept: list[socket.socket] = []
        self._connections = 0
        self._resuming: asyncio.Task[None] | None = None

    def counted(self, connections: int) -> None:
        """React to the worker's connection count, after every change."""
        self._connections = connections
        if connections >= self.limit and self.state is AdmissionState.ACCEPTING:
            self._pause(connections)
        elif connections < self.resume_below and self.state is AdmissionState.PAUSED:
            self.state = AdmissionState.RESUMING
            self._resuming = asyncio.get_running_loop().create_task(self._resume())

    def close(self) -> None:
        """Shutting down: stop for good, and close the kept listening sockets."""
        self.state = AdmissionState.CLOSED
        if self._resuming is not None:
            self._resuming.cancel()
        for sock in self._kept:
            sock.close()
        self._kept = []

    def _pause(self, connections: int) -> None:
        self._kept = [_duplicate(sock) for server in self._servers for sock in server.sockets or ()]
        for server in self._servers:
            server.close()
        self.state = AdmissionState.PAUSED
        self.pauses += 1
        logger.warning(
            "Not accepting connections at %d, this worker's limit (its open-files limit less a reserve for "
            "backend connections and files); new ones wait for another worker, or until this one has fewer than %d",
            connections,
            self.resume_below,
        )

    async def _resume(self) -> None:
        started: list[Any] = []
        try:
            for sock in self._kept:
                started.append(await self._listen(sock))
        except BaseException:
            for server in started:
                server.close()
            if self.state is AdmissionState.RESUMING:
                self.state = AdmissionState.PAUSED  # the next closed connection tries again
            raise
        if self.state is not AdmissionState.RESUMING:  # closed meanwhile
            for server in started:
                server.close()
            return
        self._kept = []  # the servers own them now
        self._servers[:] = started
        self.state = AdmissionState.ACCEPTING
        logger.info("Accepting connections again")
        self.counted(self._connections)  # connections the first resumed listener took meanwhile


def _duplicate(sock: Any) -> socket.socket:
    """A socket of our own on the same listening socket (a server closes the one it has)."""
    return socket.socket(fileno=os.dup(sock.fileno()))


class AdmittedConnections(set[Any]):
    """uvicorn's ``ServerState.connections`` that tells an :class:`Admission` every change.

    Every uvicorn protocol adds itself when its connection is made and removes itself when it
    is lost (an upgrade swaps the HTTP protocol for the WebSocket one), so this set's size is
    the worker's connections, and it changes in exactly these three methods.
    """

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)
        self.admission: Admission | None = None

    def add(self, connection: Any) -> None:
        super().add(connection)
        self._changed()

    def discard(self, connection: Any) -> None:
        super().discard(connection)
        self._changed()

    def remove(self, connection: Any) -> None:
        super().remove(connection)
        self._changed()

    def _changed(self) -> None:
        if self.admission is not None:
            self.admission.counted(len(self))
