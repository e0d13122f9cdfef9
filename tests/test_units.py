"""Durations as advisor prints them: short runs keep a decimal (a 0.4 s training is not "0s"),
and a budget to ask for is rounded up to something a user types."""

import pytest

from advisor.units import format_seconds


@pytest.mark.parametrize("seconds, up, text", [
    (0.44, False, "0.4s"), (9.94, False, "9.9s"), (45.2, False, "45s"), (750, False, "12.5m"),
    (11520, False, "3.2h"), (12.3, True, "15s"), (15.0, True, "15s"), (89, True, "90s"), (95, True, "2m"),
    (3700, True, "2h"),
])
def test_format_seconds(seconds, up, text):
    assert format_seconds(seconds, up=up) == text
