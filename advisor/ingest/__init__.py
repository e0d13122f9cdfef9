"""Ingest: any common training-log format -> one tidy RunLog per run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from advisor.ingest.parts import split
from advisor.ingest.readers import FORMATS, read, resolve_path
from advisor.ingest.runlog import RunLog
from advisor.ingest.tidy import tidy, wanted_columns

__all__ = ["FORMATS", "RunLog", "load_run", "load_runs"]


def load_runs(path: str | Path, fmt: str | None = None, overrides: dict[str, str] | None = None,
              step_bins: int = 100, rows_per_epoch_max: int = 2000) -> list[RunLog]:
    """Every run in a log file, in file order: one, or one per part when runs were appended
    (the epoch counter restarts) or logged side by side (W&B exports, 'loss0, loss1')."""
    resolved = resolve_path(Path(path))
    overrides = overrides or {}
    raw = read(resolved, None if fmt in (None, "auto") else fmt,
               wanted=lambda header: wanted_columns(header, overrides, str(resolved)))
    parts = split(raw, str(resolved), overrides)
    runs = [tidy(table, str(resolved), overrides, step_bins, rows_per_epoch_max) for _, table in parts]
    if len(runs) == 1:
        return runs
    return [replace(run, part=i, parts=len(runs), part_name=name)
            for i, (run, (name, _)) in enumerate(zip(runs, parts))]


def load_run(path: str | Path, fmt: str | None = None, overrides: dict[str, str] | None = None,
             step_bins: int = 100, rows_per_epoch_max: int = 2000) -> RunLog:
    """One run: the file's only one, or the last of several (the latest appended)."""
    return load_runs(path, fmt, overrides, step_bins, rows_per_epoch_max)[-1]
