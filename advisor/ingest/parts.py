"""One file, several runs: side by side (groups of columns) or one after another (the epoch or
step counter restarts). A reader gives one raw table per file; this cuts it into the runs it
holds, and each is then read on its own.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from advisor.ingest.readers import RawLog, numeric_column
from advisor.ingest.roles import find_roles, is_series

_WANDB_RUN = re.compile(r"^(?P<run>.+) - (?P<name>.+)$")  # a W&B panel export: '<run> - <metric>'
_NUMBERED = re.compile(r"^(?P<name>.*[A-Za-z_])(?P<n>\d+)$")  # 'loss0', 'loss1'


def column_groups(names: list[str]) -> list[tuple[str, dict[str, str]]] | None:
    """Runs logged side by side: (run name, {column in the file: its name in the run}) for each,
    the shared columns (Step, an index) in every run; None for a file of one run.

    - W&B panel exports: '<run> - epoch/val_loss' beside '<run> - epoch/val_loss__MIN' and
      '__MAX' (the band W&B draws around a smoothed line, left out);
    - numbered copies: 'loss0, loss1, acc0, acc1', when every curve carries a number, each
      number has the same names, and a loss is among them."""
    runs: dict[str, dict[str, str]] = {}
    shared = []
    for col in names:
        m = _WANDB_RUN.match(col)
        if m is None:
            shared.append(col)
        elif not m["name"].endswith(("__MIN", "__MAX")):
            runs.setdefault(m["run"], {})[col] = m["name"]
    if not runs or any(is_series(c) for c in shared):
        runs, shared = {}, []
        for col in names:
            m = _NUMBERED.match(col)
            if m is not None and is_series(col):
                runs.setdefault(m["n"], {})[col] = m["name"]
            else:
                shared.append(col)
        stems = [sorted(cols.values()) for cols in runs.values()]
        if len(runs) < 2 or any(is_series(c) for c in shared) or any(s != stems[0] for s in stems) \
                or not {"train_loss", "val_loss"} & set(find_roles(stems[0], {}, "")):
            return None
    return [(run, {**{c: c for c in shared}, **cols}) for run, cols in runs.items()]


def restarts(counter: np.ndarray) -> np.ndarray:
    """Rows where a new run begins: the epoch (or step) counter goes back to where the file
    began, or goes back and does not carry on past where it was (runs appended to one file).

    A resumed run goes back a little and carries on past: one run (tidy keeps the latest rows
    of each epoch). A counter that goes back often, or a file that does not begin at its lowest
    count, is rows out of order: one run (tidy sorts them)."""
    c = filled(np.where(np.isfinite(counter), counter, np.nan))
    if len(c) < 2 or np.isnan(c[0]):
        return np.array([], dtype=int)
    back = np.flatnonzero(c[1:] < c[:-1]) + 1
    start = c[0]
    if len(back) >= len(c) / 4 or start > np.nanmin(c):  # appended runs: the file begins at its lowest count
        return np.array([], dtype=int)
    new = back
    if len(back):
        carries_on = np.maximum.reduceat(c, back) > np.maximum.accumulate(c)[back - 1]
        new = back[(c[back] <= start) | ~carries_on]
    # A file of one row per epoch that logs the first epoch twice in a row: a run of one epoch.
    same = np.flatnonzero(c[1:] == c[:-1]) + 1
    if len(same) and (c > start).any() and (c[same] <= start).all():
        new = np.union1d(new, same)
    return new


def filled(counter: np.ndarray) -> np.ndarray:
    """An epoch or step column with its gaps filled from the row before (Lightning's
    learning-rate rows carry no epoch); all NaN when nothing was logged."""
    if not np.isnan(counter).any():
        return counter
    return pd.Series(counter).ffill().bfill().to_numpy()


def split(raw: RawLog, path: str, overrides: dict[str, str]) -> list[tuple[str | None, RawLog]]:
    """The runs in a file, in file order, each with its name when the file gives one.
    Columns named with --map are read as one run, so that the names stay the file's."""
    groups = None if overrides else (raw.groups or column_groups(list(raw.columns)))
    tables = [(name, _columns_part(raw, cols)) for name, cols in groups] if groups else [(None, raw)]
    out: list[tuple[str | None, RawLog]] = []
    for name, table in tables:
        roles = find_roles(list(table.columns), {} if groups else overrides, path)
        axis = roles.get("epoch") or roles.get("step")
        cuts = restarts(numeric_column(table, axis, path)[0]) if axis and table.n_rows else []
        if table.starts:  # where the reader saw a run end (a Trainer's closing summary)
            cuts = np.union1d(cuts, table.starts)
        bounds = [0, *map(int, cuts), table.n_rows]
        out += [(name, _rows_part(table, a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
    return out


def _columns_part(raw: RawLog, cols: dict[str, str]) -> RawLog:
    """One run of columns side by side, renamed; the rows where it logged nothing are dropped
    (shorter runs leave blank cells in a W&B export)."""
    blank = np.full(raw.n_rows, any(is_series(name) for name in cols.values()))
    for col, name in cols.items():
        if is_series(name):
            blank &= pd.isna(raw.columns[col]) & ~_nan_mask(raw, col)
    logged = ~blank
    return RawLog(raw.format, {name: raw.columns[c][logged] for c, name in cols.items()}, int(logged.sum()),
                  {cols[c]: m[logged] for c, m in raw.explicit_nan.items() if c in cols},
                  records=raw.records, first_row=raw.first_row)


def _nan_mask(raw: RawLog, col: str) -> np.ndarray:
    mask = raw.explicit_nan.get(col)
    return np.zeros(raw.n_rows, dtype=bool) if mask is None else mask


def _rows_part(raw: RawLog, start: int, stop: int) -> RawLog:
    if start == 0 and stop == raw.n_rows:
        return raw
    return RawLog(raw.format, {c: v[start:stop] for c, v in raw.columns.items()}, stop - start,
                  {c: m[start:stop] for c, m in raw.explicit_nan.items()}, records=raw.records,
                  first_row=raw.first_row + start)
