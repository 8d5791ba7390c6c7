"""Many idle WebSockets on one box: memory per connection, one broadcast to all, connect rate.

The question a capacity plan asks: how many connections does one 2-core box hold, and does a
broadcast still reach all of them promptly? Each stack serves ``--receivers`` (default
50,000) receivers on 2 workers, against a throwaway ``redis-server`` (the workers share the
room through it), side by side:

=========  ================================================================================
fasterapi  ``fasterapi run benchmarks.stacks.fasterapi_app:app --workers 2`` (gunicorn with
           FasterWorker: our protocol, frame-once broadcasts)
bare-asgi  the hand-written ASGI app on gunicorn + ``uvicorn_worker.UvicornWorker``
=========  ================================================================================

(``--stacks`` also takes any stack of ``benchmarks/fanout.py``.) The load generator is
``fanout_client.py``, in ``--client-procs`` processes (default 4), each connecting from a
loopback address of its own (127.0.0.2, 127.0.0.3, ...), so that no source address needs more
of the ``net.ipv4.ip_local_port_range`` ephemeral ports than it has. Every process this runner
starts inherits an open-files limit (soft and hard) raised to the receivers plus a margin, so
that even a worker that wins every accept has room; that needs ``CAP_SYS_RESOURCE`` (root on
an ordinary machine). Without it the soft limit goes up to the hard one, which then caps the
receivers at about twice the hard limit (a worker's even share must fit).

One run: boot the stack and wait for its workers; 20 warm-up connections come and go (so
one-time costs are not charged to the connections); the workers' RSS; the clients connect all
receivers, at most ``--connect-concurrency`` handshakes in flight per client process
(*connect rate*: receivers / the slowest process's connecting time); probes (one broadcast per
``--probe-interval``) until every receiver has one, i.e. is in the room, then silence until
the workers are idle (probes a loaded server could not keep up with are delivered) and
``--settle`` seconds more; the workers' RSS again (*KiB per connection*: the growth summed over the
workers, divided by the receivers); then ``--broadcasts`` broadcasts, one every
``--interval`` seconds, each to every receiver (*latency*: publisher's send to a receiver's
arrival, over every delivery; *lost*: deliveries missing after ``--drain`` seconds; one
unmeasured broadcast goes first). The
workers' CPU over the broadcasts, per delivery, is reported too.

    .bench-venv/bin/python benchmarks/connections.py              # 50,000 receivers, 3 rounds
    .bench-venv/bin/python benchmarks/connections.py --quick      # 3,000 receivers, 1 round
    .bench-venv/bin/python benchmarks/connections.py --quick --profile   # + where the workers' time goes

Every process started here is stopped at the end of its run, on errors and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import fanout  # noqa: E402
from benchmarks.fanout import (  # noqa: E402
    CHILDREN,
    FASTERAPI_RUN,
    STACKS,
    ClientProcess,
    CpuSnapshot,
    Scenario,
    Stack,
    established,
    finish_profilers,
    gunicorn,
    merge_histograms,
    percentile,
    rss_bytes,
    split,
    start_profilers,
    warm_up_connections,
    write_json,
)
from FasterAPI.server.admission import connection_limit  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

RESULTS = HERE / "results"
DEFAULT_RECEIVERS = 50_000
QUICK_RECEIVERS = 3_000
#: Open files each process may need beyond one per receiver (listening sockets, Redis, logs...).
NOFILE_MARGIN = 512

SCALE_STACKS: dict[str, Stack] = {
    "fasterapi": Stack(
        "fasterapi",
        "benchmarks.stacks.fasterapi_app:app",
        FASTERAPI_RUN,
        "ours",
        description="FasterAPI on `fasterapi run --workers 2` (FasterWorker, frame-once)",
    ),
    "bare-asgi": STACKS["bare-asgi"],
}


@dataclass
class Settings:
    """Everything a session's runs share (recorded in the JSON)."""

    receivers: int = DEFAULT_RECEIVERS
    rounds: int = 3
    client_procs: int = 4
    connect_concurrency: int = 32
    broadcasts: int = 5
    interval: float = 2.0
    probe_interval: float = 1.0
    settle: float = 3.0
    drain: float = 15.0
    boot_timeout: float = 60.0
    quick: bool = False
    profile: bool = False  # py-spy every worker while connecting and over the broadcasts
    stacks: list[str] = field(default_factory=lambda: list(SCALE_STACKS))

    def connect_timeout(self) -> float:
        """Generous: 25 handshakes/s at the least (a loaded 2-core box), and 5 minutes at the very least."""
        return max(300.0, self.receivers / 25)

    def idle_timeout(self) -> float:
        """How long the workers may take to deliver the probes still queued when they stop."""
        return max(60.0, self.receivers / 500)

    def run_limit(self) -> float:
        return (
            self.boot_timeout
            + 2 * self.connect_timeout()
            + self.idle_timeout()
            + self.broadcasts * self.interval
            + self.drain
            + 120
        )


def stack_named(name: str) -> Stack:
    return SCALE_STACKS.get(name) or STACKS[name]


# -- the machine ------------------------------------------------------------------------------


def kernel_limits() -> dict[str, Any]:
    """The limits that decide how many connections one box can hold (read, never changed)."""

    def sysctl(name: str) -> str:
        try:
            return " ".join(Path("/proc/sys", name.replace(".", "/")).read_text().split())
        except OSError:
            return "?"

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "net.ipv4.ip_local_port_range": sysctl("net.ipv4.ip_local_port_range"),
        "fs.nr_open": sysctl("fs.nr_open"),
        "fs.file-max": sysctl("fs.file-max"),
        "net.core.somaxconn": sysctl("net.core.somaxconn"),
        "net.ipv4.tcp_max_syn_backlog": sysctl("net.ipv4.tcp_max_syn_backlog"),
        "net.ipv4.tcp_mem": sysctl("net.ipv4.tcp_mem"),
        "nofile_soft": soft,
        "nofile_hard": hard,
    }


def ephemeral_ports() -> int:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return high - low + 1


def raise_nofile(receivers: int) -> int:
    """Raise the open-files limits (inherited by every child) for ``receivers`` connections.

    Best: soft and hard to ``receivers`` plus a margin, so that even a worker that wins every
    accept has room. Without the right to raise a hard limit (``CAP_SYS_RESOURCE``), the soft
    limit goes up to the hard one. Returns the soft limit now in force.
    """
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    wanted = receivers + NOFILE_MARGIN
    if hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError) as error:
            print(f"warning: cannot raise the hard open-files limit {hard:,} to {wanted:,} ({error})", file=sys.stderr)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def receivers_that_fit(limit: int, client_procs: int) -> int:
    """The most receivers whose sockets fit ``limit`` open files per process: as many as the
    workers accept (a FasterAPI worker stops short of its limit, keeping a reserve; the same
    share keeps a peer's even share clear of its limit), and a client process's."""
    per_worker = connection_limit(limit, NOFILE_MARGIN) * fanout.WORKERS
    per_clients = (limit - NOFILE_MARGIN) * client_procs
    return max(0, min(per_worker, per_clients) // 1000 * 1000)


# -- one run -------------------------------------------------------------------------------

#: With --profile, py-spy samples each worker for this long from the start of the connecting.
PROFILED_CONNECT_S = 10.0


async def profile(
    workers: Sequence[int], settings: Settings, seconds: float, log_prefix: Path, phase: str
) -> list[tuple[asyncio.subprocess.Process, Path]]:
    """With ``--profile``: py-spy on every worker for ``seconds`` (files named after ``phase``)."""
    if not settings.profile:
        return []
    duration = fanout.Settings(duration=max(1.0, seconds))
    return await start_profilers(workers, duration, log_prefix.with_name(f"{log_prefix.name}.{phase}"))


#: The workers count as idle once they use less than this share of a core, over IDLE_SAMPLE s,
IDLE_CORES = 0.05
#: plus this much per connection: idle connections still cost their keepalive, a ping and a pong
#: every 20 s each (both servers' default), about 0.05 cores at 37,000; twice that is allowed.
IDLE_CORES_PER_CONNECTION = 3e-6
IDLE_SAMPLE = 1.0


async def wait_idle(workers: Sequence[int], connections: int, timeout: float) -> float:
    """Wait until the workers' CPU use is down to their idle connections' upkeep; the seconds it took."""
    idle = IDLE_CORES + connections * IDLE_CORES_PER_CONNECTION
    start = time.monotonic()
    while True:
        before = CpuSnapshot.take(workers)
        await asyncio.sleep(IDLE_SAMPLE)
        after = CpuSnapshot.take(workers)
        cores = after.since(before, workers) / (after.at - before.at)
        if cores < idle:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise RuntimeError(
                f"the workers were still busy {timeout:g}s after the probes stopped ({cores:.2f} cores, "
                f"idle is under {idle:.2f})"
            )


async def start_clients(stack: Stack, settings: Settings, port: int, log_prefix: Path) -> list[ClientProcess]:
    """``--client-procs`` load generators, each from its own loopback address (127.0.0.2, ...)."""
    base = fanout.Settings(connect_concurrency=settings.connect_concurrency)
    scenario = Scenario("connections", "rate", settings.receivers, 1.0 / settings.interval)
    clients = []
    for index, count in enumerate(split(settings.receivers, settings.client_procs)):
        args = fanout.client_args(stack, scenario, base, port, count, publisher=index == 0)
        args += [
            "--source-address", f"127.0.0.{2 + index}",
            "--probe-interval", str(settings.probe_interval),
            "--read-buffer", "2048",
        ]  # fmt: skip
        log_path = log_prefix.with_name(f"{log_prefix.name}.client{index}.log")
        clients.append(await ClientProcess.start(index, args, log_path))
    return clients


async def run_once(stack: Stack, settings: Settings, redis_server: RedisServer, log_prefix: Path) -> dict[str, Any]:
    """One stack: boot, connect every receiver, measure memory, broadcast, stop."""
    redis_server.admin.flushall()
    record: dict[str, Any] = {"receivers": settings.receivers}
    timeout = settings.connect_timeout()
    async with gunicorn(
        stack, redis_server.url, log_prefix.with_name(log_prefix.name + ".server.log"), settings.boot_timeout
    ) as server:
        workers = server.workers
        await warm_up_connections(stack, fanout.Settings(), server.port, log_prefix)
        await asyncio.sleep(0.5)
        rss_before = {pid: rss_bytes(pid) for pid in workers}
        clients = await start_clients(stack, settings, server.port, log_prefix)
        profiling = await profile(workers, settings, PROFILED_CONNECT_S, log_prefix, "connect")
        try:
            connected = await asyncio.gather(*(c.expect("connected", timeout) for c in clients))
            if profiling:
                record["profile_connect"] = await finish_profilers(profiling)
            failures = sum(c["failures"] for c in connected)
            if failures:
                raise RuntimeError(f"{failures} receivers could not connect")
            connect_s = max(c["seconds"] for c in connected)
            record.update(connect_s=connect_s, connect_per_s=settings.receivers / connect_s)
            for client in clients:
                client.send("watch")
            clients[0].send("probe")
            await asyncio.gather(*(c.expect("subscribed", timeout) for c in clients))
            clients[0].send("quiet")
            # Probes sent faster than a loaded server delivers them queue up: measure nothing
            # until the workers have gone quiet (so the broadcasts do not wait behind them).
            record["idle_wait_s"] = await wait_idle(workers, settings.receivers, settings.idle_timeout())
            await asyncio.sleep(settings.settle)
            rss_after = {pid: rss_bytes(pid) for pid in workers}
            growth = sum(rss_after.values()) - sum(rss_before.values())
            record.update(
                rss_before=sum(rss_before.values()),
                rss_after=sum(rss_after.values()),
                kib_per_conn=growth / settings.receivers / 1024,
                conns_per_worker=[established(pid, server.port) for pid in workers],
            )
            # The publisher broadcasts as "go" reaches it, then every interval. That first one
            # is not measured: a client process that reads its "go" after the frames arrived
            # would not count them. The window [t0, t1) holds the next ``broadcasts`` ones.
            lead = min(1.0, settings.interval / 2)
            t0 = time.monotonic() + lead
            t1 = t0 + settings.broadcasts * settings.interval - lead / 2
            before = CpuSnapshot.take(workers)
            for client in clients:
                client.send("go", t0=t0, t1=t1)
            profiling = await profile(workers, settings, t1 - t0, log_prefix, "broadcast")
            published = await clients[0].expect("published", t1 - time.monotonic() + 30)
            if profiling:
                record["profile_broadcast"] = await finish_profilers(profiling)
            for client in clients:
                client.send("finish", s_lo=published["s_lo"], s_hi=published["s_hi"], drain=settings.drain)
            results = await asyncio.gather(*(c.expect("result", settings.drain + 60) for c in clients))
            after = CpuSnapshot.take(workers)
        finally:
            for client in clients:
                await client.stop()
        record["server_log_errors"] = server.error_lines()
        record["server_log_tail"] = server.log_tail(1500).strip()
    hist, step, counted = merge_histograms(results)
    minimum = results[0]["hist_min_s"]

    def ms(q: float) -> float | None:
        value = percentile(hist, step, minimum, counted, q)
        return None if value is None else value * 1000

    maxima = [r["latency_max_s"] for r in results if r["latency_max_s"] is not None]
    delivered = sum(r["window_delivered"] for r in results)
    server_cpu = after.since(before, workers)
    record.update(
        broadcasts=published["s_hi"] - published["s_lo"] + 1,
        delivered=delivered,
        expected=sum(r["expected"] for r in results),
        lost=sum(r["lost"] for r in results),
        # False: some receiver was still behind when the drain ended (late rather than lost).
        drained=all(r["drained"] for r in results),
        disconnects=sum(r["disconnects"] for r in results),
        duplicates=sum(r["duplicates"] for r in results),
        p50_ms=ms(0.50),
        p99_ms=ms(0.99),
        max_ms=max(maxima) * 1000 if maxima else None,
        server_cpu_s=server_cpu,
        server_cpu_us_per_delivery=server_cpu / delivered * 1e6 if delivered else None,
    )
    return record


# -- the session --------------------------------------------------------------------------------

NUMERIC_KEYS = (
    "kib_per_conn connect_per_s connect_s p50_ms p99_ms max_ms lost disconnects server_cpu_us_per_delivery".split()
)


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """stack -> {metric: median over the successful runs, runs, failed}."""
    table: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(run["stack"] for run in runs):
        group = [run for run in runs if run["stack"] == name]
        ok = [run for run in group if run["ok"]]
        entry: dict[str, Any] = {"runs": len(ok), "failed": len(group) - len(ok), "receivers": group[0]["receivers"]}
        for key in NUMERIC_KEYS:
            values = [run[key] for run in ok if run.get(key) is not None]
            if values:
                entry[key] = statistics.median(values)
        table[name] = entry
    return table


def markdown(table: dict[str, dict[str, Any]], settings: Settings) -> str:
    out = [
        f"#### {settings.receivers:,} idle connections on 2 workers, then {settings.broadcasts} broadcasts to all\n",
        "| stack | KiB per connection | connect rate (handshakes/s) | broadcast p50 ms | p99 ms | max ms "
        "| lost | server CPU µs/delivery | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(entry: dict[str, Any], key: str, digits: int = 1) -> str:
        value = entry.get(key)
        if value is None:
            return "-"
        return f"{value:,.0f}" if digits == 0 else f"{value:.{digits}f}"

    for name, entry in table.items():
        runs = f"{entry['runs']}" + (f" ({entry['failed']} failed)" if entry["failed"] else "")
        out.append(
            f"| {name} | {cell(entry, 'kib_per_conn')} | {cell(entry, 'connect_per_s', 0)} "
            f"| {cell(entry, 'p50_ms')} | {cell(entry, 'p99_ms')} | {cell(entry, 'max_ms')} "
            f"| {cell(entry, 'lost', 0)} | {cell(entry, 'server_cpu_us_per_delivery', 2)} | {runs} |"
        )
    out.append("")
    return "\n".join(out)


def one_line(run: dict[str, Any]) -> str:
    head = f"[{run['round']}] {run['stack']:<12} {run['receivers']:,} receivers"
    if not run["ok"]:
        return f"{head} FAILED: {run['error'].splitlines()[0] if run['error'] else '?'}"
    return (
        f"{head}: {run['kib_per_conn']:.2f} KiB/conn, connect {run['connect_per_s']:,.0f}/s "
        f"({run['connect_s']:.1f} s), {run['broadcasts']} broadcasts p50 {run['p50_ms']:.1f} "
        f"p99 {run['p99_ms']:.1f} max {run['max_ms']:.1f} ms, lost {run['lost']}"
        f"{'' if run['drained'] else ' (still delivering at the end)'}, "
        f"{run['server_cpu_us_per_delivery']:.2f} µs/delivery, conns/worker {run['conns_per_worker']}"
        + (f" ({run['server_log_errors']} ERROR lines in the server log)" if run.get("server_log_errors") else "")
    )


async def session(settings: Settings, out: Path, argv: Sequence[str], limits: dict[str, Any]) -> int:
    logs = out.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        redis_server = RedisServer().start()
    except RuntimeError as error:
        raise SystemExit(f"{error} (apt-get install redis-server)") from error
    document: dict[str, Any] = {
        "meta": {
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["python", "benchmarks/connections.py", *argv]),
            "settings": asdict(settings),
            "workers": fanout.WORKERS,
            "machine": fanout.machine_info(redis_server),
            "kernel_limits": limits,
            "source": fanout.source_state(),
            "stacks": {name: asdict(stack_named(name)) for name in settings.stacks},
        },
        "runs": [],
    }
    print(
        f"{settings.receivers:,} receivers from {settings.client_procs} client processes; limits {json.dumps(limits)}; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:
        for round_number in range(1, settings.rounds + 1):
            shift = (round_number - 1) % len(settings.stacks)
            for name in settings.stacks[shift:] + settings.stacks[:shift]:
                run: dict[str, Any] = {"stack": name, "round": round_number, "receivers": settings.receivers}
                begun = time.monotonic()
                try:
                    async with asyncio.timeout(settings.run_limit()):
                        run.update(
                            await run_once(
                                stack_named(name), settings, redis_server, logs / f"conn-r{round_number}-{name}"
                            )
                        )
                    run["ok"], run["error"] = True, None
                except (Exception, TimeoutError) as error:
                    run.update(ok=False, error=f"{type(error).__name__}: {error}")
                run["seconds"] = round(time.monotonic() - begun, 1)
                run["loadavg"] = list(os.getloadavg())
                document["runs"].append(run)
                write_json(out, document)
                print(one_line(run), flush=True)
                for phase in ("connect", "broadcast"):
                    hottest = run.get(f"profile_{phase}", {}).get("top_self", [])[:10]
                    if hottest:
                        print(f"    hottest frames ({phase}, self time, % of samples):", flush=True)
                        for frame, share in hottest:
                            print(f"    {share:5.1f}%  {frame}", flush=True)
    finally:
        redis_server.stop()
        table = medians(document["runs"])
        text = markdown(table, settings)
        document["meta"]["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        document["summary"] = {"medians": table, "markdown": text}
        write_json(out, document)
    print()
    print(text)
    print(f"results: {out}")
    return 0 if all(run["ok"] for run in document["runs"]) else 1


def parse_args(argv: Sequence[str]) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = [*SCALE_STACKS, *(name for name in STACKS if name not in SCALE_STACKS)]
    parser.add_argument(
        "--receivers", type=int, help=f"default {DEFAULT_RECEIVERS:,} ({QUICK_RECEIVERS:,} with --quick)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; 1 with --quick)")
    parser.add_argument("--stacks", default=",".join(SCALE_STACKS), help=f"comma-separated, from {','.join(names)}")
    parser.add_argument(
        "--client-procs", type=int, default=4, help="load-generator processes (own source address each)"
    )
    parser.add_argument("--connect-concurrency", type=int, default=32, help="handshakes in flight per client process")
    parser.add_argument("--broadcasts", type=int, default=5, help="broadcasts to every receiver, measured")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between the broadcasts")
    parser.add_argument(
        "--probe-interval",
        type=float,
        help="seconds between probes while subscribing (default: 1 per 10,000 receivers, at least 1)",
    )

    parser.add_argument("--settle", type=float, default=3.0, help="quiet seconds before the second RSS reading")
    parser.add_argument("--drain", type=float, default=15.0, help="max seconds to wait for the last deliveries")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy each worker while connecting and broadcasting (logs/)"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RECEIVERS:,} receivers, 1 round")
    parser.add_argument("--out", type=Path, default=RESULTS / "connections.json", help="the JSON results file")
    args = parser.parse_args(argv)
    stacks = [name.strip() for name in args.stacks.split(",") if name.strip()]
    for name in stacks:
        if name not in SCALE_STACKS and name not in STACKS:
            parser.error(f"unknown stack {name!r}; choose from {', '.join(names)}")
    receivers = args.receivers or (QUICK_RECEIVERS if args.quick else DEFAULT_RECEIVERS)
    settings = Settings(
        receivers=receivers,
        rounds=args.rounds or (1 if args.quick else 3),
        client_procs=args.client_procs,
        connect_concurrency=args.connect_concurrency,
        broadcasts=args.broadcasts,
        interval=args.interval,
        probe_interval=args.probe_interval or max(1.0, receivers / 10_000),
        settle=args.settle,
        drain=args.drain,
        quick=args.quick,
        profile=args.profile,
        stacks=stacks,
    )
    per_process = -(-settings.receivers // settings.client_procs)
    if per_process > ephemeral_ports() - 1000:
        parser.error(
            f"{per_process:,} receivers per client process, but one source address has only {ephemeral_ports():,} "
            "ephemeral ports (net.ipv4.ip_local_port_range): pass more --client-procs"
        )
    if settings.client_procs > 250:
        parser.error("at most 250 client processes (source addresses 127.0.0.2 to 127.0.0.251)")
    return settings, args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings, args = parse_args(argv)
    limits = kernel_limits()  # as found, before this process raises its own
    limit = limits["nofile_in_force"] = raise_nofile(settings.receivers)
    fit = receivers_that_fit(limit, settings.client_procs)
    if settings.receivers > fit:
        advice = (
            f"{settings.receivers:,} receivers do not fit the open-files limit of {limit:,} per process, which "
            f"this process may not raise (it needs CAP_SYS_RESOURCE; fs.nr_open is {limits['fs.nr_open']})"
        )
        if args.receivers is not None:
            raise SystemExit(f"{advice}: pass --receivers {fit:,} or fewer")
        # The default target: measure as many as this machine allows, and say so in the results.
        print(f"warning: {advice}; measuring {fit:,} instead", file=sys.stderr)
        limits["receivers_capped_from"] = settings.receivers
        settings.receivers = fit
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, fanout._terminate)
    signal.signal(signal.SIGHUP, fanout._terminate)
    try:
        return asyncio.run(session(settings, args.out, argv, limits))
    except KeyboardInterrupt:
        print("interrupted; every process this run started is stopped", file=sys.stderr)
        return 130
    finally:
        CHILDREN.kill_all()


if __name__ == "__main__":
    sys.exit(main())
