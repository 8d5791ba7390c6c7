"""In-process ASGI throughput: FasterAPI against FastAPI on the same three routes.

Both apps are called directly as ASGI callables, in one event loop, by the same driver:
pre-built scope / receive / send, no server, no sockets. That measures the framework
alone: routing, parameter and body validation, the handler call and JSON encoding.

Routes (both apps also register 100 other routes, ``/r{i}/items/{item_id}``, *before*
these three, so a router whose cost grows with the number of routes pays for them):

* ``GET /health`` -> ``{"status": "ok"}``
* ``GET /users/{user_id}`` with ``user_id: int`` -> ``{"id": user_id, "name": ...}``
* ``POST /users`` with a JSON body validated into a model (msgspec ``Struct`` for
  FasterAPI, pydantic ``BaseModel`` for FastAPI) -> the model back

Each route is measured twice: bare, and with the same middleware installed on both apps
(``+ CORS, GZip``: each framework's own ``CORSMiddleware`` allowing one origin and its
``GZipMiddleware``; the requests carry that ``Origin`` and ``Accept-Encoding: gzip``, so both
middleware do their work on every request; the bodies are under GZip's 500-byte minimum).

Before timing, both apps must answer every route with the same status and the same JSON,
or the run stops. Each route is then timed for ``--seconds`` (default 2) per repeat,
several repeats alternating FasterAPI / FastAPI, and the median requests/second is kept.

FastAPI is not a dependency of the project; it lives in a separate virtualenv, with the
exact versions pinned in ``benchmarks/requirements-peers.txt``::

    python3 -m venv .bench-venv
    .bench-venv/bin/pip install -e . -r benchmarks/requirements-peers.txt
    .bench-venv/bin/python benchmarks/http_asgi.py            # --seconds 2 --repeats 5

``--variants plain`` (or ``middleware``) runs one of the two sets;
``--check`` only runs the equivalence check; ``--only fasterapi`` times FasterAPI alone
(no FastAPI needed, e.g. from the main ``.venv``); ``--filler 0`` drops the other routes,
to see the frameworks without the cost of a linear route scan.
"""

# No ``from __future__ import annotations``: the handlers below annotate with models that are
# local to their builder function, which string annotations could not resolve.
import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

FILLER_ROUTES = 100
USER_BODY = b'{"id": 7, "name": "Ada Lovelace", "email": "ada@example.com", "age": 36}'


# -- the two apps ---------------------------------------------------------------------------


ORIGIN = "https://app.example.com"
MIDDLEWARE_HEADERS = [(b"origin", ORIGIN.encode()), (b"accept-encoding", b"gzip, deflate, br")]
VARIANT_LABELS = {"plain": "", "middleware": " + CORS, GZip"}


def build_fasterapi(filler: int = FILLER_ROUTES, middleware: bool = False) -> ASGIApp:
    import msgspec

    from FasterAPI import Faster
    from FasterAPI.middleware.cors import CORSMiddleware
    from FasterAPI.middleware.gzip import GZipMiddleware

    class User(msgspec.Struct):
        id: int
        name: str
        email: str
        age: int

    app = Faster()
    if middleware:
        app.add_middleware(GZipMiddleware)
        app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["*"], allow_headers=["*"])
    for i in range(filler):
        _add_filler(app, i)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "name": "Ada Lovelace"}

    @app.post("/users")
    async def create_user(user: User) -> User:
        return user

    return app


def build_fastapi(filler: int = FILLER_ROUTES, middleware: bool = False) -> ASGIApp:
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.middleware.gzip import GZipMiddleware
    from pydantic import BaseModel

    class User(BaseModel):
        id: int
        name: str
        email: str
        age: int

    app = FastAPI()
    if middleware:
        app.add_middleware(GZipMiddleware)
        app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["*"], allow_headers=["*"])
    for i in range(filler):
        _add_filler(app, i)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "name": "Ada Lovelace"}

    @app.post("/users")
    async def create_user(user: User) -> User:
        return user

    return app


def _add_filler(app: Any, i: int) -> None:
    async def filler(item_id: int) -> dict[str, int]:
        return {"route": i, "item_id": item_id}

    filler.__name__ = f"filler_{i}"
    app.get(f"/r{i}/items/{{item_id}}")(filler)


# -- the driver (identical for both apps) ------------------------------------------------------


def make_scope(
    method: str, path: str, body: bytes = b"", extra_headers: list[tuple[bytes, bytes]] | None = None
) -> Scope:
    headers = [(b"host", b"bench"), (b"user-agent", b"bench"), (b"accept", b"*/*"), *(extra_headers or [])]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
        "state": {},
    }


class Case:
    def __init__(self, label: str, method: str, path: str, body: bytes = b"", variant: str = "plain") -> None:
        self.label = label + VARIANT_LABELS[variant]
        self.variant = variant
        extra = MIDDLEWARE_HEADERS if variant == "middleware" else None
        self.scope = make_scope(method, path, body, extra)
        self.request: Message = {"type": "http.request", "body": body, "more_body": False}


CASES = [
    Case(label, method, path, body, variant)
    for variant in VARIANT_LABELS
    for label, method, path, body in [
        ("GET /health", "GET", "/health", b""),
        ("GET /users/{user_id}", "GET", "/users/42", b""),
        ("POST /users", "POST", "/users", USER_BODY),
    ]
]


async def call_once(app: ASGIApp, case: Case) -> tuple[int, Any, str | None]:
    """One request: the status, decoded JSON body and allowed origin (for the equivalence check)."""
    status = 0
    chunks: list[bytes] = []
    allowed_origin: str | None = None

    async def receive() -> Message:
        return case.request

    async def send(message: Message) -> None:
        nonlocal status, allowed_origin
        if message["type"] == "http.response.start":
            status = message["status"]
            for key, value in message.get("headers", []):
                if key.lower() == b"access-control-allow-origin":
                    allowed_origin = value.decode()
        else:
            chunks.append(message.get("body", b""))

    await app(dict(case.scope), receive, send)
    return status, json.loads(b"".join(chunks)), allowed_origin


async def run_loop(app: ASGIApp, case: Case, seconds: float) -> float:
    """Requests per second over about ``seconds``; time is read once per batch of 200."""
    scope = case.scope
    message = case.request

    async def receive() -> Message:
        return message

    async def send(message: Message) -> None:
        return None

    batch = 200
    done = 0
    gc.collect()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            await app(dict(scope), receive, send)
        done += batch
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


# -- main -----------------------------------------------------------------------------------


def check_same(apps: dict[str, dict[str, ASGIApp]], cases: list[Case]) -> None:
    for case in cases:
        answers = {name: asyncio.run(call_once(app, case)) for name, app in apps[case.variant].items()}
        distinct = {json.dumps(answer, sort_keys=True) for answer in answers.values()}
        if len(distinct) != 1:
            raise SystemExit(f"Apps disagree on {case.label}: {answers}")
        status, _, allowed_origin = next(iter(answers.values()))
        if status != 200:
            raise SystemExit(f"{case.label} answered {status}: {answers}")
        if case.variant == "middleware" and allowed_origin != ORIGIN:
            raise SystemExit(f"{case.label}: CORS did not allow {ORIGIN}: {answers}")
        print(f"ok  {case.label:<36} {next(iter(answers.values()))[:2]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per route per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per app (median is reported)")
    parser.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per route per app")
    parser.add_argument("--only", choices=["fasterapi", "fastapi"], help="time one app only")
    parser.add_argument("--check", action="store_true", help="only check that both apps answer the same")
    parser.add_argument(
        "--filler", type=int, default=FILLER_ROUTES, help="other routes registered before the measured ones"
    )
    parser.add_argument(
        "--variants", default="plain,middleware", help="comma-separated: plain, middleware (+ CORS, GZip)"
    )
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANT_LABELS)
    if unknown or not variants:
        raise SystemExit(f"--variants takes {', '.join(VARIANT_LABELS)}; got {args.variants!r}")
    cases = [case for case in CASES if case.variant in variants]

    apps: dict[str, dict[str, ASGIApp]] = {variant: {} for variant in variants}
    for variant in variants:
        with_middleware = variant == "middleware"
        if args.only != "fastapi":
            apps[variant]["FasterAPI"] = build_fasterapi(args.filler, with_middleware)
        if args.only != "fasterapi":
            try:
                apps[variant]["FastAPI"] = build_fastapi(args.filler, with_middleware)
            except ImportError as error:
                raise SystemExit(
                    f"FastAPI is not installed here ({error}); run this with .bench-venv/bin/python "
                    "(see the module docstring) or pass --only fasterapi"
                ) from None
    check_same(apps, cases)
    if args.check:
        return 0

    loop = asyncio.new_event_loop()
    results: dict[str, dict[str, float]] = {case.label: {} for case in cases}
    try:
        for case in cases:
            variant_apps = apps[case.variant]
            for app in variant_apps.values():
                loop.run_until_complete(run_loop(app, case, args.warmup))
            samples: dict[str, list[float]] = {name: [] for name in variant_apps}
            for repeat in range(args.repeats):
                # Alternate which app goes first, so drift (thermal, other load) hits both.
                order = list(variant_apps.items()) if repeat % 2 == 0 else list(reversed(variant_apps.items()))
                for name, app in order:
                    samples[name].append(loop.run_until_complete(run_loop(app, case, args.seconds)))
            for name, values in samples.items():
                results[case.label][name] = statistics.median(values)
    finally:
        loop.close()

    print()
    print(
        f"Python {sys.version.split()[0]}, {args.filler} other routes, "
        f"{args.repeats} repeats x {args.seconds:g} s, median req/s"
    )
    names = list(next(iter(apps.values())))
    header = f"{'route':<36}" + "".join(f"{name + ' req/s':>18}" for name in names)
    if len(names) == 2:
        header += f"{'ratio':>9}"
    print(header)
    print("-" * len(header))
    for label, row in results.items():
        line = f"{label:<36}" + "".join(f"{row[name]:>18,.0f}" for name in names)
        if len(names) == 2:
            line += f"{row[names[0]] / row[names[1]]:>8.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
