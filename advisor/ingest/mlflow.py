"""MLflow file store, read directly (no MLflow library needed): a run folder
`mlruns/<experiment>/<run>/` (its `metrics/` holds one file per metric, a line per logged value:
`timestamp value step`; a key with '/' is a sub-folder) or an experiment folder, whose runs are
read side by side, each named by its `mlflow.runName` tag (else its id).

Values are placed by step; a step logged twice keeps the later value (lines are in log order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advisor.errors import InputError


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / "metrics").is_dir() and (path / "meta.yaml").is_file()


def is_mlflow_folder(path: Path) -> bool:
    """A run folder, or an experiment folder holding run folders."""
    return path.is_dir() and (path / "meta.yaml").is_file()


def _run_name(run: Path) -> str:
    tag = run / "tags" / "mlflow.runName"
    try:
        return tag.read_text(encoding="utf-8").strip() or run.name
    except OSError:
        return run.name


def _metric(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric file, the last value of each step."""
    steps: dict[int, float] = {}
    with file.open("r", encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                value = float(fields[1])
                step = int(fields[2]) if len(fields) > 2 else 0
            except (IndexError, ValueError):
                raise InputError(f"{file}: line {lineno}: expected 'timestamp value step', got {line.strip()!r}") from None
            steps.pop(step, None)  # keep log order, the later value
            steps[step] = value
    order = sorted(steps)
    return np.asarray(order, dtype=np.int64), np.asarray([steps[s] for s in order], dtype=float)


def read_mlflow(path: Path):
    from advisor.ingest.readers import RawLog

    runs = [path] if is_run_folder(path) else sorted(p for p in path.iterdir() if is_run_folder(p))
    if not runs:
        raise InputError(f"{path}: an MLflow folder without runs (run folders hold metrics/ and meta.yaml)")
    series: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
    for i, run in enumerate(runs):
        metrics = run / "metrics"
        for file in sorted(p for p in metrics.rglob("*") if p.is_file()):
            series[(i, file.relative_to(metrics).as_posix())] = _metric(file)
    if not series:
        raise InputError(f"{path}: the MLflow run logged no metrics")
    steps = np.unique(np.concatenate([s for s, _ in series.values()]))
    several = len(runs) > 1
    names = [_run_name(r) for r in runs]
    if len(set(names)) < len(names):
        names = [f"{n} ({r.name[:8]})" for n, r in zip(names, runs)]
    columns: dict[str, np.ndarray] = {"step": steps.astype(float)}
    explicit: dict[str, np.ndarray] = {}
    groups = [(name, {"step": "step"}) for name in names] if several else None
    for (i, key), (s, v) in series.items():
        column = f"{names[i]}/{key}" if several else key
        if column == "step":
            column = "step (metric)"
        values = np.full(len(steps), np.nan)
        where = np.searchsorted(steps, s)
        values[where] = v
        columns[column] = values
        if np.isnan(v).any():
            mask = np.zeros(len(steps), dtype=bool)
            mask[where] = np.isnan(v)
            explicit[column] = mask
        if several:
            groups[i][1][column] = key
    return RawLog("mlflow", columns, len(steps), explicit, records=True, groups=groups, first_row=0)
