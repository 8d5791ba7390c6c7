"""The capacity model (benchmarks/capacity.py): its formulas, and a simulation that checks its plans.

The simulation places every member of every room on a worker at random and every room's
channel in its real Redis Cluster hash slot; what each worker and shard then carries must
agree with what the model planned for. The scenarios run at a tenth of their size (the full
size is ``python benchmarks/capacity.py --simulate``, ~15 s).
"""

from __future__ import annotations

import pytest

from benchmarks.capacity import (
    SCENARIOS,
    Costs,
    Relay,
    RoomClass,
    Workload,
    interested_workers,
    main,
    plan,
    simulate,
    table,
)
from tests.servers import REPO_ROOT


def test_interested_workers_has_the_right_limits() -> None:
    assert interested_workers(1, 100) == pytest.approx(1.0)
    assert interested_workers(50, 1) == pytest.approx(1.0)
    assert interested_workers(100_000, 10) == pytest.approx(10.0)  # big rooms reach every worker
    assert interested_workers(3, 1_000_000) == pytest.approx(3.0, rel=1e-5)  # small rooms, many workers


def test_more_load_never_needs_fewer_workers_or_shards() -> None:
    base = Workload("chat", 200_000, (RoomClass(20_000, 10, 0.5),))
    busier = Workload("chat", 200_000, (RoomClass(20_000, 10, 2.0),))
    bigger = Workload("chat", 400_000, (RoomClass(40_000, 10, 0.5),))
    for heavier in (busier, bigger):
        assert plan(heavier).workers >= plan(base).workers
        assert plan(heavier).shards >= plan(base).shards


def test_a_plan_keeps_every_average_within_its_budget() -> None:
    costs, relay = Costs(), Relay()
    for workload in SCENARIOS:
        chosen = plan(workload, costs, relay)
        assert chosen.cpu_per_worker <= costs.utilization + 1e-9
        assert chosen.connections_per_worker <= costs.max_connections
        assert chosen.memory_per_worker_mib <= costs.host_memory_gib * 1024 / costs.cores_per_host
        assert chosen.relay_ops / chosen.shards <= relay.ops_per_s * relay.utilization
        assert chosen.one_redis_fits == (chosen.shards == 1)
        if chosen.workers > 1:  # and one worker fewer would not do
            assert plan(workload).workers == chosen.workers


@pytest.mark.parametrize("workload", [w.scaled(0.1) for w in SCENARIOS], ids=lambda w: w.name)
def test_a_random_placement_fits_the_plan(workload: Workload) -> None:
    costs, relay = Costs(), Relay()
    result = simulate(workload, costs, relay)
    chosen = result.plan
    for room, simulated in zip(workload.rooms, result.interested, strict=True):
        assert simulated == pytest.approx(interested_workers(room.size, chosen.workers), rel=0.03)
    assert result.mean_cpu_per_worker == pytest.approx(chosen.cpu_per_worker, rel=0.03)
    # Random placement: the busiest worker carries a little more than the average, well
    # within the headroom the plan keeps (it plans at half a core).
    assert result.max_cpu_per_worker <= costs.utilization * 1.15
    assert result.max_connections_per_worker <= costs.max_connections * 1.1
    # The busiest shard, rooms placed by their real hash slots, stays within its budget.
    assert result.max_shard_ops <= relay.ops_per_s * relay.utilization


def test_the_table_in_the_docs_is_the_models() -> None:
    scaling = (REPO_ROOT / "docs" / "scaling.md").read_text()
    assert table([plan(w) for w in SCENARIOS]) in scaling


def test_the_command_line_prints_both_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--simulate", "--scale", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "| workload | publishes/s |" in out and "model / simulated" in out
