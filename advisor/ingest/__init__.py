"""Ingest: any common training-log format -> one tidy RunLog per run."""

from __future__ import annotations

from pathlib import Path

from advisor.ingest.readers import FORMATS, read, resolve_path
from advisor.ingest.runlog import RunLog
from advisor.ingest.tidy import tidy, wanted_columns

__all__ = ["FORMATS", "RunLog", "load_run"]


def load_run(path: str | Path, fmt: str | None = None, overrides: dict[str, str] | None = None,
             step_bins: int = 100, rows_per_epoch_max: int = 2000) -> RunLog:
    resolved = resolve_path(Path(path))
    overrides = overrides or {}
    raw = read(resolved, None if fmt in (None, "auto") else fmt,
               wanted=lambda header: wanted_columns(header, overrides, str(resolved)))
    return tidy(raw, str(resolved), overrides, step_bins, rows_per_epoch_max)
