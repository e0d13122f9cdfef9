"""From a raw table to a RunLog: roles chosen, cells made numeric, steps grouped into epochs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from advisor.errors import InputError
from advisor.ingest.readers import RawLog
from advisor.ingest.roles import (find_roles, higher_is_better, is_fraction_like, normalize,
                                  step_column_for)
from advisor.ingest.runlog import RunLog

_VALUE_ROLES = ("train_loss", "val_loss", "train_metric", "val_metric", "lr", "grad_norm")


def _add_total_losses(table: pd.DataFrame) -> None:
    """Ultralytics logs several losses per split (box, cls, dfl): their sum is the loss."""
    for split in ("train", "val"):
        parts = [c for c in table.columns if str(c).startswith(f"{split}/") and str(c).endswith("loss")]
        if len(parts) > 1 and f"{split}/loss" not in table.columns:
            table[f"{split}/loss"] = table[parts].apply(pd.to_numeric, errors="coerce").sum(
                axis=1, min_count=len(parts))


def _numeric(raw: RawLog, col: str, path: str) -> pd.Series:
    series = raw.table[col]
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        text = series[bad].astype(str).str.strip().str.lower()
        real_bad = ~text.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity", "", "none", "null"])
        if real_bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[np.flatnonzero(real_bad.to_numpy())[0]])
            row = pos + 1 + raw.header_lines
            where = f"row {row}" if raw.format not in ("hf", "detectron2", "mmdet", "jsonl", "json") \
                else f"record {pos + 1}"
            raise InputError(f"{path}: {where}, column '{col}': {series.iloc[pos]!r} is not a number")
        values = pd.to_numeric(text.replace({"infinity": "inf", "-infinity": "-inf", "+inf": "inf"}),
                               errors="coerce").reindex(series.index).where(bad, values)
    return values


def tidy(raw: RawLog, path: str, overrides: dict[str, str], step_bins: int,
         rows_per_epoch_max: int) -> RunLog:
    table = raw.table
    if table.shape[0] == 0:
        raise InputError(f"{path}: header only, no data rows")
    if raw.format == "ultralytics":
        _add_total_losses(table)
    columns = [str(c) for c in table.columns]
    table.columns = columns
    roles = find_roles(columns, overrides, path)
    if "train_loss" not in roles and "val_loss" not in roles:
        raise InputError(f"{path}: no loss column found among {', '.join(columns[:15])}"
                         f"{' ...' if len(columns) > 15 else ''}; name one with --map train_loss=COLUMN")

    data = pd.DataFrame({role: _numeric(raw, col, path) for role, col in roles.items()})
    step_twin = step_column_for(roles["train_loss"], columns) if "train_loss" in roles else None
    if step_twin:
        data["train_loss_step"] = _numeric(raw, step_twin, path)
    explicit = raw.explicit_nan
    nan_rows = {}
    if explicit is not None:
        for role in ("train_loss", "val_loss", "train_loss_step"):
            col = step_twin if role == "train_loss_step" else roles.get(role)
            if col is not None and col in explicit.columns:
                nan_rows[role] = explicit[col].to_numpy(dtype=bool)
    for role, mask in nan_rows.items():
        data.loc[mask, role] = np.nan

    for role in _VALUE_ROLES:
        if role in data and not np.isfinite(data[role]).any() and data[role].isna().all() \
                and role not in nan_rows:
            if role in ("train_loss", "val_loss") and len(roles) > 1:
                raise InputError(f"{path}: column '{roles[role]}' has no values")
            data = data.drop(columns=role)
            roles.pop(role, None)
    if "train_loss" not in data and "val_loss" not in data:
        raise InputError(f"{path}: the loss columns hold no numbers")

    metric = roles.get("val_metric")
    scale = 1.0
    if metric and "val_metric" in data:
        finite = data["val_metric"][np.isfinite(data["val_metric"])]
        if is_fraction_like(metric) and len(finite) and 1.5 < finite.max() <= 100.0:
            scale = 0.01
            data["val_metric"] = data["val_metric"] * scale
            if "train_metric" in data:
                data["train_metric"] = data["train_metric"] * scale

    for role in ("epoch", "step"):  # a position on the time axis must be a finite number
        if role in data:
            data[role] = data[role].where(np.isfinite(data[role]))
    key = _epoch_key(data, nan_rows, step_bins, rows_per_epoch_max)
    epochs, steps = _group(data, key, nan_rows)
    return RunLog(path=path, format=raw.format, epochs=epochs, steps=steps, columns=roles,
                  metric=metric, higher_is_better=higher_is_better(metric) if metric else None,
                  metric_scale=scale)


def _epoch_key(data: pd.DataFrame, nan_rows: dict, step_bins: int, rows_per_epoch_max: int) -> np.ndarray:
    """The epoch each row belongs to."""
    n = len(data)
    if "epoch" in data and data["epoch"].notna().any():
        epoch = data["epoch"].ffill().bfill().to_numpy()
        if np.any(np.abs(epoch - np.round(epoch)) > 1e-9):  # fractional epochs (HF)
            return np.maximum(np.ceil(epoch - 1e-9), 1.0)
        return epoch
    val_cols = [c for c in ("val_loss", "val_metric") if c in data]
    if val_cols:
        has_val = data[val_cols].notna().any(axis=1).to_numpy() | nan_rows.get("val_loss", np.zeros(n, bool))
        if 0 < has_val.sum() < n / 2:  # evaluations between runs of training rows
            closed = np.concatenate([[0], np.cumsum(has_val)[:-1]])
            return closed.astype(float)
    if n <= rows_per_epoch_max:
        return np.arange(n, dtype=float)
    return np.floor(np.arange(n) * step_bins / n)


def _group(data: pd.DataFrame, key: np.ndarray, nan_rows: dict) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    values = [r for r in ("train_loss", "val_loss", "train_metric", "val_metric", "lr", "grad_norm")
              if r in data]
    # A row whose loss was logged as NaN or inf: the epoch it belongs to went non-finite.
    row_bad = np.zeros(len(data), dtype=bool)
    for role in ("train_loss", "val_loss", "train_loss_step"):
        if role in data:
            row_bad |= np.isinf(data[role].to_numpy())
    for mask in nan_rows.values():
        row_bad |= mask
    steps = None
    if len(pd.unique(key)) == len(key):
        epochs = data[values].set_axis(key, axis=0)
        epochs["nonfinite"] = row_bad
    else:
        frame = data[values].copy()
        frame["nonfinite"] = row_bad
        frame["_k"] = key
        agg = {r: "mean" for r in values}
        agg.update({r: "last" for r in ("val_loss", "val_metric", "lr") if r in values})
        if "grad_norm" in values:
            agg["grad_norm"] = "median"
        agg["nonfinite"] = "any"
        epochs = frame.groupby("_k", sort=True).agg(agg)
        step_loss = "train_loss_step" if "train_loss_step" in data else "train_loss"
        step_cols = [c for c in ("step", step_loss, "lr", "grad_norm") if c in data]
        per_step = data[step_cols].rename(columns={step_loss: "train_loss"})
        if "train_loss" in per_step:
            logged = per_step["train_loss"].notna().to_numpy() | nan_rows.get(step_loss, row_bad & False)
            per_step = per_step[logged]
        if len(per_step) > len(epochs):
            steps = per_step.reset_index(drop=True)
    epochs.index.name = "epoch"
    # Rows that only carried an lr or a step (Lightning's LearningRateMonitor) make no epoch.
    measured = [c for c in values if c != "lr"]
    keep = epochs[measured].notna().any(axis=1) | epochs["nonfinite"]
    if not keep.all():
        epochs = epochs[keep]
    return epochs, steps
