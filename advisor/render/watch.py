"""The lines `advisor watch` and Monitor.report() print for an event."""

from __future__ import annotations

from advisor.watch.monitor import WatchEvent

_VERB = {"new": "new", "changed": "now", "cleared": "cleared"}


def event_line(e: WatchEvent) -> str:
    """'epoch 4: new ERROR D101 [diverged] The loss became NaN ...' (cleared: no message)."""
    label = f" [{e.label}]" if e.label else ""
    where = f"epoch {e.epoch}" if e.epoch is not None else "start"
    if e.event == "cleared":
        return f"{where}: cleared {e.code}{label}"
    return f"{where}: {_VERB[e.event]} {e.severity.upper()} {e.code}{label} {e.message}"
