"""From a raw log to a RunLog: roles chosen, cells made numeric, steps grouped into epochs.

Works on plain numpy columns: a million-row per-step log is reduced without copying it whole.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from advisor.errors import InputError
from advisor.ingest.parts import column_groups, filled
from advisor.ingest.readers import PHASE_COLUMN, RawLog, numeric_column
from advisor.ingest.roles import find_roles, higher_is_better, is_fraction_like, step_column_for
from advisor.ingest.runlog import RunLog

_VALUE_ROLES = ("train_loss", "val_loss", "train_metric", "val_metric", "lr", "grad_norm")
_RESUMES_MAX = 100  # a counter that goes back more often than this is disorder, not resumes


def wanted_columns(header: list[str], overrides: dict[str, str], path: str) -> list[str]:
    """The columns a run needs: one per role, a per-step twin, and every loss (to sum them);
    for runs side by side, those of each run."""
    groups = None if overrides else column_groups(header)
    wanted: set[str] = set()
    for cols in [c for _, c in groups] if groups else [{c: c for c in header}]:
        names = list(cols.values())
        roles = find_roles(names, overrides, path)
        needed = set(roles.values()) | {c for c in names if c.strip().endswith("loss") or PHASE_COLUMN.match(c)}
        twin = step_column_for(roles["train_loss"], names) if "train_loss" in roles else None
        if twin:
            needed.add(twin)
        wanted |= {c for c, name in cols.items() if name in needed}
    return [c for c in header if c in wanted] or header


def tidy(raw: RawLog, path: str, overrides: dict[str, str], step_bins: int,
         rows_per_epoch_max: int) -> RunLog:
    if raw.n_rows == 0:
        raise InputError(f"{path}: header only, no data rows")
    names = list(raw.columns)
    roles = find_roles(names, overrides, path)
    if not {"train_loss", "val_loss", "val_metric"} & set(roles):  # a metric-only log is judged on its metric
        raise InputError(f"{path}: no loss or validation metric column found among {', '.join(names[:15])}"
                         f"{' ...' if len(names) > 15 else ''}; name one with --map train_loss=COLUMN")

    data: dict[str, np.ndarray] = {}
    nan_rows: dict[str, np.ndarray] = {}  # role -> rows where a NaN was written
    step_twin = step_column_for(roles["train_loss"], names) if "train_loss" in roles else None
    for role, col in [*roles.items(), *([("train_loss_step", step_twin)] if step_twin else [])]:
        data[role], explicit = numeric_column(raw, col, path)
        if explicit is not None and explicit.any() and role in ("train_loss", "val_loss", "train_loss_step"):
            nan_rows[role] = explicit

    # Loops that validate every k epochs write NaN in between (to_csv(na_rep='nan')): when the
    # training loss stays finite and a finite validation value follows a NaN, the NaNs are
    # missing values, not divergence (a validation loss NaN to the end still is). Written NaN in
    # every row beside a finite training loss is a validation loss never computed (Ultralytics
    # classify runs): no validation loss.
    if "val_loss" in nan_rows and "train_loss" in data and "train_loss" not in nan_rows \
            and not np.isinf(data["train_loss"]).any():
        finite = np.flatnonzero(np.isfinite(data["val_loss"]))
        if not len(finite):
            del data["val_loss"], roles["val_loss"], nan_rows["val_loss"]
        elif nan_rows["val_loss"][: finite[-1]].any():
            del nan_rows["val_loss"]

    for role in _VALUE_ROLES:
        if role in data and np.isnan(data[role]).all() and role not in nan_rows:
            if role in ("train_loss", "val_loss") or (role == "val_metric" and not {"train_loss", "val_loss"} & set(data)):
                raise InputError(f"{path}: column '{roles[role]}' has no values")  # nothing left to judge
            del data[role], roles[role]

    metric, scale = roles.get("val_metric"), 1.0
    if metric and "val_metric" in data:
        finite = data["val_metric"][np.isfinite(data["val_metric"])]
        if is_fraction_like(metric) and len(finite) and 1.5 < finite.max() <= 100.0:
            scale = 0.01  # a percent metric (detectron2, mmdetection) brought to 0-1
            for role in ("val_metric", "train_metric"):
                if role in data:
                    data[role] = data[role] * scale

    for role in ("epoch", "step"):  # a position on the time axis must be a finite number
        if role in data:
            data[role] = np.where(np.isfinite(data[role]), data[role], np.nan)
            if np.isnan(data[role]).all():
                del data[role]
    rows = _time_order(data["epoch"] if "epoch" in data else data.get("step"))
    if rows is not None:
        data = {k: v[rows] for k, v in data.items()}
        nan_rows = {k: v[rows] for k, v in nan_rows.items()}
    n = len(next(iter(data.values())))  # rows left after a resume
    key = _epoch_key(data, nan_rows, n, step_bins, rows_per_epoch_max)
    epochs, steps = _group(data, key, nan_rows)
    return RunLog(path=path, format=raw.format, epochs=epochs, steps=steps, columns=roles,
                  metric=metric, higher_is_better=higher_is_better(metric) if metric else None,
                  metric_scale=scale)


def _time_order(counter: np.ndarray | None) -> np.ndarray | None:
    """The rows to keep, in time order, or None when the log is in order already.

    A resumed run logs an epoch range again (CSVLogger(append=True) after loading a checkpoint):
    the rows logged before the resume for the epochs it repeats are dropped, the latest count.
    Rows out of order (a log sorted in a spreadsheet, an evaluation record written late) are
    sorted by epoch, or by step."""
    if counter is None:
        return None
    c = filled(counter)
    back = np.flatnonzero(c[1:] < c[:-1]) + 1
    if not len(back):
        return None
    keep = np.ones(len(c), dtype=bool)
    if len(back) <= _RESUMES_MAX:
        peak = np.maximum.accumulate(c)
        for b, stop in zip(back, [*back[1:], len(c)]):
            # a resume logs several epochs again and carries on past where it was; a record
            # out of place, or a shuffled stretch, is only sorted
            again = c[b:stop]
            if again.max() > peak[b - 1] and np.count_nonzero(again <= peak[b - 1]) >= 2:
                keep[:b] &= c[:b] < c[b]
    rows = np.flatnonzero(keep)
    return rows[np.argsort(c[rows], kind="stable")]


def _evaluations(data: dict[str, np.ndarray], nan_rows: dict, n: int) -> np.ndarray | None:
    """The rows that hold an evaluation (validation loss or metric), None without validation."""
    val = [data[c] for c in ("val_loss", "val_metric") if c in data]
    if not val:
        return None
    evaluated = np.any([~np.isnan(v) for v in val], axis=0) | nan_rows.get("val_loss", False)
    if "step" in data:  # the same evaluation written twice is one evaluation
        steps = data["step"]
        repeat = np.zeros(n, dtype=bool)
        idx = np.flatnonzero(evaluated)
        repeat[idx[1:]] = steps[idx[1:]] == steps[idx[:-1]]
        evaluated &= ~repeat
    return evaluated


def _closed_by(evaluated: np.ndarray) -> np.ndarray:
    """Each row's period when each evaluation closes one (the rows after the last: one more)."""
    return np.concatenate([[0], np.cumsum(evaluated)[:-1]]).astype(float)


def _epoch_key(data: dict[str, np.ndarray], nan_rows: dict, n: int, step_bins: int,
               rows_per_epoch_max: int) -> np.ndarray:
    """The period each row belongs to: its epoch, or the evaluation that closes it."""
    evaluated = _evaluations(data, nan_rows, n)
    n_evals = 0 if evaluated is None else int(evaluated.sum())
    if "epoch" in data:
        epoch = filled(data["epoch"])
        if np.any(np.abs(epoch - np.round(epoch)) > 1e-9):  # fractional epochs (HF): 0.25 is in epoch 1
            epoch = np.maximum(np.ceil(epoch - 1e-9), 1.0)
        n_epochs = 1 + np.count_nonzero(np.diff(epoch))  # the rows are in epoch order by now
        # evaluations more often than epochs (HF eval_steps, a run shorter than an epoch): each
        # evaluation closes a period, so 20 evaluations in one epoch are 20 points, not one
        if n_epochs < n_evals <= rows_per_epoch_max:
            return _closed_by(evaluated)
        if n_epochs >= 2 or n_evals:
            return epoch
        # less than two epochs and no evaluation: the logged rows are the periods (below)
    elif n_evals:
        trained = ~np.isnan(data["train_loss"]) if "train_loss" in data else np.zeros(n, dtype=bool)
        # evaluations on rows of their own, between training rows: each closes an epoch
        if n_evals < n / 2 or (evaluated & trained).sum() < n_evals / 2:
            return _closed_by(evaluated)
    if n <= rows_per_epoch_max:
        return np.arange(n, dtype=float)
    return np.floor(np.arange(n) * step_bins / n)


def _reduce(x: np.ndarray, starts: np.ndarray, how: str) -> np.ndarray:
    """Per-epoch reduction of a column sorted by epoch: NaN-skipping mean, or last logged value."""
    valid = ~np.isnan(x)
    if how == "mean":
        counts = np.add.reduceat(valid, starts)
        sums = np.add.reduceat(np.where(valid, x, 0.0), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    last = np.maximum.reduceat(np.where(valid, np.arange(len(x)), -1), starts)
    return np.where(last >= 0, x[np.maximum(last, 0)], np.nan)


def _group(data: dict[str, np.ndarray], key: np.ndarray, nan_rows: dict
           ) -> tuple[pd.DataFrame, dict[str, np.ndarray] | None]:
    values = [r for r in _VALUE_ROLES if r in data]
    # A row whose loss was logged as NaN or inf: the epoch it belongs to went non-finite.
    row_bad = np.zeros(len(key), dtype=bool)
    for role in ("train_loss", "val_loss", "train_loss_step"):
        if role in data:
            row_bad |= np.isinf(data[role])
    for mask in nan_rows.values():
        row_bad |= mask
    steps = None
    if len(np.unique(key)) == len(key):
        epochs = pd.DataFrame({r: data[r] for r in values}, index=key)
        epochs["nonfinite"] = row_bad
    else:
        # logs are written in time order; sort (a copy) only when they are not
        order = slice(None) if np.all(np.diff(key) >= 0) else np.argsort(key, kind="stable")
        k = key[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(k)) + 1])
        # validation values and the lr are read at the end of an epoch; losses are averaged over it
        how = {"val_loss": "last", "val_metric": "last", "lr": "last"}
        columns = {r: _reduce(data[r][order], starts, how.get(r, "mean")) for r in values}
        columns["nonfinite"] = np.logical_or.reduceat(row_bad[order], starts)
        epochs = pd.DataFrame(columns, index=k[starts])
        step_loss = "train_loss_step" if "train_loss_step" in data else "train_loss"
        if step_loss in data:
            logged = ~np.isnan(data[step_loss]) | nan_rows.get(step_loss, False)
            if logged.sum() > len(epochs):
                every = bool(logged.all())  # a dense per-step log: the columns as they are, no copy
                steps = {name: data[src] if every else data[src][logged] for name, src in
                         (("step", "step"), ("train_loss", step_loss), ("lr", "lr"), ("grad_norm", "grad_norm"))
                         if src in data}
    epochs.index.name = "epoch"
    # Rows that only carried an lr or a step (Lightning's LearningRateMonitor) make no epoch.
    measured = [c for c in values if c != "lr"]
    keep = epochs[measured].notna().any(axis=1) | epochs["nonfinite"]
    if not keep.all():
        epochs = epochs[keep]
    return epochs, steps
