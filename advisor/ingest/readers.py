"""Readers: one per log format, each turning a file into a raw table (columns as logged).

A reader also reports which cells held an explicit NaN (a logged NaN is divergence; an empty
cell in a sparse log is just a value logged on another row).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import pandas as pd

from advisor.errors import InputError

FORMATS = ("csv", "lightning", "hf", "jsonl", "ultralytics")
_SNIFF_BYTES = 65536
_CHUNK_ROWS = 1_000_000  # big logs are read in chunks, so peak memory stays near the final arrays


@dataclass
class RawLog:
    format: str                      # as detected: keras, wandb, lightning, hf, detectron2 ...
    columns: dict[str, np.ndarray]   # as logged; float where pandas could parse, else text
    n_rows: int
    explicit_nan: dict[str, np.ndarray]  # per column, True where a cell held a logged NaN
    records: bool = False            # rows are JSON records (errors name records, not rows)


def resolve_path(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        names = ("metrics.csv", "trainer_state.json", "results.csv", "metrics.json", "*.log.json")
        # the log itself, or one level down (a Lightning run folder holds version_N/metrics.csv)
        found = sorted({p for n in names for pattern in (n, f"*/{n}") for p in path.glob(pattern)})
        if len(found) == 1:
            return found[0]
        raise InputError(f"{path}: is a directory; give the log file inside it "
                         f"(e.g. metrics.csv, trainer_state.json, results.csv)")
    return path


def sniff(path: Path) -> tuple[str, bytes]:
    """The format of a file from its first bytes."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head.strip():
        raise InputError(f"{path}: file is empty")
    if b"\x00" in head:
        raise InputError(f"{path}: binary data, not a training log")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the sniff window is fine; anything else is not UTF-8
        if len(head) < _SNIFF_BYTES or exc.start < len(head) - 4:
            raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); not a training log") from None
        text = head[: exc.start].decode("utf-8")
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("{", "[")):
        if '"log_history"' in text:
            return "hf", head
        first = stripped.splitlines()[0]
        if '"mode"' in text and ('"env_info"' in first or '"mode"' in first):
            return "mmdet", head
        if '"iteration"' in text:
            return "detectron2", head
        return "jsonl", head
    header = stripped.splitlines()[0]
    cols = [c.strip() for c in re.split(r"[,\t;]", header)]
    padded = text.lstrip("\ufeff").startswith(" ")  # Ultralytics right-aligns its header
    if any(c.startswith("train/") for c in cols) and any(c.startswith(("metrics/", "val/")) for c in cols) \
            and padded:
        return "ultralytics", head
    if "epoch" in cols and "step" in cols and any(
            c.endswith(("_step", "_epoch")) or c.startswith("lr-") for c in cols):
        return "lightning", head
    if "_step" in cols or "_runtime" in cols:
        return "wandb", head
    return "csv", head


def read(path: Path, fmt: str | None, wanted: Callable[[list[str]], list[str]] | None = None) -> RawLog:
    """Read a log. `wanted(header)` names the columns worth keeping (the rest are never parsed)."""
    detected, head = sniff(path)
    fmt = fmt or detected
    if fmt in ("csv", "tsv", "keras", "wandb", "lightning", "ultralytics"):
        if detected in ("hf", "mmdet", "detectron2", "jsonl"):
            raise InputError(f"{path}: looks like JSON, not {fmt}")
        return _read_csv(path, head, detected if fmt == "csv" else fmt, wanted)
    if fmt == "hf":
        return _read_hf(path)
    if fmt in ("jsonl", "detectron2", "mmdet"):
        return _read_jsonl(path, detected if fmt == "jsonl" else fmt)
    raise InputError(f"{path}: unknown format '{fmt}' (formats: {', '.join(FORMATS)})")


def _read_csv(path: Path, head: bytes, fmt: str, wanted: Callable[[list[str]], list[str]] | None) -> RawLog:
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    first_line = text.splitlines()[0] if text else ""
    sep = max(("\t", ",", ";"), key=first_line.count) if first_line else ","
    if first_line.count(sep) == 0:
        sep = ","
    padded = fmt == "ultralytics"  # Ultralytics right-aligns headers and values with spaces
    header = next(csv.reader(io.StringIO(first_line), delimiter=sep, skipinitialspace=padded), [])
    header = [h.strip() if padded else h for h in header]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise InputError(f"{path}: column '{dup}' appears twice in the header")
    keep = [header.index(c) for c in wanted(header)] if wanted else None
    # Empty cells are missing values; a written 'nan' stays text so that it can be told apart.
    options = dict(sep=sep, skipinitialspace=padded, engine="c", encoding="utf-8-sig",
                   usecols=sorted(keep) if keep else None, keep_default_na=False, na_values=[""])
    try:
        parts: dict[str, list[np.ndarray]] = {}
        for chunk in pd.read_csv(path, chunksize=_CHUNK_ROWS, **options):
            for name in chunk.columns:
                parts.setdefault(str(name).strip() if padded else str(name), []).append(chunk[name].to_numpy())
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start} of a block); not a training log") from None
    except (pd.errors.ParserError, ValueError) as exc:
        msg = str(exc).strip().splitlines()[-1]
        raise InputError(f"{path}: not a readable {sep!r}-separated table ({msg})") from None
    columns: dict[str, np.ndarray] = {}
    for name in list(parts):  # join one column at a time, freeing its chunks as we go
        chunks = parts.pop(name)
        columns[name] = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        del chunks
    if not columns:
        columns = {h: np.array([], dtype=float) for h in header}
    n_rows = len(next(iter(columns.values()))) if columns else 0
    raw = RawLog(fmt, columns, n_rows, {})
    if fmt == "ultralytics":
        _add_total_losses(raw, str(path))
    return raw


class _NaNSeen(float):
    """json's NaN constant, marked so that a logged NaN is told apart from a missing key."""


def _parse_constant(name: str) -> float:
    return {"NaN": _NaNSeen("nan"), "Infinity": math.inf, "-Infinity": -math.inf}[name]


def _records_to_raw(records: list[dict], fmt: str, path: Path) -> RawLog:
    if not records:
        raise InputError(f"{path}: no log records in the file")
    table = pd.DataFrame.from_records(records)
    explicit: dict[str, np.ndarray] = {}
    for i, rec in enumerate(records):
        for key, value in rec.items():
            if isinstance(value, _NaNSeen):
                explicit.setdefault(str(key), np.zeros(len(records), dtype=bool))[i] = True
    columns = {str(c): table[c].to_numpy() for c in table.columns}
    return RawLog(fmt, columns, len(records), explicit, records=True)


def _read_hf(path: Path) -> RawLog:
    try:
        with path.open("rb") as fh:
            state = json.loads(fh.read(), parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid or truncated JSON at line {exc.lineno}, "
                         f"column {exc.colno} ({exc.msg})") from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise InputError(f"{path}: no 'log_history' list; not a Hugging Face trainer_state.json")
    # The closing summary ('train_runtime', an average 'train_loss') is not a point on the curve.
    records = [r for r in history if isinstance(r, dict) and "train_runtime" not in r]
    return _records_to_raw(records, "hf", path)


def _read_jsonl(path: Path, fmt: str) -> RawLog:
    records: list[dict] = []
    with path.open("rb") as fh:
        data = fh.read()
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    if text.lstrip().startswith("["):  # a JSON array of records
        try:
            parsed = json.loads(text, parse_constant=_parse_constant)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: invalid or truncated JSON at line {exc.lineno} ({exc.msg})") from None
        if not all(isinstance(r, dict) for r in parsed):
            raise InputError(f"{path}: a JSON array, but not of records")
        return _records_to_raw(parsed, "json", path)
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line, parse_constant=_parse_constant)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {lineno}: invalid or truncated JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise InputError(f"{path}: line {lineno}: expected a JSON object per line")
        if fmt == "mmdet":
            mode = rec.get("mode")
            if mode is None:  # the env_info / config header line
                continue
            if mode == "val":
                rec = {(k if k in ("epoch", "iter", "mode", "lr") else f"val_{k}"): v
                       for k, v in rec.items()}
        records.append(rec)
    return _records_to_raw(records, fmt, path)


_MISSING_TEXT = {"", "none", "null", "na", "n/a"}
_INF_TEXT = {"inf": np.inf, "+inf": np.inf, "infinity": np.inf, "-inf": -np.inf, "-infinity": -np.inf}


def numeric_column(raw: RawLog, col: str, path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A column as floats, and where it held a written NaN. Any other text is an error."""
    values = raw.columns[col]
    explicit = raw.explicit_nan.get(col)
    if values.dtype.kind in "iuf":
        return values.astype(float, copy=False), explicit
    series = pd.Series(values, dtype=object)
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    text_rows = np.flatnonzero(np.isnan(numbers) & series.notna().to_numpy())
    for pos in text_rows:
        cell = series.iloc[pos]
        word = cell.strip().lower() if isinstance(cell, str) else cell
        if word == "nan" or (isinstance(cell, float) and np.isnan(cell)):
            explicit = np.zeros(len(numbers), dtype=bool) if explicit is None else explicit
            explicit[pos] = True
        elif isinstance(word, str) and word in _INF_TEXT:
            numbers[pos] = _INF_TEXT[word]
        elif not (isinstance(word, str) and word in _MISSING_TEXT) and cell is not None:
            where = f"record {pos + 1}" if raw.records else f"row {pos + 2}"
            raise InputError(f"{path}: {where}, column '{col}': {cell!r} is not a number")
    return numbers, explicit


def _add_total_losses(raw: RawLog, path: str) -> None:
    """Ultralytics logs several losses per split (box, cls, dfl): their sum is the loss."""
    for split in ("train", "val"):
        parts = [c for c in raw.columns if c.startswith(f"{split}/") and c.endswith("loss")]
        if len(parts) > 1 and f"{split}/loss" not in raw.columns:
            raw.columns[f"{split}/loss"] = np.sum([numeric_column(raw, c, path)[0] for c in parts], axis=0)
