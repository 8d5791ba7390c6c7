"""HTTP through a real server: ``wrk`` against FasterAPI, FastAPI and Litestar, 2 workers each.

``benchmarks/http_asgi.py`` calls the apps in-process (the framework alone); this is what a
client gets from a served app, sockets, HTTP parsing and the server included. Same three
routes, same 100 other routes registered before them, same handlers (the FasterAPI and FastAPI
apps are ``http_asgi.py``'s own builders; the Litestar app below mirrors them, msgspec
``Struct`` body like FasterAPI's):

=========  ===============================================================================
fasterapi  ``fasterapi run --workers 2`` (gunicorn + FasterWorker: uvicorn, httptools, uvloop)
fastapi    gunicorn + ``uvicorn_worker.UvicornWorker``, 2 workers (httptools, uvloop)
litestar   gunicorn + ``uvicorn_worker.UvicornWorker``, 2 workers (httptools, uvloop)
=========  ===============================================================================

Before timing, every server must answer every route with status 200 and the same JSON. Then,
per route, ``wrk`` (one thread, ``--connections`` keep-alive connections) runs for
``--duration`` seconds against each app in turn, after a short warm-up; rounds alternate the
order, and the tables give medians over the rounds: requests/s, p50 and p99 latency (wrk's
``--latency``), and the server workers' CPU per request (utime+stime from /proc), which is the
figure that does not depend on what else the machine runs. wrk shares the machine's cores with
the server: on 2 cores it takes a good part of one.

    .bench-venv/bin/python benchmarks/http_wrk.py            # 3 rounds of 10 s per route and app
    .bench-venv/bin/python benchmarks/http_wrk.py --quick    # 1 round of 3 s

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install wrk``; ``make bench`` installs it).
"""

# No ``from __future__ import annotations``: the Litestar handlers annotate with a model local
# to their builder function, which string annotations could not resolve.
import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import fanout  # noqa: E402
from benchmarks.fanout import FASTERAPI_RUN, UVICORN_WORKER, CpuSnapshot, Stack, gunicorn  # noqa: E402
from benchmarks.http_asgi import FILLER_ROUTES, USER_BODY  # noqa: E402

RESULTS = HERE / "results"


def build_litestar(filler: int = FILLER_ROUTES) -> Any:
    """The three routes (and the filler routes) in Litestar, answering as the other two apps."""
    import msgspec
    from litestar import Litestar, get, post

    class User(msgspec.Struct):
        id: int
        name: str
        email: str
        age: int

    handlers: list[Any] = []
    for i in range(filler):
        handlers.append(_litestar_filler(i))

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/users/{user_id:int}")
    async def get_user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "name": "Ada Lovelace"}

    @post("/users", status_code=200)  # Litestar's POST default is 201; the others answer 200
    async def create_user(data: User) -> User:
        return data

    return Litestar(route_handlers=[*handlers, health, get_user, create_user])


def _litestar_filler(i: int) -> Any:
    from litestar import get

    async def filler(item_id: int) -> dict[str, int]:
        return {"route": i, "item_id": item_id}

    filler.__name__ = f"filler_{i}"
    return get(f"/r{i}/items/{{item_id:int}}")(filler)


APPS: dict[str, Stack] = {
    "fasterapi": Stack(
        "fasterapi", "benchmarks.http_asgi:build_fasterapi()", FASTERAPI_RUN, "ours", description="fasterapi run"
    ),
    "fastapi": Stack(
        "fastapi", "benchmarks.http_asgi:build_fastapi()", UVICORN_WORKER, "peer", description="FastAPI on uvicorn"
    ),
    "litestar": Stack(
        "litestar", "benchmarks.http_wrk:build_litestar()", UVICORN_WORKER, "peer", description="Litestar on uvicorn"
    ),
}


@dataclass(frozen=True)
class Route:
    label: str
    method: str
    path: str
    body: bytes = b""

    def lua(self) -> str:
        """A wrk script for a POST with a JSON body (GETs need none)."""
        body = self.body.decode().replace("\\", "\\\\").replace('"', '\\"')
        return f'wrk.method = "{self.method}"\nwrk.body = "{body}"\nwrk.headers["Content-Type"] = "application/json"\n'


ROUTES = (
    Route("GET /health", "GET", "/health"),
    Route("GET /users/{user_id}", "GET", "/users/42"),
    Route("POST /users", "POST", "/users", USER_BODY),
)


@dataclass
class Settings:
    rounds: int = 3
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 64
    threads: int = 1
    quick: bool = False


# -- wrk ------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, p50/p99 latency (ms), errors and non-2xx answers from ``wrk --latency``."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    requests = re.search(r"(\d+) requests in", output)
    if not (rate and p50 and p99 and requests):
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests_per_s": float(rate.group(1)),
        "requests": int(requests.group(1)),
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


async def run_wrk(port: int, route: Route, seconds: float, settings: Settings, script: Path | None) -> str:
    command = [
        "wrk", "--latency", "-t", str(settings.threads), "-c", str(settings.connections),
        "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
    ]  # fmt: skip
    if script is not None:
        command += ["-s", str(script)]
    command.append(f"http://127.0.0.1:{port}{route.path}")
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True
    )
    fanout.CHILDREN.add(process.pid)
    try:
        async with asyncio.timeout(seconds + 60):
            output, _ = await process.communicate()
    finally:
        fanout.CHILDREN.kill(process.pid, grace=2)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{output.decode(errors='replace')}")
    return output.decode(errors="replace")


def fetch(port: int, route: Route) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{route.path}",
        data=route.body or None,
        method=route.method,
        headers={"Content-Type": "application/json"} if route.body else {},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


# -- the session ----------------------------------------------------------------------------


async def measure_app(
    name: str, settings: Settings, scripts: dict[str, Path | None], logs: Path, round_number: int
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[int, Any]]]:
    """Every route against one served app: (route -> wrk figures, route -> its answer)."""
    stack = APPS[name]
    results: dict[str, dict[str, Any]] = {}
    async with gunicorn(stack, "", logs / f"http-r{round_number}-{name}.server.log", 60.0) as server:
        answers = {route.label: await asyncio.to_thread(fetch, server.port, route) for route in ROUTES}
        for route in ROUTES:
            script = scripts[route.label]
            await run_wrk(server.port, route, settings.warmup, settings, script)
            before = CpuSnapshot.take(server.workers)
            output = await run_wrk(server.port, route, settings.duration, settings, script)
            after = CpuSnapshot.take(server.workers)
            figures = parse_wrk(output)
            cpu = after.since(before, server.workers)
            figures["server_cpu_us_per_request"] = cpu / figures["requests"] * 1e6 if figures["requests"] else None
            figures["server_cores"] = cpu / (after.at - before.at)
            results[route.label] = figures
        if server.error_lines():
            raise RuntimeError(f"{name}: errors in the server log:\n{server.log_tail()}")
    return results, answers


KEYS = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_request", "server_cores")


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """route -> app -> metric -> median over the rounds."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for route in ROUTES:
        for name in dict.fromkeys(run["app"] for run in runs):
            rows = [run["routes"][route.label] for run in runs if run["app"] == name]
            table.setdefault(route.label, {})[name] = {
                key: statistics.median(row[key] for row in rows) for key in KEYS if all(row.get(key) for row in rows)
            }
    return table


def markdown(table: dict[str, dict[str, dict[str, float]]], settings: Settings) -> str:
    """The medians per route, with FasterAPI's requests/s and CPU per request against each app's."""
    out = [
        f"#### wrk, {settings.connections} connections, {settings.duration:g} s per route, 2 workers per app\n",
        "| route | app | requests/s | p50 ms | p99 ms | server CPU µs/request "
        "| FasterAPI req/s ÷ this | this CPU/request ÷ FasterAPI's |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for route, apps in table.items():
        ours = apps.get("fasterapi", {})
        for name, entry in apps.items():
            rate = entry.get("requests_per_s")
            cpu = entry.get("server_cpu_us_per_request")
            faster_rate = ours.get("requests_per_s")
            faster_cpu = ours.get("server_cpu_us_per_request")
            rate_ratio = f"{faster_rate / rate:.2f}x" if faster_rate and rate and name != "fasterapi" else ""
            cpu_ratio = f"{cpu / faster_cpu:.2f}x" if faster_cpu and cpu and name != "fasterapi" else ""
            out.append(
                f"| {route} | {name} | {rate or 0:,.0f} | {entry.get('p50_ms', 0):.2f} | {entry.get('p99_ms', 0):.2f} "
                f"| {cpu or 0:.1f} | {rate_ratio} | {cpu_ratio} |"
            )
    out.append("")
    return "\n".join(out)


async def session(settings: Settings, apps: list[str], out: Path, argv: Sequence[str]) -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    logs = out.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    script_dir = Path(tempfile.mkdtemp(prefix="http-wrk-"))
    scripts: dict[str, Path | None] = {}
    for route in ROUTES:
        scripts[route.label] = None
        if route.body:
            path = script_dir / f"{route.method.lower()}-{len(scripts)}.lua"
            path.write_text(route.lua())
            scripts[route.label] = path
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    document: dict[str, Any] = {
        "meta": {
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["python", "benchmarks/http_wrk.py", *argv]),
            "settings": asdict(settings),
            "workers": fanout.WORKERS,
            "wrk": wrk_version[0] if wrk_version else "?",
            "loadavg_at_start": list(os.getloadavg()),
            "apps": {name: asdict(APPS[name]) for name in apps},
        },
        "runs": [],
    }
    print(f"load average {os.getloadavg()[0]:.2f}; {document['meta']['wrk']}", flush=True)
    try:
        for round_number in range(1, settings.rounds + 1):
            order = apps if round_number % 2 else list(reversed(apps))
            answers: dict[str, dict[str, tuple[int, Any]]] = {}
            for name in order:
                routes, answers[name] = await measure_app(name, settings, scripts, logs, round_number)
                run = {"app": name, "round": round_number, "routes": routes, "loadavg": list(os.getloadavg())}
                document["runs"].append(run)
                fanout.write_json(out, document)
                for label, figures in routes.items():
                    print(
                        f"[{round_number}] {name:<10} {label:<22} {figures['requests_per_s']:>10,.0f} req/s  "
                        f"p50 {figures['p50_ms']:.2f} p99 {figures['p99_ms']:.2f} ms  "
                        f"{figures['server_cpu_us_per_request']:.1f} µs/req  non-2xx {figures['non_2xx']} "
                        f"socket errors {figures['socket_errors']}",
                        flush=True,
                    )
            for route in ROUTES:
                seen = {json.dumps(answers[name][route.label], sort_keys=True) for name in answers}
                if len(seen) != 1 or any(answers[name][route.label][0] != 200 for name in answers):
                    raise SystemExit(f"the apps answer {route.label} differently: {seen}")
    finally:
        shutil.rmtree(script_dir, ignore_errors=True)
        table = medians(document["runs"])
        text = markdown(table, settings)
        document["meta"]["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        document["summary"] = {"medians": table, "markdown": text}
        fanout.write_json(out, document)
    print()
    print(text)
    print(f"results: {out}")
    bad = [
        (run["app"], label)
        for run in document["runs"]
        for label, figures in run["routes"].items()
        if figures["non_2xx"] or figures["socket_errors"]
    ]
    if bad:
        print(f"non-2xx answers or socket errors in: {bad}", file=sys.stderr)
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--apps", default=",".join(APPS), help=f"comma-separated, from {','.join(APPS)}")
    parser.add_argument("--rounds", type=int, help="rounds, alternating the order (default 3; 1 with --quick)")
    parser.add_argument("--duration", type=float, help="measured seconds per route and app (default 10; 3 quick)")
    parser.add_argument("--connections", type=int, default=64, help="wrk's keep-alive connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk's threads")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s per route and app")
    parser.add_argument("--out", type=Path, default=RESULTS / "http_wrk.json", help="the JSON results file")
    args = parser.parse_args(argv)
    apps = [name.strip() for name in args.apps.split(",") if name.strip()]
    for name in apps:
        if name not in APPS:
            parser.error(f"unknown app {name!r}; choose from {', '.join(APPS)}")
    settings = Settings(
        rounds=args.rounds or (1 if args.quick else 3),
        duration=args.duration or (3.0 if args.quick else 10.0),
        warmup=1.0 if args.quick else 2.0,
        connections=args.connections,
        threads=args.threads,
        quick=args.quick,
    )
    fanout.raise_nofile()
    try:
        return asyncio.run(session(settings, apps, args.out, argv))
    except KeyboardInterrupt:
        print("interrupted; every process this run started is stopped", file=sys.stderr)
        return 130
    finally:
        fanout.CHILDREN.kill_all()


if __name__ == "__main__":
    sys.exit(main())
