"""ClientErrors: every refusal counted, at most one log line per interval, the rest summarized."""

from __future__ import annotations

import asyncio
import logging

import pytest

from FasterAPI.server.errors import REASONS, ClientErrors


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "test.client_errors"]


def test_a_storm_logs_one_line_then_one_summary_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.client_errors")
    clock = Clock()
    errors = ClientErrors(logging.getLogger("test.client_errors"), interval=1.0, clock=clock)
    for n in range(500):
        clock.now = 100.0 + n * 0.01  # 500 errors over 5 s, no event loop: summaries come inline
        errors.report("invalid_utf8" if n % 2 else "bad_frame", "client %d misbehaved", n)
    logged = lines(caplog)
    assert logged[0] == "client 0 misbehaved"
    assert 2 <= len(logged) <= 6, logged
    assert all("more client protocol errors" in line for line in logged[1:])
    assert errors.counts == {"invalid_utf8": 250, "bad_frame": 250}
    # Every error is either its own line or in a summary.
    summarized = sum(int(line.split()[0]) for line in logged[1:])
    assert summarized + 1 + sum(errors._suppressed.values()) == 500


def test_a_lone_error_after_a_quiet_interval_gets_its_own_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.client_errors")
    clock = Clock()
    errors = ClientErrors(logging.getLogger("test.client_errors"), clock=clock)
    errors.report("header_timeout", "first")
    clock.now += 5
    errors.report("header_timeout", "second")
    assert lines(caplog) == ["first", "second"]


def test_with_an_event_loop_the_summary_comes_when_the_interval_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.client_errors")

    async def scenario() -> None:
        errors = ClientErrors(logging.getLogger("test.client_errors"), interval=0.05)
        for _ in range(10):
            errors.report("bad_frame", "one bad frame")
        assert lines(caplog) == ["one bad frame"]
        deadline = asyncio.get_running_loop().time() + 10
        while len(lines(caplog)) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert lines(caplog)[1].startswith("9 more client protocol errors") and "bad_frame 9" in lines(caplog)[1]

    asyncio.run(scenario())


def test_every_reason_is_documented() -> None:
    assert all(REASONS.values())
