"""Settings: arguments first, then ``FASTERAPI_*`` variables, then the defaults; bad values named."""

from __future__ import annotations

import pytest

from FasterAPI import Faster
from FasterAPI.config import HubConfig, ServerConfig


def test_write_delay_defaults_to_zero_and_comes_from_an_argument_or_the_environment() -> None:
    assert HubConfig.load({}, environ={}).write_delay == 0.0
    assert HubConfig.load({}, environ={"FASTERAPI_WRITE_DELAY": "0.005"}).write_delay == 0.005
    assert HubConfig.load({"write_delay": 0.01}, environ={"FASTERAPI_WRITE_DELAY": "0.005"}).write_delay == 0.01


def test_faster_takes_write_delay() -> None:
    assert Faster(write_delay=0.005).hub.config.write_delay == 0.005


@pytest.mark.parametrize("value", ["-0.001", "2", "soon"])
def test_a_bad_write_delay_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="write_delay"):
        HubConfig.load({}, environ={"FASTERAPI_WRITE_DELAY": value})


def test_header_timeout_defaults_to_ten_seconds_and_comes_from_the_environment() -> None:
    assert ServerConfig.load({}, environ={}).header_timeout == 10.0
    assert ServerConfig.load({}, environ={"FASTERAPI_HEADER_TIMEOUT": "1.5"}).header_timeout == 1.5
    with pytest.raises(ValueError, match="header_timeout"):
        ServerConfig.load({}, environ={"FASTERAPI_HEADER_TIMEOUT": "0"})
