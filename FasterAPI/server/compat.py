"""Can this uvicorn and websockets run our server layer? One check, made once per process.

``FasterWebSocketProtocol`` (:mod:`.protocol`) subclasses uvicorn's private websockets-sansio
protocol, reaches into its state, and restarts websockets' frame parser; our HTTP protocols
(:mod:`.http`) extend uvicorn's httptools and h11 ones; ``FasterServer`` and
``FasterWorker`` (:mod:`.worker`) override hooks of uvicorn's ``Server`` and uvicorn-worker's
``UvicornWorker``. pyproject.toml admits only the releases of uvicorn and websockets this was
tested with, but an installer can still put others beside it (``--no-deps``, a pin elsewhere,
a newer release with the bound lifted). So ``fasterapi run`` and ``FasterWorker`` ask
:func:`ws_protocol` before using any of it: when an internal they rely on is missing, it logs
one warning naming the versions and they serve through uvicorn's own WebSocket protocol and
server, the plain ASGI path (every feature works; broadcasts cost one ASGI send per socket and
shutdown closes sockets with uvicorn's 1012 instead of the jittered 1001 drain).

The check looks at code, not version numbers: the modules and names :mod:`.protocol` imports,
the attributes it reads and replaces, the hooks :mod:`.worker` overrides, and every method
uvicorn calls on the receive queue and write flag that :mod:`.waiting` stands in for.
"""

from __future__ import annotations

import dis
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import re
from collections.abc import Iterator
from typing import Any

from .waiting import MessageQueue, WaitFlag

__all__ = ["PROTOCOL", "frame_once", "http_protocol", "problem", "versions", "ws_protocol"]

logger = logging.getLogger("fasterapi.server")

#: Our protocol as uvicorn's ``--ws`` setting (uvicorn >= 0.36 takes a class path there).
PROTOCOL = "FasterAPI.server.protocol:FasterWebSocketProtocol"
#: uvicorn's own choice of WebSocket protocol: the plain ASGI path.
FALLBACK = "auto"

_SANSIO = "uvicorn.protocols.websockets.websockets_sansio_impl"
_H11 = "uvicorn.protocols.http.h11_impl"
_HTTPTOOLS = "uvicorn.protocols.http.httptools_impl"

# (module, names it must define) for every import of protocol.py and worker.py.
_IMPORTS: dict[str, tuple[str, ...]] = {
    _SANSIO: ("WebSocketsSansIOProtocol",),
    "uvicorn.protocols.utils": ("ClientDisconnected",),
    _H11: ("H11Protocol", "RequestResponseCycle"),
    "h11": ("Connection", "SERVER", "IDLE"),
    "websockets.exceptions": ("PayloadTooBig", "ProtocolError", "SecurityError"),
    "websockets.frames": ("CloseCode",),
    "uvicorn.server": ("Server",),
    "websockets.extensions.permessage_deflate": ("PerMessageDeflate", "ServerPerMessageDeflateFactory"),
    "websockets.protocol": ("Protocol", "State"),
    "websockets.server": ("ServerProtocol",),
    "websockets.streams": ("StreamReader",),
    "websockets.http11": ("Request",),
    "websockets.version": ("version",),
    "uvicorn.middleware.proxy_headers": ("ProxyHeadersMiddleware",),
}
_WORKER_IMPORTS: dict[str, tuple[str, ...]] = {
    "uvicorn_worker": ("UvicornWorker",),
    "gunicorn.arbiter": ("Arbiter",),
}

# What http.py extends of uvicorn's httptools protocol, when httptools is installed.
_HTTPTOOLS_IMPORTS: dict[str, tuple[str, ...]] = {_HTTPTOOLS: ("HttpToolsProtocol", "RequestResponseCycle")}

# (module, class, method): names that must be attributes, and the names its code must touch
# (instance attributes it sets or reads). ``None`` as the method means the class itself.
_ATTRIBUTES: list[tuple[str, str, str | None, tuple[str, ...]]] = [
    (
        _SANSIO,
        "WebSocketsSansIOProtocol",
        None,
        (
            "handle_connect",
            "send",
            "receive",
            "shutdown",
            "pause_writing",
            "resume_writing",
            "stop_keepalive",
            "data_received",
            "handle_parser_exception",
            "send_receive_event_to_app",
            "handle_ping",
            "send_keepalive_ping",
            "keepalive_timeout",
            "handle_close",
            "handle_events",
            "send_500_response",
        ),
    ),
    (
        _SANSIO,
        "WebSocketsSansIOProtocol",
        "__init__",
        (
            "config",
            "loop",
            "conn",
            "queue",
            "writable",
            "transport",
            "client",
            "handshake_complete",
            "close_sent",
            "disconnected",
            "close_timer",
            "close_timeout",
            "handshake_initiated",
            "frames",
            "curr_msg_data_type",
            "app",
            "asgi_version",
            "root_path",
            "app_state",
            "tasks",
            "read_paused",
            "logger",
            "ping_interval",
            "ping_timeout",
            "pending_ping_payload",
            "ping_sent_at",
            "last_ping_rtt",
        ),
    ),
    (_SANSIO, "WebSocketsSansIOProtocol", "connection_made", ("server", "client", "scheme")),
    (_SANSIO, "WebSocketsSansIOProtocol", "handle_events", ("handle_connect",)),
    (_SANSIO, "WebSocketsSansIOProtocol", "send", ("response", "scope", "start_keepalive")),
    (_SANSIO, "WebSocketsSansIOProtocol", "connection_lost", ("stop_keepalive",)),
    (_SANSIO, "WebSocketsSansIOProtocol", "handle_events", ("handle_pong",)),
    ("uvicorn.middleware.proxy_headers", "ProxyHeadersMiddleware", "__init__", ("app", "trusted_hosts")),
    ("websockets.protocol", "Protocol", None, ("parse", "send_close", "send_text", "send_binary", "data_to_send")),
    (
        "websockets.protocol",
        "Protocol",
        "__init__",
        ("state", "parser", "reader", "extensions", "handshake_exc", "parser_exc", "close_sent"),
    ),
    ("websockets.protocol", "State", None, ("OPEN",)),
    ("websockets.streams", "StreamReader", None, ("at_eof",)),
    ("websockets.streams", "StreamReader", "__init__", ("buffer",)),
    (
        "websockets.extensions.permessage_deflate",
        "PerMessageDeflate",
        "__init__",
        ("local_no_context_takeover", "local_max_window_bits"),
    ),
    ("uvicorn.server", "Server", None, ("startup", "shutdown", "serve")),
    ("uvicorn.server", "Server", "__init__", ("server_state", "started", "force_exit")),
    ("uvicorn.server", "Server", "startup", ("servers",)),
    (_H11, "H11Protocol", None, ("connection_made", "connection_lost", "data_received")),
    (_H11, "H11Protocol", "__init__", ("conn", "transport", "loop", "client", "server_state", "cycle")),
    (_H11, "RequestResponseCycle", "__init__", ("response_complete",)),
]
_HTTPTOOLS_ATTRIBUTES: list[tuple[str, str, str | None, tuple[str, ...]]] = [
    (
        _HTTPTOOLS,
        "HttpToolsProtocol",
        None,
        (
            "connection_made",
            "connection_lost",
            "on_headers_complete",
            "on_message_complete",
            "_unset_keepalive_if_required",
            "_should_upgrade",
            "handle_websocket_upgrade",
            "_unsupported_upgrade_warning",
        ),
    ),
    (_HTTPTOOLS, "HttpToolsProtocol", "__init__", ("parser", "transport", "loop", "client", "server_state", "cycle")),
    (_HTTPTOOLS, "RequestResponseCycle", "__init__", ("response_complete",)),
]
_WORKER_ATTRIBUTES: list[tuple[str, str, str | None, tuple[str, ...]]] = [
    ("uvicorn_worker", "UvicornWorker", None, ("CONFIG_KWARGS", "_serve", "_install_sigquit_handler")),
    ("gunicorn.arbiter", "Arbiter", None, ("WORKER_BOOT_ERROR",)),
]
# (module, function, keyword parameters it must take).
_PARAMETERS: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "websockets.extensions.permessage_deflate",
        "ServerPerMessageDeflateFactory.__init__",
        ("server_no_context_takeover", "server_max_window_bits", "client_max_window_bits", "compress_settings"),
    ),
    ("websockets.server", "ServerProtocol.__init__", ("extensions", "max_size", "logger")),
    ("uvicorn.server", "Server.startup", ("sockets",)),
    ("uvicorn.server", "Server.shutdown", ("sockets",)),
]
# uvicorn's protocol attributes that ours replaces, and the class that must offer every
# method uvicorn's code calls on them.
_REPLACED: dict[str, type] = {"queue": MessageQueue, "writable": WaitFlag}


def versions(worker: bool = False) -> str:
    """``uvicorn 0.54.0, websockets 17.4`` (and uvicorn-worker's with ``worker``), as installed."""
    names = ["uvicorn", "websockets", *(["uvicorn-worker"] if worker else [])]
    return ", ".join(f"{name} {_version(name)}" for name in names)


def problem(worker: bool = False) -> str | None:
    """What our server layer needs that the installed releases lack; None when all is there.

    ``worker`` adds what ``FasterWorker`` overrides in uvicorn-worker and gunicorn.
    """
    httptools = importlib.util.find_spec("httptools") is not None
    imports = {**_IMPORTS, **(_HTTPTOOLS_IMPORTS if httptools else {}), **(_WORKER_IMPORTS if worker else {})}
    attributes = _ATTRIBUTES + (_HTTPTOOLS_ATTRIBUTES if httptools else []) + (_WORKER_ATTRIBUTES if worker else [])
    modules: dict[str, Any] = {}
    for name, members in imports.items():
        try:
            module = modules[name] = importlib.import_module(name)
        except ImportError as error:
            return f"cannot import {name} ({error})"
        missing = [member for member in members if not hasattr(module, member)]
        if missing:
            return f"{name} has no {', '.join(missing)}"
    for module_name, class_name, method, names in attributes:
        cls = getattr(modules[module_name], class_name)
        if method is None:
            missing = [name for name in names if not hasattr(cls, name)]
            where = f"{module_name}.{class_name}"
        else:
            code = _code(getattr(cls, method, None))
            missing = [name for name in names if code is None or name not in code.co_names]
            where = f"{module_name}.{class_name}.{method}"
        if missing:
            return f"{where}: missing {', '.join(missing)}"
    for module_name, path, parameters in _PARAMETERS:
        target: Any = modules[module_name]
        for part in path.split("."):
            target = getattr(target, part)
        accepted = inspect.signature(target).parameters
        missing = [name for name in parameters if name not in accepted]
        if missing:
            return f"{module_name}.{path} takes no {', '.join(missing)}"
    uvicorn_protocol = modules[_SANSIO].WebSocketsSansIOProtocol
    for attribute, replacement in _REPLACED.items():
        unsupported = sorted(set(_methods_called_on(uvicorn_protocol, attribute)) - set(dir(replacement)))
        if unsupported:
            return f"uvicorn calls {', '.join(f'{attribute}.{name}()' for name in unsupported)}, which ours lacks"
    for ours in ("protocol", "http"):
        try:
            importlib.import_module(f"{__package__}.{ours}")  # what no list above foresaw
        except Exception as error:
            return f"FasterAPI.server.{ours} does not import ({error!r})"
    return None


def frame_once(worker: bool = False) -> bool:
    """Whether to use our protocol and server: :func:`problem` once, with one warning if not."""
    # One cache entry per answer, however it is called: functools.cache keys ``frame_once(True)``
    # and ``frame_once(worker=True)`` apart, which ran the check again in every forked worker.
    return _frame_once(bool(worker))


@functools.cache
def _frame_once(worker: bool) -> bool:
    try:
        reason = problem(worker)
    except Exception as error:  # a shape the check itself did not expect: not ours to run on
        reason = f"the check failed: {error!r}"
    if reason is None:
        return True
    if not _warned:
        _warn(worker, reason)
    return False


def ws_protocol(worker: bool = False) -> type | str:
    """uvicorn's ``ws`` setting: our protocol class, or ``"auto"`` (uvicorn's own) after a warning.

    The class itself, not its path: every uvicorn that has its base takes a class there.
    """
    if not frame_once(worker):
        return FALLBACK
    from .protocol import FasterWebSocketProtocol

    return FasterWebSocketProtocol


def http_protocol(worker: bool = False) -> type | str:
    """uvicorn's ``http`` setting: our HTTP protocol (header deadline and limits), or ``"auto"``."""
    if not frame_once(worker):
        return FALLBACK
    from .http import http_protocol_class

    return http_protocol_class()


_warned = False


def _warn(worker: bool, reason: str) -> None:
    global _warned
    _warned = True
    logger.warning(
        "FasterAPI: frame-once WebSocket delivery is off (%s: %s). This FasterAPI %s was tested with %s. "
        "WebSockets are served by uvicorn's own protocol and server instead (the plain ASGI path: "
        "one ASGI send per socket per broadcast, close code 1012 on shutdown, and no header timeout "
        "or header size limits: put a proxy with its own in front).",
        versions(worker),
        reason,
        _version("fasterapi-hub"),
        _tested(),
    )


def _tested() -> str:
    """The declared ranges, from this package's metadata: ``uvicorn>=A,<=B and websockets>=C,<=D``."""
    try:
        requirements = importlib.metadata.requires("fasterapi-hub") or []
    except importlib.metadata.PackageNotFoundError:
        return "the ranges in its pyproject.toml"
    found = []
    for name in ("uvicorn", "websockets"):
        for requirement in requirements:
            match = re.match(rf"{name}\s*([<>=!~][^;]*)", requirement)
            if match:
                specifiers = sorted(match.group(1).replace(" ", "").split(","), key=lambda s: not s.startswith(">"))
                found.append(name + ",".join(specifiers))
                break
    return " and ".join(found) or "the ranges in its pyproject.toml"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _code(function: Any) -> Any:
    function = inspect.unwrap(function) if callable(function) else None
    return getattr(function, "__code__", None)


def _methods_called_on(cls: type, attribute: str) -> Iterator[str]:
    """Names looked up on ``self.<attribute>`` anywhere in ``cls``'s own methods."""
    for value in vars(cls).values():
        code = _code(value)
        if code is None:
            continue
        instructions = list(dis.get_instructions(code))
        for first, second, third in zip(instructions, instructions[1:], instructions[2:], strict=False):
            if (
                first.argval == "self"
                and second.opname == "LOAD_ATTR"
                and second.argval == attribute
                and third.opname in ("LOAD_ATTR", "LOAD_METHOD")
            ):
                yield str(third.argval)
