"""Ingest: any common training-log format -> one tidy RunLog per run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from advisor.errors import InputError
from advisor.ingest.mlflow import TrackedRuns, read_tracked
from advisor.ingest.parts import split
from advisor.ingest.readers import FORMATS, read, resolve_path
from advisor.ingest.runlog import RunLog
from advisor.ingest.tidy import tidy, wanted_columns

__all__ = ["FORMATS", "RunLog", "TrackedRuns", "load_run", "load_runs"]


STDIN = "-"  # the path that names standard input
STDIN_NAME = "<stdin>"


def load_runs(path: str | Path | TrackedRuns, fmt: str | None = None, overrides: dict[str, str] | None = None,
              step_bins: int = 100, rows_per_epoch_max: int = 2000) -> list[RunLog]:
    """Every run in a log file, in file order: one, or one per part when runs were appended
    (the epoch counter restarts) or logged side by side (W&B exports, 'loss0, loss1').
    '-' is standard input, read to its end; its format is found from its content."""
    overrides = overrides or {}
    if isinstance(path, TrackedRuns):  # runs on an MLflow tracking store, through its client
        resolved, raw = str(path), read_tracked(path)
    elif str(path) == STDIN:
        return _load_stdin(fmt, overrides, step_bins, rows_per_epoch_max)
    else:
        resolved = resolve_path(Path(path))
        raw = read(resolved, None if fmt in (None, "auto") else fmt,
                   wanted=lambda header: wanted_columns(header, overrides, str(resolved)))
    parts = split(raw, str(resolved), overrides)
    runs = [tidy(table, str(resolved), overrides, step_bins, rows_per_epoch_max) for _, table in parts]
    if len(runs) == 1:
        return runs
    return [replace(run, part=i, parts=len(runs), part_name=name)
            for i, (run, (name, _)) in enumerate(zip(runs, parts))]


def _load_stdin(fmt: str | None, overrides: dict[str, str] | None, step_bins: int,
                rows_per_epoch_max: int) -> list[RunLog]:
    """Standard input spooled to a temporary file (read to the end, never held whole in memory),
    then read like any log; the runs and the messages name it '<stdin>'."""
    import os
    import shutil
    import sys
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="advisor-stdin-")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        try:
            runs = load_runs(tmp, fmt, overrides, step_bins, rows_per_epoch_max)
        except InputError as exc:
            raise InputError(str(exc).replace(tmp, STDIN_NAME)) from None
        return [replace(run, path=STDIN_NAME) for run in runs]
    finally:
        os.unlink(tmp)


def load_run(path: str | Path, fmt: str | None = None, overrides: dict[str, str] | None = None,
             step_bins: int = 100, rows_per_epoch_max: int = 2000) -> RunLog:
    """One run: the file's only one, or the last of several (the latest appended)."""
    return load_runs(path, fmt, overrides, step_bins, rows_per_epoch_max)[-1]
