"""A short soak (``benchmarks/soak.py``): 100 connections with churn and broadcasts for ~10 s.

Two gunicorn workers (``FasterWorker``, the deploy default) on their own redis-server. Clients
connected for the whole window must lose nothing; the workers' memory must not run away.
"""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.soak import server, soak

pytestmark = pytest.mark.timeout(90)

GROWTH_BOUND_MB = 50


def test_short_soak_loses_nothing_for_stable_clients() -> None:
    with server("redis", workers=2) as running:
        result = asyncio.run(
            soak(running.ws_url, running.base_url, connections=100, seconds=10, rooms=5, rate=40, churn=0.3)
        )
    print("\n" + result.report())
    assert result.stable == 70 and len(result.rss_mb) == 2
    assert result.published > 300 and result.refused == 0
    assert result.churn_cycles > 100 and result.churn_failures == 0
    assert result.expected > 0
    assert (result.lost, result.duplicated, result.reordered, result.stable_closed) == (0, 0, 0, 0)
    assert result.max_growth_mb < GROWTH_BOUND_MB
