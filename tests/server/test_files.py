"""raise_open_file_limit: the soft limit goes up to the hard one, and says so."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from FasterAPI.server.files import FileLimit, raise_open_file_limit


@pytest.fixture
def restore_limit() -> Iterator[None]:
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_the_soft_limit_is_raised_to_the_hard_limit(restore_limit: None) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard limit here ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    limit = raise_open_file_limit()
    assert limit is not None and limit.before == 256 and limit.soft > 256
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == limit.soft
    assert str(limit).startswith(f"open file limit: soft 256 raised to {limit.soft}, hard ")


def test_a_second_call_changes_nothing(restore_limit: None) -> None:
    first = raise_open_file_limit()
    second = raise_open_file_limit()
    assert first is not None and second is not None
    assert second.before == second.soft == first.soft
    assert "raised" not in str(second)


def test_a_failure_is_reported_not_raised() -> None:
    assert "could not raise" in str(FileLimit(1024, 1024, 4096, error="Operation not permitted"))
