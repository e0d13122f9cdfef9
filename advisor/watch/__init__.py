"""advisor.watch: the diagnosis while a run still trains.

`Monitor` is the diagnose pipeline fed one row at a time (no torch needed); the framework
callbacks (advisor.watch.lightning, advisor.watch.hf) are thin adapters on it, and
`advisor watch PATH|-` follows a growing log with it.
"""

from advisor.watch.monitor import Monitor, SkippedValue, WatchEvent, WatchSettings, watch_settings

__all__ = ["Monitor", "SkippedValue", "WatchEvent", "WatchSettings", "watch_settings"]
