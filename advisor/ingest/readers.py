"""Readers: one per log format, each turning a file into a raw table (columns as logged).

A reader also reports which cells held an explicit NaN (a logged NaN is divergence; an empty
cell in a sparse log is just a value logged on another row).
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import pandas as pd

from advisor.errors import InputError
from advisor.ingest.roles import is_series

FORMATS = ("csv", "lightning", "hf", "jsonl", "ultralytics", "text", "notebook", "tensorboard", "mlflow")
_SNIFF_BYTES = 65536
_CHUNK_ROWS = 1_000_000  # big logs are read in chunks, so peak memory stays near the final arrays


@dataclass
class RawLog:
    format: str                      # as detected: keras, wandb, lightning, hf, detectron2 ...
    columns: dict[str, np.ndarray]   # as logged; float where pandas could parse, else text
    n_rows: int
    explicit_nan: dict[str, np.ndarray]  # per column, True where a cell held a logged NaN
    records: bool = False            # rows are JSON records (errors name records, not rows)
    # runs side by side, when the reader knows them: (run name, {column: its name in the run})
    groups: list[tuple[str, dict[str, str]]] | None = None
    first_row: int = 2  # what error messages call row 0: its line in a CSV (1 for JSON records)
    # rows where the reader knows that a new run begins (a Trainer's closing summary printed)
    starts: list[int] | None = None


def resolve_path(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        names = ("metrics.csv", "trainer_state.json", "results.csv", "metrics.json", "*.log.json")
        # the log itself, or one level down (a Lightning run folder holds version_N/metrics.csv)
        found = sorted({p for n in names for pattern in (n, f"*/{n}") for p in path.glob(pattern)})
        if len(found) == 1:
            return found[0]
        if not found and next(path.rglob("*tfevents*"), None) is not None:
            return path  # a TensorBoard run folder: its event files are read together
        from advisor.ingest.mlflow import is_mlflow_folder

        if not found and is_mlflow_folder(path):
            return path  # an MLflow run (or experiment) folder of the file store
        raise InputError(f"{path}: is a directory; give the log file inside it "
                         f"(e.g. metrics.csv, trainer_state.json, results.csv, or a TensorBoard run folder)")
    from advisor.inputs import regular_file

    regular_file(path, "training log")  # a FIFO or a device is refused before it is opened (F18)
    return path


def sniff(path: Path) -> tuple[str, bytes]:
    """The format of a file from its first bytes (never the whole file)."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head.strip():
        raise InputError(f"{path}: file is empty")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # a PowerShell '>' redirect writes UTF-16 with a byte-order mark
        text = head[: len(head) - len(head) % 2].decode("utf-16", errors="replace")
        if _is_table(text, len(head) == _SNIFF_BYTES):
            raise InputError(f"{path}: a UTF-16 table; save it as UTF-8 (or give the console text)")
        return "text", head
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
        if path.suffix == ".ipynb" or ('"cells"' in text and ('"cell_type"' in text or '"nbformat"' in text)):
            return "notebook", head
        if stripped.startswith(("{'", "{ '")):
            return "text", head  # a printed Python dict (Hugging Face's Trainer), not JSON
        if '"log_history"' in text:
            return "hf", head
        first = stripped.splitlines()[0]
        if '"mode"' in text and ('"env_info"' in first or '"mode"' in first):
            return "mmdet", head
        if '"data_time"' in first and '"step"' in first:
            return "mmengine", head
        if '"iteration"' in text:
            return "detectron2", head
        return "jsonl", head
    if path.suffix == ".ipynb":
        return "notebook", head
    if not _is_table(stripped, len(head) == _SNIFF_BYTES):
        return "text", head  # console output: Keras progress lines, printed dicts, 'loss: 0.31'
    header, sep, _ = _csv_header(path)
    cols = [c.strip() for c in header.split(sep)]
    # Ultralytics results.csv: right-aligned with spaces up to 8.0, plain CSV since (with `time`)
    if any(c.startswith("train/") for c in cols) and any(c.startswith("metrics/") for c in cols) \
            and (header.startswith(" ") or any(c.startswith("val/") for c in cols)):
        return "ultralytics", head
    if "epoch" in cols and "step" in cols and any(
            c.endswith(("_step", "_epoch")) or c.startswith("lr-") for c in cols):
        return "lightning", head
    if "_step" in cols or "_runtime" in cols:
        return "wandb", head
    return "csv", head


def _separator(line: str) -> str | None:
    best = max(("\t", ",", ";"), key=line.count)
    return best if line.count(best) else None


def _is_table(text: str, cut: bool) -> bool:
    """A header and rows of as many fields, one column of numbers at least: a CSV. Anything else
    (console output, 'Epoch: [1/100], training loss: 1.64, ...' lines) is text."""
    lines = [line for line in text.splitlines()[:40] if line.strip()]
    if cut and len(lines) > 2:
        lines = lines[:-1]  # the last line of the sniff window may be cut short
    if len(lines) < 2:
        return bool(lines) and _separator(lines[0]) is not None  # a header alone: the CSV reader says so
    if _separator(lines[0]) is None and _separator(lines[1]) and re.search(r"[A-Za-z]", lines[1]):
        lines = lines[1:]  # a title line above the header
    sep = _separator(lines[0]) or ","
    rows = list(csv.reader(lines[1:21], delimiter=sep))
    if not rows:
        return True  # a header alone (under a title line): the CSV reader says so
    widths = [len(r) for r in rows]
    width = max(set(widths), key=widths.count)  # the rows' own width: a ragged row is the reader's to name
    body = [r for r in rows if len(r) == width]
    if len(body) < 0.5 * len(rows):
        return False

    def kind(cell: str) -> int:  # 1: a number, 0: empty or a missing-value word, -1: text
        cell = cell.strip()
        if cell.lower() in ("", "nan", "inf", "-inf", "none", "null"):
            return 0
        try:
            float(cell)
        except ValueError:
            return 1 if re.match(_WRAPPED, cell, re.IGNORECASE) else -1
        return 1

    for j in range(width):  # a column of numbers (sparse ones too: Lightning's)
        kinds = [kind(r[j]) for r in body]
        if kinds.count(1) >= 0.3 * len(body) and kinds.count(-1) <= 0.2 * len(body):
            return True
    return False


def _csv_header(path: Path) -> tuple[str, str, int]:
    """The header line, its separator, and how many title lines stand above it.

    Read whole from the file, not from the sniff window: W&B exports with system metrics have
    headers wider than 64 KB. A first line without any separator above one with separators is a
    title (a CSVLogger file re-saved by a spreadsheet: 'model_history_log', then the header)."""
    with path.open("rb") as fh:
        first, second = (fh.readline().decode("utf-8", errors="replace").rstrip("\r\n") for _ in range(2))
    first = first.lstrip("\ufeff")

    if _separator(first) is None and _separator(second) and re.search(r"[A-Za-z]", second):
        return second, _separator(second), 1
    return first, _separator(first) or ",", 0


def read(path: Path, fmt: str | None, wanted: Callable[[list[str]], list[str]] | None = None) -> RawLog:
    """Read a log. `wanted(header)` names the columns worth keeping (the rest are never parsed)."""
    if path.is_file() and _has_utf16_bom(path):
        return _read_utf16(path, fmt, wanted)
    if path.is_dir() and fmt in (None, "mlflow"):
        from advisor.ingest.mlflow import is_mlflow_folder, read_mlflow

        if is_mlflow_folder(path):
            return read_mlflow(path)
    if path.is_dir() or "tfevents" in path.name or fmt == "tensorboard":
        from advisor.ingest.tensorboard import read_events

        return read_events(path)
    detected, head = sniff(path)
    fmt = fmt or detected
    if fmt in ("csv", "tsv", "keras", "wandb", "lightning", "ultralytics"):
        if detected in ("hf", "mmdet", "mmengine", "detectron2", "jsonl", "notebook"):
            raise InputError(f"{path}: looks like JSON, not {fmt}")
        if detected == "text" and fmt == "csv":
            return _read_text(path)
        return _read_csv(path, detected if fmt == "csv" else fmt, wanted)
    if fmt == "hf":
        return _read_hf(path)
    if fmt in ("jsonl", "detectron2", "mmdet", "mmengine"):
        return _read_jsonl(path, detected if fmt == "jsonl" else fmt)
    if fmt in ("text", "notebook"):
        return _read_text(path, notebook=fmt == "notebook")
    raise InputError(f"{path}: unknown format '{fmt}' (formats: {', '.join(FORMATS)})")


def _has_utf16_bom(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _read_utf16(path: Path, fmt: str | None, wanted: Callable[[list[str]], list[str]] | None) -> RawLog:
    """A UTF-16 file (what PowerShell's '>' writes): read from a UTF-8 copy, errors naming the original."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="advisor-utf8-") as folder:
        copy = Path(folder) / path.name  # same name: the suffix still tells a notebook
        try:
            with path.open("r", encoding="utf-16") as src, copy.open("w", encoding="utf-8") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        except UnicodeError as exc:
            raise InputError(f"{path}: starts as UTF-16 text but is not ({exc.reason})") from None
        try:
            return read(copy, fmt, wanted)
        except InputError as exc:
            raise InputError(str(exc).replace(str(copy), str(path))) from None


_USECOLS_FROM = 256  # wider headers (W&B exports with system metrics) are read for the wanted columns


def _read_csv(path: Path, fmt: str, wanted: Callable[[list[str]], list[str]] | None) -> RawLog:
    header_line, sep, title_lines = _csv_header(path)
    if fmt == "tsv" and sep != "\t":
        raise InputError(f"{path}: --format tsv, but the header is not separated by tabs "
                         f"(it uses {sep!r}); leave --format out or give --format csv")
    padded = fmt == "ultralytics"  # Ultralytics right-aligns headers and values with spaces
    header = next(csv.reader([header_line], delimiter=sep, skipinitialspace=padded), [])
    # A space after each comma ('epoch, loss, val_loss') is layout, not part of the names.
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise InputError(f"{path}: column '{dup}' appears twice in the header")
    # Only a wide header is read for the columns wanted: with `usecols` pandas no longer checks
    # that a row has no more fields than the header, and such a row would be read shifted.
    keep = sorted(header.index(c) for c in wanted(header)) if wanted and len(header) > _USECOLS_FROM else None
    # Empty cells are missing values; a written 'nan' stays text so that it can be told apart.
    options = dict(sep=sep, skipinitialspace=padded, engine="c", encoding="utf-8-sig", skiprows=title_lines,
                   header=0, names=header, index_col=False, usecols=keep, keep_default_na=False, na_values=[""])
    try:
        parts: dict[str, list[np.ndarray]] = {}
        with warnings.catch_warnings():
            # pandas only warns when the first row is the one with too many fields
            warnings.simplefilter("error", pd.errors.ParserWarning)
            for chunk in pd.read_csv(path, chunksize=_CHUNK_ROWS, **options):
                for name in chunk.columns:
                    parts.setdefault(str(name), []).append(chunk[name].to_numpy())
    except pd.errors.ParserWarning:
        raise InputError(f"{path}: line {title_lines + 2} has more fields than the header's {len(header)} "
                         f"(its values would be read under the wrong columns)") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: file is empty") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start} of a block); not a training log") from None
    except (pd.errors.ParserError, ValueError) as exc:
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if ragged:
            raise InputError(f"{path}: line {ragged[2]} has {ragged[3]} fields, more than the header's "
                             f"{ragged[1]} (its values would be read under the wrong columns)") from None
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
    raw = RawLog(fmt, columns, n_rows, {}, first_row=title_lines + 2)
    _split_phases(raw)
    if fmt == "ultralytics":
        _add_total_losses(raw, str(path))
    return raw


PHASE_COLUMN = re.compile(r"^(?:phase|split|mode|stage|subset)$", re.IGNORECASE)
_PHASE_PREFIX = {"train": "", "training": "", "val": "val_", "valid": "val_", "validation": "val_",
                 "eval": "val_", "dev": "val_", "test": "test_"}


def _split_phases(raw: RawLog) -> None:
    """A long table with a `phase` column ('train' / 'val' on each row): the values of the
    held-out rows become columns of their own ('loss' of the 'val' rows is 'val_loss')."""
    col = next((c for c in raw.columns if PHASE_COLUMN.match(c.strip())), None)
    if col is None or raw.columns[col].dtype.kind != "O":
        return
    phase = pd.Series(raw.columns[col]).astype(str).str.strip().str.lower()
    if not phase.isin(list(_PHASE_PREFIX)).all():
        return
    prefixes = phase.map(_PHASE_PREFIX).to_numpy()
    for name in [c for c in raw.columns if c != col and is_series(c)]:
        values = pd.Series(raw.columns[name])
        for prefix in {p for p in prefixes if p}:
            rows = prefixes == prefix
            if values[rows].notna().any() and f"{prefix}{name}" not in raw.columns:
                raw.columns[f"{prefix}{name}"] = values.where(rows).to_numpy()
                values = values.where(~rows)
        raw.columns[name] = values.to_numpy()


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
    return RawLog(fmt, columns, len(records), explicit, records=True, first_row=1)


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
    try:  # one JSON document: json.dump(history.history) is one list per metric
        whole = json.loads(text, parse_constant=_parse_constant)
    except json.JSONDecodeError:  # JSON lines ('Extra data' after the first), or an error named below
        whole = None
    if isinstance(whole, dict) and whole and all(isinstance(v, list) for v in whole.values()):
        return _columns_to_raw(whole, path)
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
    if fmt == "mmengine":
        records = _mmengine_validation(records)
    return _records_to_raw(records, fmt, path)


def _mmengine_validation(records: list[dict]) -> list[dict]:
    """mmengine's scalars.json: evaluation lines are the ones without a loss. Their `step` is the
    epoch in epoch-based runs (whose training lines carry an `epoch`) and the iteration in
    iteration-based ones; -1 marks a metric that could not be computed (mmpose's 'coco/AP (M)'
    without medium-sized objects), so it is left out."""
    def is_eval(rec: dict) -> bool:
        return not any("loss" in key for key in rec)

    epoch_based = any("epoch" in r for r in records if not is_eval(r))
    out = []
    for rec in records:
        if is_eval(rec):
            val = {f"val_{k}": v for k, v in rec.items()
                   if k not in ("step", "epoch", "iter", "time", "data_time") and v != -1}
            val["epoch" if epoch_based else "step"] = rec.get("step")
            rec = val
        out.append(rec)
    return out


def _columns_to_raw(doc: dict[str, list], path: Path) -> RawLog:
    """One list per metric (Keras' history.history). Lists of different lengths are different
    runs in one object (two models' histories merged, 'reg_loss' beside 'cls_loss'): each length
    is a run, named by the prefix its keys share."""
    table = pd.DataFrame({str(k): pd.Series(v, dtype=object) for k, v in doc.items()})  # padded with NaN
    by_length: dict[int, list[str]] = {}
    for key, values in doc.items():
        by_length.setdefault(len(values), []).append(str(key))
    groups = None
    if len(by_length) > 1:
        groups = []
        for length, keys in by_length.items():
            prefix = re.match(r"^(.*[_./-])?", os.path.commonprefix(keys) if len(keys) > 1 else "").group(0)
            name = prefix.rstrip("_./-") or f"{length} values"
            groups.append((name, {k: k[len(prefix):] for k in keys}))
    columns = {c: table[c].to_numpy() for c in table.columns}
    explicit = {c: np.array([isinstance(x, _NaNSeen) for x in table[c]], dtype=bool) for c in table.columns}
    return RawLog("json", columns, len(table), {c: m for c, m in explicit.items() if m.any()},
                  records=True, groups=groups, first_row=1)


def _read_text(path: Path, notebook: bool = False) -> RawLog:
    """Console output (Keras fit, printed dicts, print/logging lines) or a notebook's outputs:
    one row per epoch or evaluation (advisor/ingest/text.py)."""
    from advisor.ingest.text import read_console, read_notebook

    extractor = read_notebook(path) if notebook else read_console(path)
    columns, explicit, n, starts = extractor.arrays(path)
    return RawLog("notebook" if notebook else "text", columns, n, explicit, records=True, first_row=1,
                  starts=starts or None)


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
_WRAPPED = rf"^\s*[A-Za-z_][\w.]*\(\s*({_NUMBER})\s*[,)]"
_MISSING_TEXT = {"", "none", "null", "na", "n/a"}
_INF_TEXT = {"inf": np.inf, "+inf": np.inf, "infinity": np.inf, "-inf": -np.inf, "-infinity": -np.inf}


def numeric_column(raw: RawLog, col: str, path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A column as floats, and where it held a written NaN. Any other text is an error."""
    values = raw.columns[col]
    explicit = raw.explicit_nan.get(col)
    if values.dtype.kind in "iuf":
        return values.astype(float, copy=False), explicit
    series = pd.Series(values, dtype=object)
    numbers = np.array(pd.to_numeric(series, errors="coerce"), dtype=float)  # writable: cells are filled in below
    text_rows = np.flatnonzero(np.isnan(numbers) & series.notna().to_numpy())
    if len(text_rows):  # a number inside its repr: "tensor(3.13, device='cuda:0')", 'np.float64(0.5)'
        inner = series.iloc[text_rows].astype(str).str.extract(_WRAPPED, flags=re.IGNORECASE, expand=False)
        found = inner.notna().to_numpy()
        if found.any():
            series = series.copy()
            series.iloc[text_rows[found]] = inner[found].to_numpy()
            numbers[text_rows[found]] = pd.to_numeric(inner[found], errors="coerce").to_numpy(dtype=float)
            text_rows = text_rows[np.isnan(numbers[text_rows])]
    for pos in text_rows:
        cell = series.iloc[pos]
        word = cell.strip().lower() if isinstance(cell, str) else cell
        if word == "nan" or (isinstance(cell, float) and np.isnan(cell)):
            explicit = np.zeros(len(numbers), dtype=bool) if explicit is None else explicit
            explicit[pos] = True
        elif isinstance(word, str) and word in _INF_TEXT:
            numbers[pos] = _INF_TEXT[word]
        elif not (isinstance(word, str) and word in _MISSING_TEXT) and cell is not None:
            where = f"record {raw.first_row + pos}" if raw.records else f"row {raw.first_row + pos}"
            raise InputError(f"{path}: {where}, column '{col}': {cell!r} is not a number")
    return numbers, explicit


def _add_total_losses(raw: RawLog, path: str) -> None:
    """Ultralytics logs several losses per split (box, cls, dfl): their sum is the loss."""
    for split in ("train", "val"):
        parts = [c for c in raw.columns if c.startswith(f"{split}/") and c.endswith("loss")]
        if len(parts) > 1 and f"{split}/loss" not in raw.columns:
            read = [numeric_column(raw, c, path) for c in parts]
            raw.columns[f"{split}/loss"] = np.sum([values for values, _ in read], axis=0)
            written = [nan for _, nan in read if nan is not None]
            if written:  # a NaN written in a part is a NaN written in the sum
                raw.explicit_nan[f"{split}/loss"] = np.any(written, axis=0)
