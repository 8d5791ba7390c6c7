"""Turn ``benchmarks/results/fanout.json`` (and the other results) into docs/benchmarks.md and a plot.

    .bench-venv/bin/python benchmarks/report.py           # the defaults below; `make bench` runs it

The page lists the machine, every package version in the environment that ran the benchmark,
the exact commands, the medians and the ratios; ``docs/benchmarks.png`` has three panels per
stack and scenario: server CPU µs per delivered message, delivered messages/s and p99 latency.
Nothing here measures anything: all numbers come from the JSON that ``fanout.py``,
``connections.py`` and ``http_wrk.py`` wrote (their sections are left out when a file is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

THROUGHPUT = ("saturation", "500x100", "2000x50")
#: One colour per stack (matplotlib's default cycle repeats after ten): FasterAPI's rows in
#: reds, oranges and browns, its ASGI path in light shades, peers and ceilings as before.
COLORS = {
    "fasterapi": "#d62728",
    "fasterapi-history": "#8c564b",
    "fasterapi-realtime": "#17becf",
    "fasterapi-coalesced": "#ff7f0e",
    "fasterapi-cluster": "#c49c94",
    "fasterapi-asgi": "#ff9896",
    "fastapi-broadcaster": "#1f77b4",
    "litestar-channels": "#2ca02c",
    "socketio": "#9467bd",
    "bare-asgi": "#7f7f7f",
    "fasterapi-asgi-gunicorn": "#e377c2",
    "bare-asgi-gunicorn": "#c7c7c7",
    "fasterapi-asgi-granian": "#ffbb78",
    "bare-asgi-granian": "#bcbd22",
}
MAKE_COMMANDS = """\
make bench          # or, step by step:
python3 -m venv .bench-venv
.bench-venv/bin/pip install -e '.[redis,server]' -r benchmarks/requirements-peers.txt
.bench-venv/bin/python benchmarks/fanout.py --out benchmarks/results/fanout.json
.bench-venv/bin/python benchmarks/connections.py --out benchmarks/results/connections.json
.bench-venv/bin/python benchmarks/http_wrk.py --out benchmarks/results/http_wrk.json   # needs wrk (apt)
.bench-venv/bin/python benchmarks/http_asgi.py > benchmarks/results/http_asgi.txt
.bench-venv/bin/python benchmarks/report.py"""


def scenario_label(name: str, scenario: dict[str, Any], window: int) -> str:
    if scenario["mode"] == "saturate":
        return f"saturation\n{scenario['receivers']:,} recv, window {window}"
    if scenario["mode"] == "rate":
        return f"{scenario['receivers']:,} recv x {scenario['rate']:g}/s"
    return name


def plot(document: dict[str, Any], path: Path) -> None:
    """Three panels: server CPU µs/delivery, delivered msg/s, p99 latency; bars per stack."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = document["meta"]
    table: dict[str, dict[str, dict[str, Any]]] = document["summary"]["medians"]
    stacks = [name for name in meta["stacks"] if name in table]
    scenarios = [name for name in THROUGHPUT if name in meta["scenarios"]]
    if not stacks or not scenarios:
        return
    window = meta["settings"]["window"]
    panels = (
        ("server_cpu_us_per_delivery", "server CPU µs per delivered message (lower is better)", False),
        ("delivered_per_s", "delivered messages/s (higher is better)", False),
        ("p99_ms", "p99 latency, ms (log scale; lower is better)", True),
    )
    figure, axes = plt.subplots(1, 3, figsize=(18, 5.8))
    width = 0.8 / len(stacks)
    for axis, (key, title, log_scale) in zip(axes, panels, strict=True):
        for position, stack in enumerate(stacks):
            xs, ys = [], []
            for index, scenario in enumerate(scenarios):
                value = table[stack].get(scenario, {}).get(key)
                if value is not None:
                    xs.append(index - 0.4 + width * (position + 0.5))
                    ys.append(value)
            axis.bar(xs, ys, width, label=stack, color=COLORS.get(stack), edgecolor="black", linewidth=0.4)
        if key == "delivered_per_s":
            for index, scenario in enumerate(scenarios):
                spec = meta["scenarios"][scenario]
                if spec["mode"] == "rate":
                    offered = spec["receivers"] * spec["rate"]
                    axis.hlines(offered, index - 0.45, index + 0.45, colors="black", linestyles="dashed", linewidth=1)
                    axis.annotate("offered", (index + 0.45, offered), fontsize=7, ha="right", va="bottom")
        axis.set_xticks(range(len(scenarios)))
        axis.set_xticklabels([scenario_label(s, meta["scenarios"][s], window) for s in scenarios], fontsize=8)
        axis.set_title(title, fontsize=10)
        if log_scale:
            axis.set_yscale("log")
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    settings = meta["settings"]
    figure.suptitle(
        f"WebSocket fan-out through Redis, gunicorn x {meta['workers']} workers: medians of {settings['rounds']} "
        f"round(s), {settings['duration']:g} s windows; {meta['machine']['nproc']} cores, "
        f"{meta['machine']['cpu_model']}",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def caveats(document: dict[str, Any]) -> list[str]:
    """Warnings about the run itself: a smoke run, few rounds, a busy machine, failures."""
    meta = document["meta"]
    settings = meta["settings"]
    notes = []
    if settings["quick"] or settings["receivers"] is not None:
        notes.append(
            "**Smoke run**: receivers were reduced (`--quick` or `--receivers`), so these numbers only show "
            "that the harness works; they are not the benchmark."
        )
    if settings["rounds"] < 3 or settings["duration"] < 10:
        notes.append(
            f"Short run: {settings['rounds']} round(s) of {settings['duration']:g} s windows "
            "(the default is 3 rounds of 10 s)."
        )
    others = [run["other_cores"] for run in document["runs"] if run.get("ok") and run.get("other_cores") is not None]
    if others and statistics.median(others) > 0.15:
        notes.append(
            f"**Busy machine**: other processes used a median {statistics.median(others):.2f} cores during the "
            "measured windows (column *other cores*); rerun on a quiet machine."
        )
    failed = [run for run in document["runs"] if not run.get("ok")]
    if failed:
        notes.append(
            f"{len(failed)} run(s) failed: "
            + "; ".join(
                f"{r['stack']}/{r['scenario']} round {r['round']}: {r['error'].splitlines()[0]}" for r in failed
            )
        )
    return notes


def render(
    document: dict[str, Any], http_text: str | None, png_name: str, json_name: str, extra: Sequence[str] = ()
) -> str:
    meta = document["meta"]
    settings = meta["settings"]
    machine = meta["machine"]
    out: list[str] = []
    add = out.append
    add("# Benchmarks")
    add("")
    add(f"<!-- Generated by benchmarks/report.py from {json_name}; edit the generator, not this file. -->")
    add("")
    add(
        "FasterAPI's headline feature is WebSocket rooms that work across gunicorn workers through Redis "
        "pub/sub. This page compares the same fan-out, side by side and on the same machine, with the "
        "usual ways to do it in other Python stacks, and with a hand-written ASGI app that is the ceiling "
        "for anything sending through ASGI."
    )
    add("")
    notes = caveats(document)
    if notes:
        for note in notes:
            add(f"> {note}")
            add(">")
        out.pop()
        add("")
    add(f"Run started {meta['started']}, finished {meta.get('finished', '?')}.")
    source = meta.get("source") or {}
    if source.get("commit"):
        modified = source.get("modified") or []
        state = f" with uncommitted changes to {', '.join(f'`{m}`' for m in modified)}" if modified else ""
        add(f"Source: commit `{source['commit'][:12]}`{state}.")
    add("")
    add("## How to run it")
    add("")
    add("```sh")
    add(MAKE_COMMANDS)
    add("```")
    add("")
    add(
        "`make bench BENCH_ARGS=--quick` is a smoke run (a couple of minutes). The fan-out runner's "
        "options: `--rounds`, `--stacks`, `--scenarios`, `--duration`, `--warmup`, `--drain`, `--window`, "
        "`--client-procs`, `--receivers`, `--no-balance`, `--profile` (py-spy on every worker). "
        "This run was:"
    )
    add("")
    add("```sh")
    add(meta["command"])
    add("```")
    add("")
    add("## Machine")
    add("")
    add("| | |")
    add("|---|---|")
    add(f"| cores (`nproc`) | {machine['nproc']} |")
    add(f"| CPU | {machine['cpu_model']} |")
    add(f"| memory | {machine['memory_gib']} GiB |")
    add(f"| kernel | {machine['kernel']} |")
    add(f"| Python | {machine['python']} |")
    add(f"| redis-server | {machine['redis_server']} |")
    add(f"| load average at start | {', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])} |")
    add("")
    add("## What is measured")
    add("")
    add(
        f"Every stack runs under gunicorn with {meta['workers']} worker processes on one port, all against "
        "one `redis-server` that the runner starts on a free loopback port (`FLUSHALL` before every run). "
        "The WebSocket stacks run under `uvicorn_worker.UvicornWorker` (uvicorn with httptools, uvloop, "
        "websockets-sansio), except FasterAPI's own `FasterWorker` row and the rows on the two other "
        "servers: gunicorn's own ASGI worker (`-k asgi`, uvloop) and granian (Rust HTTP/WebSockets, ASGI "
        "interface, uvloop, its own 2 worker processes instead of gunicorn's); log level warning "
        "everywhere. Each run starts a fresh server."
    )
    if any(stack.get("relay") == "cluster" for stack in meta["stacks"].values()):
        add("")
        add(
            "The `fasterapi-cluster` row runs against a Redis Cluster instead (three primaries, three "
            "replicas, started once beside the single redis-server; its *redis cores* are the six nodes' "
            "sum). The benchmark's one room lives in one slot, so one shard carries it: the row shows what "
            "the cluster path costs per publish and per delivery; how shards add up is in "
            "[Scaling](scaling.md#capacity-model)."
        )
    add("")
    add("| stack | worker class | what |")
    add("|---|---|---|")
    for name, stack in meta["stacks"].items():
        add(f"| {name} | `{stack['worker_class']}` | {stack['description']} ({stack['role']}) |")
    add("")
    add(
        "The apps are in `benchmarks/stacks/`: receivers connect and are put in one room, and one "
        "publisher socket sends messages that the server broadcasts to the room with the stack's own "
        "idiom (`app.broadcast`, `broadcast.publish`, `channels.publish`, `sio.emit(room=...)`, "
        "`redis.publish`). *Peers* are fastapi-broadcaster, litestar-channels and socketio; bare-asgi "
        "is the ceiling, not a peer."
    )
    add("")
    add(
        "The load generator (`benchmarks/fanout_client.py`) is picows on uvloop: frames arrive in "
        "callbacks, no task per socket. It connects one socket at a time; then the runner reads, for "
        "each worker, which client ports it accepted and reconnects receivers of the busier worker "
        "until the two hold the same number (within 1%), since workers sharing one listening socket "
        "take whatever they win. Before measuring, the publisher sends probe messages until every "
        "receiver has one. Messages are ~100 bytes of JSON with a sequence number and the "
        'publisher\'s `CLOCK_MONOTONIC` send time (Socket.IO wraps them as `42["msg",{...}]`).'
    )
    add("")
    add(
        f"Scenarios: **saturation** (the publisher keeps {settings['window']} messages in flight; a message "
        "is in flight until every receiver has it, so every stack is pushed as hard as it delivers), "
        "**500x100** and **2000x50** (receivers x messages/s, on a fixed schedule), and **memory** (2,000 "
        "idle receivers in the room: the workers' summed RSS after connecting minus before, per connection; "
        "the baseline is taken after 20 warm-up connections came and went; `benchmarks/connection_memory.py` "
        "attributes one idle connection's bytes to source lines, stack against stack). Each throughput run publishes "
        f"for {settings['warmup']:g} s of warm-up and a {settings['duration']:g} s measured window. "
        "Delivered msg/s counts deliveries that arrived in the window; latency (send to arrival) and "
        "loss are over the messages sent in the window, waiting up to "
        f"{settings['drain']:g} s for stragglers. CPU is utime+stime from `/proc/<pid>/stat` over the "
        "window for the workers, redis-server and the clients; *other* is the rest of the machine "
        "(`/proc/stat`), i.e. noise. Runs are interleaved: each round runs every stack on every "
        "scenario, with the stack order rotated; the tables are medians over rounds."
    )
    add("")
    add(
        "Reading the numbers on a 2-core machine: in the saturation scenario the server and the load "
        "generator share the two cores, so throughput there is partly the client's; **server CPU µs per "
        "delivered message** is the number that does not depend on who else runs. At a fixed rate a stack "
        "that cannot keep up falls behind: its deliveries/s drop below the offered rate and its latency "
        "grows for the whole window. Latency includes the load generator's own time to read a burst: "
        "one message to 2,000 receivers is 2,000 frames that one client process reads one by one (about "
        "5 µs each here, see *client cores*), so at 2,000 receivers a few milliseconds of every stack's "
        "p50/p99 are the client's (`--client-procs` spreads them, on machines with cores to spare)."
    )
    add("")
    add("## Results")
    add("")
    add(f"![fan-out results]({png_name})")
    add("")
    add(document["summary"]["markdown"].replace("#### ", "### "))
    add("")
    add("### Notes on the peers")
    add("")
    add(
        "- **fastapi-broadcaster**: broadcaster 0.3.1 with redis-py 8.1 has two startup races "
        "(both reproduce outside gunicorn). The Redis backend's listener wakes during the first "
        "`SUBSCRIBE`, before redis-py records the channel, finds nothing subscribed and sleeps until a "
        "*new* channel is subscribed, so a worker with one room never receives. And `Broadcast.subscribe` "
        "awaits that `SUBSCRIBE` before recording the channel's subscriber set, so sockets joining at the "
        "same moment overwrite each other's registration (10 concurrent subscribers leave 1 registered). "
        "The app works around both at startup with the public API: each worker subscribes a private "
        "channel, then the room, and keeps that room subscription drained by one task (one extra queue "
        "hop per message per worker). Without this the stack delivers nothing."
    )
    add(
        "- **socketio**: python-socketio runs each incoming event in its own task (`async_handlers=True`, "
        "the default), so the publisher's messages can be emitted out of order: the *reord* column counts "
        "them. The publishing worker also emits to its own sockets before publishing to Redis."
    )
    add(
        "- **litestar-channels**: receivers use the handler that the plugin generates "
        "(`create_ws_route_handlers=True`), one subscriber with a background send task per socket."
    )
    add("")
    for section in extra:
        add(section)
    if http_text:
        add("## In-process HTTP (`benchmarks/http_asgi.py`)")
        add("")
        add("Both apps called as ASGI callables in one event loop, no server: the framework alone.")
        add("")
        add("```")
        add(http_text.strip())
        add("```")
        add("")
    add("## Versions")
    add("")
    add("Every package in the environment that ran the benchmark (`.bench-venv`):")
    add("")
    versions = meta["versions"]
    add(", ".join(f"{name}=={version}" for name, version in versions.items()))
    add("")
    return "\n".join(out)


def _smoke_notes(meta: dict[str, Any], full: bool, what: str) -> list[str]:
    notes = []
    if not full:
        notes.append(
            f"> **Smoke run** ({what}): these numbers show that the harness works; they are not the benchmark."
        )
    load = meta.get("loadavg_at_start") or meta.get("machine", {}).get("loadavg_at_start")
    if load and load[0] > 1.0:
        notes.append(
            f"> **Busy machine**: load average {load[0]:.2f} at the start (2 cores); rerun on a quiet machine."
        )
    # A blank quoted line between notes keeps them separate paragraphs.
    return [*"\n>\n".join(notes).splitlines(), ""] if notes else []


def connections_section(document: dict[str, Any]) -> str:
    """``connections.py``'s results: many idle connections, one broadcast to all, connect rate."""
    meta = document["meta"]
    settings = meta["settings"]
    limits = meta["kernel_limits"]
    out = ["## Many connections on one box (`benchmarks/connections.py`)", ""]
    capped = limits.get("receivers_capped_from")
    if capped:
        out += [
            f"> **Capped**: {capped:,} receivers were asked for; the open-files limit of this machine "
            f"({limits['nofile_in_force']:,} per process, not raisable by the runner) fits {settings['receivers']:,}.",
            ">",
        ]
    full = (settings["receivers"] >= 50_000 or capped) and settings["rounds"] >= 3
    out += _smoke_notes(meta, full, "fewer receivers or rounds")
    out.append(
        f"{settings['receivers']:,} receivers on 2 workers per stack: FasterAPI served by `fasterapi run --workers 2` "
        "(FasterWorker), the bare ASGI app by gunicorn with `UvicornWorker`, both through one Redis. The load "
        f"generator is `fanout_client.py` in {settings['client_procs']} processes, each connecting from its own "
        "loopback address (127.0.0.2, ...) so that none runs out of ephemeral ports, at most "
        f"{settings['connect_concurrency']} handshakes in flight each. *KiB per connection*: the workers' summed "
        "RSS after every receiver joined the room and the probes stopped, minus before (after 20 warm-up "
        "connections came and went), divided by the receivers. *Connect rate*: receivers divided by the slowest "
        f"client process's connecting time. *Broadcast*: {settings['broadcasts']} broadcasts "
        f"{settings['interval']:g} s apart (after one unmeasured), each to every receiver; latency from the "
        "publisher's send to each "
        "receiver's arrival, over every delivery. *Server CPU per delivery*: the workers' CPU over the broadcasts "
        "(idle upkeep included) divided by the deliveries. Every process the runner starts inherits its "
        "open-files limit, raised to the receivers plus a margin where the runner may raise the hard limit "
        "(`CAP_SYS_RESOURCE`), else to the hard limit (`nofile_in_force` below)."
    )
    out.append("")
    out.append("Limits as found (read, not changed), and the open-files limit the runs had:")
    out.append("")
    out.append("| limit | value |")
    out.append("|---|---|")
    for name, value in limits.items():
        out.append(f"| `{name}` | {value} |")
    out.append("")
    out.append(f"Run started {meta['started']}, finished {meta.get('finished', '?')}: `{meta['command']}`.")
    out.append("")
    out.append(document["summary"]["markdown"].replace("#### ", "### "))
    return "\n".join(out)


def wrk_section(document: dict[str, Any]) -> str:
    """``http_wrk.py``'s results: the three HTTP routes through real servers."""
    meta = document["meta"]
    settings = meta["settings"]
    out = ["## HTTP through a real server (`benchmarks/http_wrk.py`)", ""]
    out += _smoke_notes(meta, settings["rounds"] >= 3 and settings["duration"] >= 10, "short or single round")
    out.append(
        "The in-process harness below times the frameworks alone; this is what a client gets. The same three "
        "routes (and the same 100 other routes registered first) served with 2 workers each: FasterAPI by "
        "`fasterapi run --workers 2`, FastAPI and Litestar by gunicorn with `UvicornWorker` (uvicorn with "
        f"httptools and uvloop under all three). `{meta['wrk']}`, {settings['threads']} thread, "
        f"{settings['connections']} keep-alive connections, {settings['duration']:g} s per route and app after a "
        f"warm-up, medians of {settings['rounds']} round(s) alternating the order. wrk shares the 2 cores "
        "with the server, so requests/s is partly wrk's; *server CPU per request* (the workers' utime+stime "
        "divided by the requests) is the figure that does not depend on who else runs."
    )
    out.append("")
    out.append(
        "Why the ratio is smaller than in-process: a served request also pays for the socket reads and "
        "writes, uvicorn's HTTP parsing (httptools), building the ASGI scope and the response messages, "
        "the same for every framework. That fixed cost is most of FasterAPI's time per request and a "
        "smaller share of the others', so the frameworks' difference is diluted; the in-process ratio is "
        "the difference in framework code alone."
    )
    out.append("")
    out.append(f"Run started {meta['started']}, finished {meta.get('finished', '?')}: `{meta['command']}`.")
    out.append("")
    out.append(document["summary"]["markdown"].replace("#### ", "### "))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fanout", type=Path, default=RESULTS / "fanout.json", help="fanout.py's JSON")
    parser.add_argument("--http", type=Path, default=RESULTS / "http_asgi.txt", help="http_asgi.py's output")
    parser.add_argument("--connections", type=Path, default=RESULTS / "connections.json", help="connections.py's JSON")
    parser.add_argument("--wrk", type=Path, default=RESULTS / "http_wrk.json", help="http_wrk.py's JSON")
    parser.add_argument("--md", type=Path, default=ROOT / "docs" / "benchmarks.md", help="the page to write")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "benchmarks.png", help="the plot to write")
    args = parser.parse_args(argv)
    if not args.fanout.exists():
        raise SystemExit(f"{args.fanout} does not exist: run benchmarks/fanout.py first (or `make bench`)")
    document = json.loads(args.fanout.read_text())
    if "summary" not in document:
        raise SystemExit(f"{args.fanout} has no summary: the run did not finish")
    http_text = args.http.read_text() if args.http.exists() else None
    plot(document, args.png)
    png_name = os.path.relpath(args.png, args.md.parent)
    json_name = os.path.relpath(args.fanout, ROOT)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    extra = [
        section(json.loads(path.read_text()))
        for path, section in ((args.connections, connections_section), (args.wrk, wrk_section))
        if path.exists()
    ]
    args.md.write_text(render(document, http_text, png_name, json_name, extra))
    print(f"wrote {args.md} and {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
