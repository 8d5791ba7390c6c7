"""The ``fasterapi`` command: run an app, or publish to a room from a shell.

::

    fasterapi run examples.demo_hub:app                                  # uvicorn, one process
    fasterapi run examples.demo_hub:app --workers 4 --backend redis://localhost:6379/0
    fasterapi publish --backend redis://localhost:6379/0 lobby "deploy at 5pm"
    fasterapi publish --backend redis://localhost:6379/0 --json lobby '{"type": "notice"}'
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from .pubsub.backends._url import redact_url

__all__ = ["main"]

BACKEND_ENV = "FASTERAPI_BACKEND"
GUNICORN_CONF_ENV = "FASTERAPI_GUNICORN_CONF"
#: Where ``run`` looks for the gunicorn settings when ``--config`` is not given.
GUNICORN_CONF = Path("deploy") / "gunicorn.conf.py"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fasterapi`` console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    result: int = args.handler(args, args.command_parser)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fasterapi",
        description="Run a FasterAPI app, or publish to its rooms from the command line.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="serve an app (uvicorn for one worker, gunicorn with uvicorn workers for more)",
        description=(
            "Serve an ASGI app. With --workers 1 this is plain uvicorn in this process; with more, "
            "gunicorn with FasterAPI.server.worker.FasterWorker workers and the settings of "
            "deploy/gunicorn.conf.py (metrics across workers, timeouts, logging)."
        ),
    )
    run.add_argument("app", metavar="MODULE:APP", help="the app to serve, e.g. examples.demo_hub:app")
    run.add_argument(
        "--workers",
        "-w",
        type=_positive_int,
        default=1,
        help="worker processes (default 1). Several workers need a shared backend such as redis://",
    )
    run.add_argument(
        "--backend",
        help=f"pub/sub backend URL for the workers, e.g. redis://localhost:6379/0 (sets {BACKEND_ENV}; "
        "default: the environment, else memory://)",
    )
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", "-p", type=int, default=8000, help="port to listen on (default 8000)")
    run.add_argument(
        "--config",
        type=Path,
        help=f"gunicorn settings file for --workers > 1 (default: ${GUNICORN_CONF_ENV}, else ./{GUNICORN_CONF} "
        "if present, else the source checkout's)",
    )
    run.add_argument("--log-level", default="info", help="log level (default info)")
    run.add_argument(
        "--app-dir",
        default=".",
        help="directory the app module is imported from (default: the current directory)",
    )
    run.set_defaults(handler=_run, command_parser=run)

    publish = commands.add_parser(
        "publish",
        help="send one message to every member of a room, on every worker",
        description=(
            "Publish MESSAGE to ROOM through the backend the app uses. Exits 0 once the backend "
            "accepted it, 1 when the backend is unavailable."
        ),
    )
    publish.add_argument(
        "--backend",
        default=os.environ.get(BACKEND_ENV),
        help=f"backend URL, e.g. redis://localhost:6379/0 (default: ${BACKEND_ENV})",
    )
    publish.add_argument("--json", action="store_true", help="parse MESSAGE as JSON and send it as JSON")
    publish.add_argument("--timeout", type=float, default=10.0, help="give up after this many seconds (default 10)")
    publish.add_argument("room", metavar="ROOM", help="the room to publish to")
    publish.add_argument("message", metavar="MESSAGE", help="the text to send (a text frame), or JSON with --json")
    publish.add_argument("--verbose", "-v", action="store_true", help="show the backend's connection log")
    publish.set_defaults(handler=_publish, command_parser=publish)
    return parser


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


# -- run ------------------------------------------------------------------------------------


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if ":" not in args.app:
        parser.error(f"MODULE:APP expected, got {args.app!r} (e.g. examples.demo_hub:app)")
    if args.backend:
        _check_backend_url(args.backend, parser)
        os.environ[BACKEND_ENV] = args.backend  # inherited by every worker
    backend = os.environ.get(BACKEND_ENV, "memory://")
    if args.workers > 1 and backend.startswith("memory:"):
        print(
            f"warning: {args.workers} workers on the memory:// backend do not share rooms; pass --backend redis://...",
            file=sys.stderr,
        )
    app_dir = str(Path(args.app_dir).resolve())
    if args.workers == 1:
        return _run_uvicorn(args, app_dir)
    _exec_gunicorn(args, app_dir, parser)


def _run_uvicorn(args: argparse.Namespace, app_dir: str) -> int:
    import uvicorn

    # A console script's sys.path starts with its bin directory, not the current one.
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    from .config import HubConfig
    from .server import compat
    from .server.files import raise_open_file_limit

    file_limit = raise_open_file_limit()
    # Our protocols and drain, unless this uvicorn lacks what they extend (then one warning
    # and uvicorn's own protocols and server). One limit for incoming messages and broadcasts.
    ws = compat.ws_protocol()
    config = uvicorn.Config(
        args.app,
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        ws=ws,
        http=compat.http_protocol(),
        ws_max_size=HubConfig.load({}).max_message_size,
    )
    if file_limit is not None:
        logging.getLogger("uvicorn.error").info("%s", file_limit)
    if ws == compat.FALLBACK:
        uvicorn.Server(config).run()
        return 0
    from .server.drain import FasterServer

    FasterServer(config).run()
    return 0


def _exec_gunicorn(args: argparse.Namespace, app_dir: str, parser: argparse.ArgumentParser) -> NoReturn:
    for module, extra in (("gunicorn", "server"), ("uvicorn_worker", "server")):
        if importlib.util.find_spec(module) is None:
            parser.exit(1, f"error: --workers > 1 needs {module}: pip install 'fasterapi-hub[{extra}]'\n")
    config = _gunicorn_config(args.config)
    command = [sys.executable, "-m", "gunicorn", args.app]
    if config is not None:
        command += ["--config", str(config)]
    # Flags win over the settings file, so these are what the user asked for.
    command += [
        "--worker-class",
        "FasterAPI.server.worker.FasterWorker",
        "--workers",
        str(args.workers),
        "--bind",
        _bind_address(args.host, args.port),
        "--chdir",
        app_dir,
        "--log-level",
        args.log_level,
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    # Replace this process: signals (Ctrl-C, SIGTERM from a supervisor) reach gunicorn itself.
    os.execv(sys.executable, command)


def _gunicorn_config(explicit: Path | None) -> Path | None:
    candidates = [explicit] if explicit is not None else []
    if explicit is None:
        if os.environ.get(GUNICORN_CONF_ENV):
            candidates.append(Path(os.environ[GUNICORN_CONF_ENV]))
        candidates += [GUNICORN_CONF, Path(__file__).resolve().parent.parent / GUNICORN_CONF]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    if explicit is not None:
        raise SystemExit(f"error: gunicorn settings file {explicit} not found")
    print(
        f"warning: no {GUNICORN_CONF} found; running gunicorn with its defaults "
        "(metrics are then per worker, not summed)",
        file=sys.stderr,
    )
    return None


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- publish --------------------------------------------------------------------------------


def _publish(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.backend:
        parser.error(f"--backend is required (or set {BACKEND_ENV}), e.g. --backend redis://localhost:6379/0")
    _check_backend_url(args.backend, parser)
    if urlsplit(args.backend).scheme == "memory":
        parser.error("memory:// only reaches its own process; publish needs a shared backend such as redis://")
    data: Any = args.message
    if args.json:
        try:
            data = json.loads(args.message)
        except json.JSONDecodeError as error:
            parser.error(f"MESSAGE is not valid JSON: {error}")

    # The backend logs its reconnect attempts as warnings: noise for a one-shot command, whose
    # own error message says what happened.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(name)s: %(message)s")
    from .pubsub import BackendUnavailable, InvalidRoomName, PayloadTooLarge, Publisher

    where = redact_url(args.backend)
    try:
        publisher = Publisher(args.backend)
    except (ImportError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    try:
        publisher.broadcast_sync(args.room, data, timeout=args.timeout)
    except BackendUnavailable as error:
        print(f"error: the backend at {where} is unavailable, nothing was published ({error})", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"error: the backend at {where} did not answer within {args.timeout:g}s", file=sys.stderr)
        return 1
    except (InvalidRoomName, PayloadTooLarge) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        try:
            publisher.close_sync(timeout=5.0)
        except Exception as error:  # closing a broken connection must not hide the result
            print(f"warning: closing the backend connection failed: {error!r}", file=sys.stderr)
    print(f"published to room {args.room!r} via {where}")
    return 0


def _check_backend_url(url: str, parser: argparse.ArgumentParser) -> None:
    from .pubsub import BACKENDS

    scheme = urlsplit(url).scheme.lower()
    if scheme not in BACKENDS:
        supported = ", ".join(f"{name}://" for name in sorted(BACKENDS))
        parser.error(f"unsupported backend URL {redact_url(url)!r}: the scheme must be one of {supported}")


if __name__ == "__main__":
    sys.exit(main())
