"""Following a log while it grows: a file or run folder re-read when it changes, or standard
input passed through and spooled. Each read is ingest's own (load_runs), judged by a Monitor:
the findings are those `diagnose` gives on the log as it stands.

Re-reading the whole log is what keeps it the same as `diagnose`; its cost is bounded by
reading again only when the log changed, and no sooner than a few times the last read took.
"""

from __future__ import annotations

import os
import select
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from advisor.errors import InputError
from advisor.watch.monitor import Monitor, WatchEvent

STDIN = "-"
STDIN_NAME = "<stdin>"
_BACKOFF = 4.0  # the next read waits at least this many times what the last one took


class Source:
    """A log that grows: read() gives its runs now, signature() changes when it did."""

    name: str

    def signature(self):  # pragma: no cover - interface
        raise NotImplementedError

    def read(self):  # pragma: no cover - interface
        raise NotImplementedError

    def first_epoch(self, run) -> bool:
        """Whether diagnose read `run` row by row, its log still in its first epoch (the raw
        table is read again only when the RunLog leaves it open)."""
        from advisor.ingest.parts import split
        from advisor.ingest.readers import read

        from advisor.watch.monitor import may_be_first_epoch, rows_are_periods

        if not may_be_first_epoch(run):
            return False
        try:
            parts = split(read(Path(self.file), self.fmt), self.file, self.overrides)
        except InputError:
            return False
        return rows_are_periods(parts[-1][1], run)


class PathSource(Source):
    """A file, or a run folder (Lightning version folder, TensorBoard or MLflow run)."""

    def __init__(self, path: Path, fmt: str | None, overrides: dict[str, str], analysis: dict[str, float]):
        from advisor.ingest.readers import resolve_path, sniff

        self.name = str(path)
        self.fmt, self.overrides, self.analysis = fmt, overrides, analysis
        self.path = resolve_path(path)  # a missing file, a FIFO, a folder without a log: refused here
        self.file = str(self.path)
        if self.path.is_file() and self.path.stat().st_size and fmt in (None, "auto"):
            try:
                sniff(self.path)  # binary data or another encoding will not become a log by growing
            except InputError as exc:
                if "file is empty" not in str(exc):
                    raise

    def signature(self):
        try:
            if self.path.is_dir():
                return tuple(sorted((str(p), st.st_size, st.st_mtime_ns) for p in self.path.rglob("*")
                                    if p.is_file() for st in [p.stat()]))
            st = self.path.stat()
            return st.st_size, st.st_mtime_ns
        except OSError:  # a file being replaced (HF writes trainer_state.json anew): look again
            return None

    def read(self):
        from advisor.ingest import load_runs

        return load_runs(self.path, self.fmt, self.overrides, int(self.analysis["step_bins"]),
                         int(self.analysis["rows_per_epoch_max"]))


class SpoolSource(Source):
    """Standard input, as spooled so far to a temporary file."""

    name = STDIN_NAME

    def __init__(self, fmt: str | None, overrides: dict[str, str], analysis: dict[str, float]):
        fd, self.tmp = tempfile.mkstemp(prefix="advisor-watch-")
        self.file = self.tmp
        self.out = os.fdopen(fd, "wb")
        self.fmt, self.overrides, self.analysis = fmt, overrides, analysis
        self.size = 0

    def append(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()
        self.size += len(data)

    def signature(self):
        return self.size

    def read(self):
        from dataclasses import replace

        from advisor.ingest import load_runs

        if not self.size:
            raise InputError(f"{STDIN_NAME}: nothing read yet")
        try:
            runs = load_runs(self.tmp, self.fmt, self.overrides, int(self.analysis["step_bins"]),
                             int(self.analysis["rows_per_epoch_max"]))
        except InputError as exc:
            raise InputError(str(exc).replace(self.tmp, STDIN_NAME)) from None
        return [replace(run, path=STDIN_NAME) for run in runs]

    def close(self) -> None:
        self.out.close()
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


class Follower:
    """Judges a Source when it changed, no sooner than `interval` seconds (or a few times what
    the last read took) after the last read. A read that fails while the log is still being
    written (a half-written JSON, a header without rows yet) is waited out: `pending` holds it."""

    def __init__(self, source: Source, monitor: Monitor, interval: float):
        self.source, self.monitor, self.interval = source, monitor, interval
        self.seen = None
        self.pending: Exception | None = None
        self.next_read = 0.0
        self.judged = False

    def due(self, now: float) -> bool:
        return now >= self.next_read and self.source.signature() != self.seen

    def judge(self, final: bool = False) -> list[WatchEvent]:
        """Read the source as it is now and judge it; final: the log is complete."""
        signature = self.source.signature()
        if signature == self.seen and not final:
            return []
        start = time.monotonic()
        try:
            runs = self.source.read()
        except Exception as exc:  # noqa: BLE001 - a log caught mid-write; raised if it stays so
            self.pending = exc
            self.seen = signature
            self.next_read = time.monotonic() + max(self.interval, _BACKOFF * (time.monotonic() - start))
            return []
        self.pending = None
        self.seen = signature
        self.judged = True
        run = runs[-1]
        only = self.monitor.settings.announce.first_epoch if self.source.first_epoch(run) else None
        events = self.monitor.judge_run(run, len(runs) - 1, final, only)
        self.next_read = time.monotonic() + max(self.interval, _BACKOFF * (time.monotonic() - start))
        return events


def wait_for_log(path: Path, idle_timeout: float | None, interval: float, waiting: Callable[[str], None]) -> None:
    """Watch started before the training wrote its log: wait for the file (or the log inside a
    run folder) to appear, as long as the folder it will be in exists (a mistyped folder is an
    error at once) and no longer than --idle-timeout."""
    from advisor.ingest.readers import resolve_path

    folder = path if path.is_dir() else path.parent
    started, said = time.monotonic(), False
    while True:
        try:
            resolve_path(path)
            return
        except InputError:
            if not folder.is_dir() or (path.exists() and not path.is_dir()):
                raise  # nothing will appear there, or the file exists and is not a log (a FIFO ...)
            if idle_timeout is not None and time.monotonic() - started >= idle_timeout:
                raise InputError(f"{path}: no training log appeared within --idle-timeout "
                                 f"{idle_timeout:g} s") from None
        if not said:
            waiting("no log there yet (the training has not written it; Ctrl-C to stop)")
            said = True
        time.sleep(min(interval, 0.5))


def follow_path(follower: Follower, emit: Callable[[list[WatchEvent]], bool], idle_timeout: float | None,
                waiting: Callable[[str], None]) -> None:
    """Poll a file or folder until emit() says stop (a finding at --fail-on) or it has not changed
    for idle_timeout seconds; then the log is taken as complete and judged once more."""
    last_change = time.monotonic()
    last_seen = follower.source.signature()
    said = None
    while True:
        now = time.monotonic()
        signature = follower.source.signature()
        if signature != last_seen:  # growing, whether or not a read is due yet
            last_seen, last_change = signature, now
        if follower.due(now):
            if emit(follower.judge()):
                return
            if follower.pending is not None and str(follower.pending) != said:
                said = str(follower.pending)
                waiting(said)
        elif idle_timeout is not None and now - last_change >= idle_timeout:
            break
        time.sleep(min(follower.interval, 0.2) if idle_timeout is None else
                   max(0.01, min(follower.interval, 0.2, idle_timeout - (now - last_change))))
    _finish(follower, emit)


def follow_stdin(follower: Follower, source: SpoolSource, passthrough, emit: Callable[[list[WatchEvent]], bool],
                 idle_timeout: float | None) -> None:
    """Read standard input to its end (or until idle_timeout seconds pass without data), each
    block passed through unchanged (passthrough: a binary stream, or None) and spooled; judged
    when the input changed and a read is due, and once more at the end."""
    fd = sys.stdin.fileno()
    last_data = time.monotonic()
    while True:
        now = time.monotonic()
        wait = follower.interval if idle_timeout is None else min(follower.interval,
                                                                  max(0.0, idle_timeout - (now - last_data)))
        ready, _, _ = select.select([fd], [], [], wait)
        if ready:
            data = os.read(fd, 1 << 16)
            if not data:
                break  # the end of the pipe: the run is over
            if passthrough is not None:
                passthrough.write(data)
                passthrough.flush()
            source.append(data)
            last_data = time.monotonic()
        elif idle_timeout is not None and time.monotonic() - last_data >= idle_timeout:
            break
        if follower.due(time.monotonic()) and emit(follower.judge()):
            return
    _finish(follower, emit)


def _finish(follower: Follower, emit: Callable[[list[WatchEvent]], bool]) -> None:
    """The log is complete: judged as `diagnose` judges it; a log that never could be read is
    an error naming it (exit 2)."""
    events = follower.judge(final=True)
    if follower.pending is not None:
        if not follower.judged:
            raise follower.pending
        # the last read failed (a file cut mid-write), an earlier one did not: that one is final
        mon = follower.monitor
        events = mon.judge_run(mon._run, mon._tracker.part, final=True)
    emit(events)
