"""What one epoch of a logged run cost, from the timings the log itself holds (`plan --from`).

`advisor plan` needs the time of one trial; a user who has a training log often has it already:

- Hugging Face `trainer_state.json`: the closing record's `train_runtime` (seconds) over its
  `epoch` (the epochs trained);
- a table with an epoch column (Ultralytics `results.csv`, Lightning / Keras CSV loggers,
  W&B exports, JSON records) and a time column: cumulative seconds (`time`, `elapsed`,
  `_runtime` ...), wall-clock stamps (`timestamp`, `_timestamp`, `wall_time`: seconds since 1970)
  or the seconds of each epoch (`epoch_time`, `duration` ...).

Formats whose `time` is seconds per iteration (mmdetection, MMEngine, detectron2) and logs
without an epoch column give no figure: the plan then states the trial time it assumed.
The readers of advisor.ingest read the file (bounded, every encoding they know); this module
only does the arithmetic on their columns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel

CUMULATIVE = ("time", "elapsed", "elapsed_time", "elapsed_s", "runtime", "_runtime", "train_time",
              "total_time", "relative_time", "time_elapsed", "wall_sec")
STAMPS = ("timestamp", "_timestamp", "wall_time", "walltime", "unix_time")
PER_EPOCH = ("epoch_time", "epoch_duration", "duration", "time_per_epoch", "epoch_seconds",
             "epoch_time_s", "epoch_secs", "seconds")
PER_ITERATION_FORMATS = ("mmdet", "mmengine", "detectron2")


class LoggedTime(BaseModel):
    seconds_per_epoch: float
    epochs: int                # epochs the logged run trained
    source: str                # what was read: "train_runtime 47.6 s over 30 epochs"


def logged_time(path: str | Path) -> LoggedTime | None:
    """Seconds per epoch of the run in `path` (a log file or a run folder), or None when the
    log holds no timing advisor can read."""
    from advisor.errors import InputError
    from advisor.ingest.readers import read, resolve_path, sniff

    try:
        p = resolve_path(Path(path))
        if p.is_dir() or "tfevents" in p.name:
            return None  # TensorBoard / MLflow folders: scalars only, no wall time kept
        fmt, _ = sniff(p)
        if fmt == "hf":
            return _hf(p)
        if fmt in PER_ITERATION_FORMATS or fmt in ("text", "notebook"):
            return None
        raw = read(p, None)
    except (InputError, OSError, ValueError):
        return None
    return _table(raw.columns, p.name)


def _hf(path: Path) -> LoggedTime | None:
    from advisor.inputs import load_json

    try:
        state = load_json(path, "training log")
    except Exception:
        return None
    history = state.get("log_history") if isinstance(state, dict) else None
    for rec in reversed(history if isinstance(history, list) else []):
        if not isinstance(rec, dict) or "train_runtime" not in rec:
            continue
        runtime, epoch = _number(rec.get("train_runtime")), _number(rec.get("epoch", state.get("epoch")))
        if runtime and epoch and runtime > 0 and epoch > 0:
            return LoggedTime(seconds_per_epoch=runtime / epoch, epochs=max(1, round(epoch)),
                              source=f"{path.name}: train_runtime {runtime:.4g} s over {epoch:g} epochs")
    return None


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _floats(values: np.ndarray) -> np.ndarray | None:
    if values.dtype.kind in "iuf":
        return values.astype(float)
    try:
        return np.array([float(v) if v is not None and str(v).strip() != "" else np.nan for v in values])
    except (TypeError, ValueError):
        return None


def _table(columns: dict[str, np.ndarray], name: str) -> LoggedTime | None:
    from advisor.ingest.roles import normalize

    by_name = {normalize(c): c for c in columns}
    epoch_col = next((by_name[k] for k in ("epoch", "epochs") if k in by_name), None)
    if epoch_col is None:
        return None
    epochs = _floats(columns[epoch_col])
    if epochs is None:
        return None
    for kind, names in (("per_epoch", PER_EPOCH), ("cumulative", CUMULATIVE), ("stamp", STAMPS)):
        for key in names:
            if key not in by_name:
                continue
            times = _floats(columns[by_name[key]])
            if times is None:
                continue
            ok = np.isfinite(times) & np.isfinite(epochs)
            if ok.sum() < (1 if kind == "per_epoch" else 2):
                continue
            e, t = epochs[ok], times[ok]
            found = _per_epoch(kind, e, t)
            if found is None:
                continue
            seconds, n = found
            col = by_name[key]
            what = {"per_epoch": "seconds per epoch", "cumulative": "cumulative seconds",
                    "stamp": "wall-clock stamps"}[kind]
            return LoggedTime(seconds_per_epoch=seconds, epochs=n,
                              source=f"{name}: column '{col}' ({what}), {seconds:.4g} s per epoch over {n} epochs")
    return None


def _per_epoch(kind: str, e: np.ndarray, t: np.ndarray) -> tuple[float, int] | None:
    distinct = np.unique(e)
    n = len(distinct)
    if kind == "per_epoch":
        last = np.array([t[e == v][-1] for v in distinct])  # the epoch's own figure, logged once or last
        if np.any(last <= 0):
            return None
        return float(np.median(last)), n
    ends = np.array([t[e == v].max() for v in distinct])
    if n < 2 or np.any(np.diff(ends) < 0):
        return None  # not cumulative: per-iteration times or restarts, nothing safe to read
    if kind == "stamp" and ends[0] < 1e8:
        return None  # not seconds since 1970
    if kind == "cumulative" and ends[0] > 1e8:
        return None  # a time stamp under a cumulative name
    span = float(ends[-1] - ends[0]) / float(distinct[-1] - distinct[0])
    return (span, n) if span > 0 else None
