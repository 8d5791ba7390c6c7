"""A capacity model for rooms across workers: connections and msg/s in, workers, hosts and Redis shards out.

``docs/scaling.md`` explains it; this module computes it, and checks it with a simulation that
places every member of every room on a worker at random (as a load balancer does), puts every
room's channel in the hash slot Redis Cluster would (``FasterAPI.pubsub.backends.redis_cluster``),
and measures what each worker and each shard then carries.

    python benchmarks/capacity.py                 # the model for the scenarios of docs/scaling.md
    python benchmarks/capacity.py --simulate      # and the simulation that checks it (~10 s)
    python benchmarks/capacity.py --simulate --scale 0.1   # a tenth of every scenario

The model, per second, for rooms of ``m`` members publishing ``r`` messages each on ``W`` workers:

- deliveries ``D = rooms * r * m``; publishes ``P = rooms * r``;
- a room's members sit on ``S(m, W) = W * (1 - (1 - 1/W) ** m)`` distinct workers on average,
  and a message reaches only those (interest-based routing), so workers receive ``P * S``;
- a worker's CPU is ``(D * delivery + P * S * message + P * publish) / W`` µs, which must stay
  under ``utilization`` of its core, its connections under ``max_connections``, its memory
  (``base + connections * conn_kib``) within its host's share;
- a relay shard does one operation per publish plus one per subscribed worker it copies the
  message to: ``P * (1 + S)``, spread over shards by hash slot; shards are added until the
  busiest one (a binomial 3-sigma margin over the mean) stays under ``utilization`` of one
  Redis core. One Redis is one shard; a classic (non-sharded) cluster copies every publish to
  every node, so it has no more capacity than one node.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot  # noqa: E402

from FasterAPI.pubsub.backends.redis_cluster import hash_tag  # noqa: E402

__all__ = ["Costs", "Plan", "Relay", "RoomClass", "Simulation", "Workload", "plan", "simulate"]


@dataclass(frozen=True)
class Costs:
    """What one worker (one process, one core) spends: FasterAPI's measured figures.

    ``delivery_us``: server CPU per delivered message, 2,000 receivers x 50 msg/s
    (docs/benchmarks.md; 5.2 µs at saturation). ``message_us``/``publish_us``: per message a
    worker receives from the relay, and per publish it makes, whatever the members: derived
    from two small ``benchmarks/fanout.py`` runs (2 and 200 receivers) on a shared, busy
    2-core machine, taking both equal: an upper bound. ``conn_kib``: RSS per idle connection (37,000 idle on 2 workers).
    """

    delivery_us: float = 8.2
    message_us: float = 170.0
    publish_us: float = 170.0
    conn_kib: float = 7.7
    worker_base_mib: float = 80.0
    #: The share of its core a worker is planned at (headroom for bursts and reconnect storms).
    utilization: float = 0.5
    #: The most connections one worker holds: a broadcast to all of them is a
    #: ``max_connections * delivery_us`` pause of its event loop (160 ms at 20,000).
    max_connections: int = 20_000
    cores_per_host: int = 16
    host_memory_gib: float = 64.0


@dataclass(frozen=True)
class Relay:
    """One Redis shard: Centrifugo's published ceiling of one Redis instance (one core)."""

    ops_per_s: float = 650_000.0
    utilization: float = 0.5


@dataclass(frozen=True)
class RoomClass:
    """``count`` rooms of ``size`` members, each publishing ``rate`` messages per second."""

    count: int
    size: int
    rate: float


@dataclass(frozen=True)
class Workload:
    """Connections and the rooms they are in (a connection may be in rooms of several classes)."""

    name: str
    connections: int
    rooms: tuple[RoomClass, ...]

    def scaled(self, factor: float) -> Workload:
        """The same shape with ``factor`` times the connections and rooms (sizes and rates kept)."""
        rooms = tuple(replace(room, count=max(1, round(room.count * factor))) for room in self.rooms)
        return Workload(f"{self.name} (x{factor:g})", max(1, round(self.connections * factor)), rooms)

    @property
    def publishes(self) -> float:
        return sum(room.count * room.rate for room in self.rooms)

    @property
    def deliveries(self) -> float:
        return sum(room.count * room.rate * room.size for room in self.rooms)


def interested_workers(size: int, workers: int) -> float:
    """How many distinct workers ``size`` members placed at random on ``workers`` occupy, on average."""
    return workers * (1.0 - (1.0 - 1.0 / workers) ** size)


@dataclass(frozen=True)
class Plan:
    """What the model says a workload needs."""

    workload: Workload
    workers: int
    hosts: int
    shards: int
    #: Per worker, on average.
    connections_per_worker: float
    deliveries_per_worker: float
    cpu_per_worker: float  # cores
    memory_per_worker_mib: float
    #: Relay operations per second (publishes + copies to subscribed workers), all shards.
    relay_ops: float
    #: True when the busiest single room alone exceeds a shard: no number of shards helps.
    hot_room_overflows: bool
    #: What decided the number of workers: "cpu", "connections" or "memory".
    bound_by: str
    #: True when one Redis (one shard) carries the relay traffic within its budget.
    one_redis_fits: bool


def worker_cpu_us(workload: Workload, workers: int, costs: Costs) -> float:
    """Average CPU µs per second of one worker."""
    total = 0.0
    for room in workload.rooms:
        publishes = room.count * room.rate
        total += publishes * room.size * costs.delivery_us
        total += publishes * interested_workers(room.size, workers) * costs.message_us
        total += publishes * costs.publish_us
    return total / workers


def relay_ops(workload: Workload, workers: int) -> float:
    """Operations per second on the relay: each publish, and each copy to a subscribed worker."""
    return sum(room.count * room.rate * (1 + interested_workers(room.size, workers)) for room in workload.rooms)


def _shards_for(workload: Workload, workers: int, relay: Relay) -> int:
    budget = relay.ops_per_s * relay.utilization
    load = relay_ops(workload, workers)
    rooms = sum(room.count for room in workload.rooms)
    shards = 1
    while shards < REDIS_CLUSTER_HASH_SLOTS:
        per_shard = rooms / shards
        # The busiest shard holds about 3 standard deviations more rooms than the mean.
        margin = 1.0 + 3.0 / math.sqrt(per_shard) if per_shard >= 1 else float(shards)
        if load / shards * margin <= budget:
            return shards
        shards += 1
    return shards


def plan(workload: Workload, costs: Costs = Costs(), relay: Relay = Relay()) -> Plan:
    """The fewest workers, hosts and shards that keep every average under its budget."""
    memory_budget_mib = costs.host_memory_gib * 1024 / costs.cores_per_host

    def fits(workers: int) -> str | None:
        if workload.connections / workers > costs.max_connections:
            return "connections"
        if worker_cpu_us(workload, workers, costs) > costs.utilization * 1e6:
            return "cpu"
        if costs.worker_base_mib + workload.connections / workers * costs.conn_kib / 1024 > memory_budget_mib:
            return "memory"
        return None

    low, high = 1, 1
    while fits(high) is not None:
        low, high = high, high * 2
        if high > 10_000_000:
            raise ValueError(f"{workload.name}: no number of workers fits (a single room too busy?)")
    while low < high:  # fits() is monotone in workers: more workers, less each
        middle = (low + high) // 2
        if fits(middle) is None:
            high = middle
        else:
            low = middle + 1
    workers = high
    bound_by = "one worker does" if workers == 1 else (fits(workers - 1) or "cpu")
    budget = relay.ops_per_s * relay.utilization
    hot = max((room.rate * (1 + interested_workers(room.size, workers)) for room in workload.rooms), default=0.0)
    return Plan(
        workload=workload,
        workers=workers,
        hosts=math.ceil(workers / costs.cores_per_host),
        shards=_shards_for(workload, workers, relay),
        connections_per_worker=workload.connections / workers,
        deliveries_per_worker=workload.deliveries / workers,
        cpu_per_worker=worker_cpu_us(workload, workers, costs) / 1e6,
        memory_per_worker_mib=costs.worker_base_mib + workload.connections / workers * costs.conn_kib / 1024,
        relay_ops=relay_ops(workload, workers),
        hot_room_overflows=hot > budget,
        bound_by=bound_by,
        one_redis_fits=relay_ops(workload, workers) <= budget,
    )


# -- the simulation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulation:
    """What a random placement of a workload on a plan's workers and shards gave."""

    plan: Plan
    #: Mean distinct workers per room, per room class (the model's ``S``).
    interested: tuple[float, ...]
    max_cpu_per_worker: float  # cores
    mean_cpu_per_worker: float
    max_connections_per_worker: int
    max_shard_ops: float
    mean_shard_ops: float


def simulate(
    workload: Workload, costs: Costs = Costs(), relay: Relay = Relay(), seed: int = 1, prefix: str = "fasterapi:"
) -> Simulation:
    """Place every member at random on the plan's workers, every room in its real hash slot; measure."""
    chosen = plan(workload, costs, relay)
    rng = random.Random(seed)
    workers, shards = chosen.workers, chosen.shards
    cpu_us = [0.0] * workers
    connections = [0] * workers
    # Slots are split in contiguous ranges, as redis-cli --cluster create does.
    shard_of_slot = [slot * shards // REDIS_CLUSTER_HASH_SLOTS for slot in range(REDIS_CLUSTER_HASH_SLOTS)]
    shard_ops = [0.0] * shards
    interested: list[float] = []
    # Connections land on workers at random, as a load balancer spreads them.
    connection_worker = [rng.randrange(workers) for _ in range(workload.connections)]
    for worker in connection_worker:
        connections[worker] += 1
    for index, room in enumerate(workload.rooms):
        if room.rate == 0:  # rooms nobody publishes to cost nothing but their members' memory
            interested.append(interested_workers(room.size, workers))
            continue
        distinct_total = 0
        for n in range(room.count):
            # Members are connections drawn at random (with replacement: rooms are far smaller
            # than the connection count), so they sit on their connections' workers.
            local: dict[int, int] = {}
            for _ in range(room.size):
                worker = connection_worker[rng.randrange(workload.connections)]
                local[worker] = local.get(worker, 0) + 1
            distinct_total += len(local)
            for worker, count in local.items():
                cpu_us[worker] += room.rate * (count * costs.delivery_us + costs.message_us)
            cpu_us[next(iter(local))] += room.rate * costs.publish_us  # one of its members publishes
            channel = f"{prefix}room:{hash_tag(f'c{index}-{n}')}"
            shard_ops[shard_of_slot[key_slot(channel.encode())]] += room.rate * (1 + len(local))
        interested.append(distinct_total / room.count)
    return Simulation(
        plan=chosen,
        interested=tuple(interested),
        max_cpu_per_worker=max(cpu_us) / 1e6,
        mean_cpu_per_worker=sum(cpu_us) / workers / 1e6,
        max_connections_per_worker=max(connections),
        max_shard_ops=max(shard_ops),
        mean_shard_ops=sum(shard_ops) / shards,
    )


# -- the scenarios of docs/scaling.md ------------------------------------------------------------

SCENARIOS: tuple[Workload, ...] = (
    Workload("10k in 10 rooms of 1,000, 1 msg/s each", 10_000, (RoomClass(10, 1_000, 1.0),)),
    Workload("100k in chats of 10, 0.2 msg/s each", 100_000, (RoomClass(10_000, 10, 0.2),)),
    Workload("1M in 100 rooms of 10k, 1 msg/s each", 1_000_000, (RoomClass(100, 10_000, 1.0),)),
    Workload(
        "1M, Centrifugo's test: a personal room each + groups of 10 at 0.5 msg/s",
        1_000_000,
        (RoomClass(1_000_000, 1, 0.0), RoomClass(100_000, 10, 0.5)),
    ),
    Workload("1M in chats of 50, 0.1 msg/s each", 1_000_000, (RoomClass(20_000, 50, 0.1),)),
    Workload("1M in chats of 10, 1 msg/s each", 1_000_000, (RoomClass(100_000, 10, 1.0),)),
)


def _row(chosen: Plan) -> str:
    w = chosen.workload
    shards = f"{chosen.shards}" + (" (a room overflows one shard)" if chosen.hot_room_overflows else "")
    cells = [
        w.name,
        f"{w.publishes:,.0f}",
        f"{w.deliveries:,.0f}",
        f"{chosen.workers:,} ({chosen.bound_by})",
        f"{chosen.hosts:,}",
        f"{chosen.connections_per_worker:,.0f}",
        f"{chosen.cpu_per_worker:.2f}",
        f"{chosen.relay_ops:,.0f}",
        "yes" if chosen.one_redis_fits else "no",
        shards,
    ]
    return "| " + " | ".join(cells) + " |"


def table(plans: Sequence[Plan]) -> str:
    """The plans as a markdown table (the one in docs/scaling.md)."""
    lines = [
        "| workload | publishes/s | deliveries/s | workers (bound by) | hosts | conns/worker | cores/worker "
        "| relay ops/s | one Redis? | cluster shards |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        *(_row(chosen) for chosen in plans),
    ]
    return "\n".join(lines)


def simulation_table(results: Sequence[Simulation], relay: Relay = Relay()) -> str:
    """Model against simulation, per workload, as a markdown table."""
    budget = relay.ops_per_s * relay.utilization
    lines = [
        "| workload | workers per room S, model / simulated | cores/worker, mean / max "
        f"| relay ops/s per shard, mean / max (budget {budget:,.0f}) |",
        "|---|---|---|---|",
    ]
    for result in results:
        chosen, workload = result.plan, result.plan.workload
        model_s = " ".join(f"{interested_workers(r.size, chosen.workers):.2f}" for r in workload.rooms)
        simulated_s = " ".join(f"{s:.2f}" for s in result.interested)
        lines.append(
            f"| {workload.name} | {model_s} / {simulated_s} "
            f"| {result.mean_cpu_per_worker:.2f} / {result.max_cpu_per_worker:.2f} "
            f"| {result.mean_shard_ops:,.0f} / {result.max_shard_ops:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulate", action="store_true", help="check the model with a random placement")
    parser.add_argument("--scale", type=float, default=1.0, help="scale every scenario's connections and rooms")
    args = parser.parse_args(argv)
    workloads = [w.scaled(args.scale) if args.scale != 1.0 else w for w in SCENARIOS]
    print(table([plan(w) for w in workloads]))
    if args.simulate:
        print()
        print(simulation_table([simulate(w) for w in workloads]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
