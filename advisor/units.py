"""Parsing of the human-friendly quantities the commands accept."""

from __future__ import annotations

import math
import re

from advisor.errors import InputError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|hours?|d|days?)?\s*$", re.I)
_HOURS_PER_UNIT = {"s": 1 / 3600, "sec": 1 / 3600, "m": 1 / 60, "min": 1 / 60, "h": 1.0, "hr": 1.0,
                   "hour": 1.0, "hours": 1.0, "d": 24.0, "day": 24.0, "days": 24.0}


# A duration is at least a second and at most a century: shorter means nothing can run in it
# (a budget of 1e-7 s planned "0 min", F40), longer overflows the arithmetic after it (F25).
MIN_HOURS = 1 / 3600
MAX_HOURS = 100 * 365 * 24.0


def parse_hours(text: str, option: str = "--budget") -> float:
    """'90m' -> 1.5, '50h' -> 50, '2d' -> 48; a bare number means hours."""
    match = _DURATION.match(text)
    if not match:
        raise InputError(f"{option}: cannot read duration {text[:40]!r} (use e.g. 90m, 50h, 2d)")
    value, unit = float(match.group(1)), (match.group(2) or "h").lower()
    if value <= 0:
        raise InputError(f"{option}: duration must be positive, got {text[:40]!r}")
    return check_hours(value * _HOURS_PER_UNIT[unit], option, text)


def check_hours(hours: float, option: str, text: str | None = None) -> float:
    """`hours` when it lies between a second and a century; else one line naming the option."""
    shown = repr(text[:40]) if text is not None else f"{hours:g} h"
    if not math.isfinite(hours) or hours > MAX_HOURS:
        raise InputError(f"{option}: {shown} is more than a century; give a duration such as 50h or 2d")
    if hours < MIN_HOURS:
        raise InputError(f"{option}: {shown} is under a second; give a duration such as 90m or 50h")
    return hours


def parse_assignments(items: list[str] | None, option: str) -> dict[str, str]:
    """['a=1,b=2', 'c=x'] -> {'a': '1', 'b': '2', 'c': 'x'}."""
    result: dict[str, str] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise InputError(f"{option}: expected key=value, got {part!r}")
            result[key.strip()] = value.strip()
    return result


def format_seconds(seconds: float, up: bool = False) -> str:
    """A duration for people: 0.4s, 45s, 12.5m, 3.2h; `up`: rounded up to 5 seconds, whole
    minutes or hours (a budget to ask for)."""
    seconds = max(0.0, float(seconds))
    if up:
        if seconds < 90:
            return f"{5 * math.ceil(seconds / 5):.0f}s"
        return f"{math.ceil(seconds / 60)}m" if seconds < 3600 else f"{math.ceil(seconds / 3600)}h"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
