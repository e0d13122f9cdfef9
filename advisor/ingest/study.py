"""Finished searches: an Optuna storage (SQLite file or URL) or a trials CSV -> one StudyTable.

The table has one row per trial: `number`, `state` (complete / pruned / failed / running),
`value` (the objective; NaN where none), `nonfinite` (the value or the last reported value was
NaN or infinite), `epochs` (intermediate values reported; NaN where unknown), `baseline` (the
enqueued baseline), `seed` (where a trial names its seed) and one `params_<name>` column per
parameter, as Optuna's own `trials_dataframe()` names them. The search-space distributions come
from the storage where it has them, else from the values tried ("observed").

Optuna is imported only to read a storage, never when this module is imported. Nothing is ever
created or written: a SQLite file is opened read-only, and only once it is known to hold an
Optuna schema; a server storage is inspected before Optuna touches it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from advisor.deadline import with_deadline
from advisor.errors import InputError
from advisor.inputs import regular_file, text_encoding

STATES = ("complete", "pruned", "failed", "running")
SEED_NAMES = ("seed", "random_seed", "random_state", "rng_seed")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_OPTUNA_TABLES = {"studies", "trials", "trial_params", "version_info"}
# Names known to be higher-is-better; which names are lower-is-better is decided in one place for
# every command (rules/tables/metric_direction.yaml, through roles.higher_is_better).
_MAXIMIZE = re.compile(r"acc|auc|f1|map|score|precision|recall|r2|iou|dice|bleu|rouge|reward|top1|top5", re.I)


@dataclass
class Distribution:
    """A parameter's search range, in the terms Optuna uses."""

    kind: str                      # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    zero: bool = False             # "0 or a log range": exactly 0 is a choice besides [low, high]
    source: str = "space"          # space: declared in the storage; observed: min..max of the values tried

    @property
    def numeric(self) -> bool:
        return self.kind in ("float", "int") and self.low is not None and self.high is not None


@dataclass
class StudyTable:
    source: str                    # the path or URL given
    name: str
    format: str                    # optuna-storage | optuna-journal | optuna-csv | wandb-csv | ray-csv | csv
    direction: str                 # minimize | maximize
    direction_from: str            # storage | option | metric name | assumed
    metric: str                    # the column the value came from ("value" for Optuna)
    trials: pd.DataFrame
    params: list[str]
    distributions: dict[str, Distribution] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def param_column(self, name: str) -> pd.Series:
        return self.trials[f"params_{name}"]


# --------------------------------------------------------------------------- entry point

def load_study(source: str, study: str | None = None, metric: str | None = None,
               direction: str | None = None, baseline_trial: int | None = None,
               timeout: float = 5.0) -> StudyTable:
    """Read a finished search: an Optuna storage URL, a SQLite file, or a trials CSV."""
    if direction is not None and direction not in ("minimize", "maximize"):
        raise InputError(f"--direction: expected minimize or maximize, got '{direction}'")
    secret = _password(source) if "://" in source else None
    try:
        return _load_study(source, hide_password(source), study, metric, direction, baseline_trial, timeout)
    except InputError as exc:
        text = str(exc)
        if secret and secret in text:  # a driver's message may quote the URL: never the password
            raise InputError(text.replace(secret, "***")) from None
        raise


_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^:/@?#]*):([^@/?#]*)@")


def _password(url: str) -> str | None:
    m = _URL_PASSWORD.match(url)
    return m.group(2) if m and m.group(2) else None


def hide_password(url: str) -> str:
    """A storage URL as it may be shown: user:***@host, as `search` and `worker` print it."""
    return _URL_PASSWORD.sub(r"\1:***@", url) if _password(url) else url


def _load_study(url_given: str, source: str, study: str | None, metric: str | None,
                direction: str | None, baseline_trial: int | None, timeout: float) -> StudyTable:
    """load_study, with `source` the name to show (its password hidden) and `url_given` the
    one to connect to."""
    if "://" in url_given:
        _no_metric(source, metric)
        url = _sqlite_url_read_only(url_given, source) if url_given.startswith("sqlite") else url_given
        table = _read_storage(source, url, study, timeout)
    else:
        path = Path(source)
        regular_file(path, "Optuna storage or trials CSV")  # a FIFO or a device: one line, at once
        with path.open("rb") as fh:
            head = fh.read(4096)
        if not head.strip():
            raise InputError(f"{source}: file is empty")
        if path.suffix.lower() in (".db", ".sqlite", ".sqlite3") and not head.startswith(_SQLITE_MAGIC):
            raise InputError(f"{source}: named like a SQLite storage, but not a SQLite database (no SQLite "
                             "header); give the Optuna storage file, or a trials CSV named .csv")
        if head.startswith(_SQLITE_MAGIC):
            _no_metric(source, metric)
            table = _read_storage(source, _sqlite_url_read_only(f"sqlite:///{path.resolve()}", source),
                                  study, timeout)
        elif head.lstrip().startswith(b"{") and b'"op_code"' in head:
            _no_metric(source, metric)
            table = _read_journal(source, path, study)
        elif b"\x00" in head and text_encoding(head)[0] == "utf-8":  # UTF-16 text is a CSV still
            raise InputError(f"{source}: binary data, neither an Optuna SQLite storage nor a trials CSV")
        else:
            if study is not None:
                raise InputError(f"--study: {source} is a trials CSV, which holds one study; "
                                 "--study applies to an Optuna storage")
            table = _read_csv(path, metric)
    if not len(table.trials):
        raise InputError(f"{source}: study '{table.name}' has no trials")
    if direction is not None:  # --direction overrides the storage's and the metric name's
        table.direction, table.direction_from = direction, "option"
        table.notes = [n for n in table.notes if not n.startswith("direction assumed")]
    if baseline_trial is not None:
        rows = table.trials["number"] == baseline_trial
        if not rows.any():
            raise InputError(f"--baseline-trial: {source} has no trial number {baseline_trial} "
                             f"(trials {int(table.trials['number'].min())}..{int(table.trials['number'].max())})")
        table.trials["baseline"] = rows
    if not table.format.startswith("optuna-") or table.format == "optuna-csv":
        # A CSV has no declared space: the range searched is what the trials other than the
        # baseline tried (a baseline often lies outside it).
        searched = table.trials[~table.trials["baseline"]]
        if searched.empty:
            searched = table.trials
        table.distributions = {p: _observed_distribution(p, searched[f"params_{p}"]) for p in table.params}
    return table


# --------------------------------------------------------------------------- Optuna storages

def _no_metric(source: str, metric: str | None) -> None:
    if metric is not None:
        raise InputError(f"--metric: names a CSV column; {source} is an Optuna storage, whose trials "
                         "carry their own value")


def _sqlite_url_read_only(url: str, source: str) -> str:
    """A sqlite:/// URL opened read-only, after checking its file exists and holds Optuna's tables
    (SQLite would otherwise create an empty database, and Optuna its tables)."""
    m = re.match(r"sqlite(?:\+\w+)?:///(.*)$", url)
    if not m or not m.group(1) or m.group(1).startswith(":memory:") or "?" in m.group(1):
        raise InputError(f"{url}: give the SQLite storage as sqlite:///path/to/file.db")
    path = Path(m.group(1))
    if not path.is_file():
        raise InputError(f"{source}: no such file" + (f" {path}" if source != str(path) else ""))
    import sqlite3

    ro = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        con = sqlite3.connect(ro, uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if "readonly" in str(exc) or "read-only" in str(exc):  # WAL mode needs its -shm file beside it
            raise InputError(f"{source}: a SQLite database in WAL mode, which SQLite can read only where it "
                             f"may create {path.name}-shm beside it; copy {path.name} (with its -wal file) "
                             "to a folder you can write, and audit the copy") from None
        raise InputError(f"{source}: not a readable SQLite database ({exc})") from None
    if not _OPTUNA_TABLES <= tables:
        raise InputError(f"{source}: a SQLite database, but not an Optuna storage (no studies/trials tables)")
    return f"sqlite:///{ro}&uri=true"


def _connect_args(url: str, timeout: float) -> dict[str, Any]:
    scheme = url.split(":", 1)[0].split("+")[0].lower()
    seconds = max(1, int(math.ceil(timeout)))
    if scheme in ("postgresql", "postgres"):
        return {"connect_timeout": seconds}
    if scheme in ("mysql", "mariadb"):
        return {"connect_timeout": seconds, "read_timeout": seconds}
    if scheme == "sqlite":
        return {"timeout": seconds}
    return {}


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _import_optuna():
    try:
        import optuna
    except ImportError:
        raise InputError("advisor audit needs Optuna to read a storage: pip install 'advisor[audit]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def _read_storage(source: str, url: str, study: str | None, timeout: float) -> StudyTable:
    optuna = _import_optuna()
    import sqlalchemy

    engine_kwargs = {"connect_args": _connect_args(url, timeout)}
    # Look before Optuna does: it would create its tables in an empty database.
    try:
        engine = sqlalchemy.create_engine(url, **engine_kwargs)
    except ModuleNotFoundError as exc:
        raise InputError(f"{source}: cannot open the storage: its database driver '{exc.name}' "
                         "is not installed") from None
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends: not a database URL
        raise InputError(f"{source}: not a storage URL ({_first_line(exc)})") from None

    def probe() -> set[str]:
        with engine.connect() as conn:
            return set(sqlalchemy.inspect(conn).get_table_names())

    try:
        tables = with_deadline(probe, timeout, source)
    except InputError:
        raise
    except Exception as exc:  # OperationalError: host unknown, refused, timed out, bad password
        raise InputError(f"{source}: cannot connect to the storage ({_first_line(exc)})") from None
    finally:
        engine.dispose()
    if not _OPTUNA_TABLES <= tables:
        raise InputError(f"{source}: not an Optuna storage (no studies/trials tables)")
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=True)
    except Exception as exc:  # a schema Optuna cannot read (too old or too new)
        raise InputError(f"{source}: cannot read the Optuna storage ({_first_line(exc)})") from None
    try:
        return _read_optuna(source, storage, study, "optuna-storage")
    finally:
        storage.remove_session()
        storage.engine.dispose()


def _read_journal(source: str, path: Path, study: str | None) -> StudyTable:
    """An Optuna journal file (JournalFileBackend), read without writing to it."""
    optuna = _import_optuna()
    try:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    except Exception as exc:
        raise InputError(f"{source}: not a readable Optuna journal ({_first_line(exc)})") from None
    return _read_optuna(source, storage, study, "optuna-journal")


def _read_optuna(source: str, storage, study: str | None, fmt: str) -> StudyTable:
    import optuna

    try:
        names = [s.study_name for s in storage.get_all_studies()]
    except Exception as exc:
        raise InputError(f"{source}: cannot read the Optuna storage ({_first_line(exc)})") from None
    if not names:
        raise InputError(f"{source}: the storage holds no studies")
    if study is None:
        if len(names) > 1:
            raise InputError(f"{source}: holds {len(names)} studies; choose one with --study "
                             f"({', '.join(sorted(names))})")
        study = names[0]
    elif study not in names:
        raise InputError(f"{source}: no study '{study}' (studies: {', '.join(sorted(names))})")
    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
        frozen = loaded.get_trials(deepcopy=False)
        directions = loaded.directions
    except Exception as exc:
        raise InputError(f"{source}: cannot read study '{study}' ({_first_line(exc)})") from None
    if len(directions) > 1:
        raise InputError(f"{source}: study '{study}' is multi-objective ({len(directions)} objectives); "
                         "advisor audits single-objective studies")
    return _from_frozen(source, study, frozen, directions[0].name.lower(), fmt)


def _from_frozen(source: str, name: str, frozen: list, direction: str, fmt: str) -> StudyTable:
    state_of = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed",
                "RUNNING": "running", "WAITING": "running"}
    rows, params, dists = [], [], {}
    any_reports = any(t.intermediate_values for t in frozen)
    for t in frozen:
        iv = t.intermediate_values
        last = iv[max(iv)] if iv else None
        if t.value is not None and not (isinstance(t.value, (int, float)) and not isinstance(t.value, bool)):
            raise InputError(f"{source}: trial {t.number} of study '{name}': its value {t.value!r:.40} is not a "
                             "number (the storage was edited by hand?)")
        value = t.value if t.value is not None else math.nan
        epochs = _user_epochs(t.user_attrs)
        if epochs is None and any_reports:
            epochs = len(iv)
        row = {"number": t.number, "state": state_of.get(t.state.name, "running"), "value": value,
               "nonfinite": _nonfinite(t.value) or _nonfinite(last),
               "epochs": math.nan if epochs is None else float(epochs),
               # a configuration carried over from an earlier phase, or a planned grid point, is
               # enqueued but is not a baseline (advisor's scripts mark them)
               "enqueued": "fixed_params" in t.system_attrs
                           and not (t.user_attrs.get("seeded_from") or t.user_attrs.get("planned")),
               "baseline": bool(t.user_attrs.get("baseline", False)),
               "seed": t.user_attrs.get("seed")}
        hp = t.user_attrs.get("hp") if isinstance(t.user_attrs.get("hp"), dict) else {}
        for p, v in t.params.items():
            if p.lower() in SEED_NAMES:
                row["seed"] = v
                continue
            if p not in params:
                params.append(p)
            if dists.get(p) is None or not dists[p].zero:
                dists[p] = _from_optuna_distribution(t.distributions[p])
            # advisor's "0 or a log range" (advisor search, the emitted script): the study stores the
            # raw draw below the floor, the trial's hp the 0 it ran with; the table holds the 0
            if hp.get(p) == 0 and isinstance(v, float) and v > 0 and dists[p].log and not dists[p].zero:
                d = dists[p]
                dists[p] = Distribution(d.kind, low=d.low * 10, high=d.high, log=True, step=d.step, zero=True,
                                        source=d.source)
            if hp.get(p) == 0 and isinstance(v, float) and v > 0 and dists[p].zero:
                v = 0.0
            row[f"params_{p}"] = v
        rows.append(row)
    trials = _frame(rows, params)
    _mark_enqueued_baseline(trials)
    return StudyTable(source=source, name=name, format=fmt, direction=direction,
                      direction_from="storage", metric="value", trials=trials, params=params,
                      distributions=dists)


def _from_optuna_distribution(d) -> Distribution:
    kind = type(d).__name__
    if kind == "FloatDistribution":
        return Distribution("float", float(d.low), float(d.high), bool(d.log), d.step)
    if kind == "IntDistribution":
        return Distribution("int", float(d.low), float(d.high), bool(d.log), d.step)
    return Distribution("categorical", choices=list(d.choices))


def _user_epochs(attrs: dict) -> int | None:
    for key in ("epochs", "n_epochs", "epochs_trained"):
        v = attrs.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return int(v)
    return None


def _nonfinite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v)


def _frame(rows: list[dict], params: list[str]) -> pd.DataFrame:
    cols = ["number", "state", "value", "nonfinite", "epochs", "enqueued", "baseline", "seed"]
    trials = pd.DataFrame(rows, columns=cols + [f"params_{p}" for p in params])
    trials = trials.sort_values("number", kind="stable").reset_index(drop=True)
    trials["value"] = trials["value"].astype(float)
    trials["epochs"] = trials["epochs"].astype(float)
    for col in ("nonfinite", "enqueued", "baseline"):
        trials[col] = trials[col].fillna(False).astype(bool)
    return trials


def _mark_enqueued_baseline(trials: pd.DataFrame) -> None:
    """The enqueued baseline: the first trial, when it was enqueued and not a seed re-run
    (`study.enqueue_trial(defaults)` before `optimize`)."""
    if trials["baseline"].any() or not len(trials):
        return
    first = trials.index[0]
    if trials.at[first, "enqueued"] and (trials.at[first, "seed"] is None or pd.isna(trials.at[first, "seed"])):
        trials.at[first, "baseline"] = True


# --------------------------------------------------------------------------- trial CSVs

MAX_CSV_BYTES = 2**30  # a trials table of a million trials is far below this


def _separator(path: Path, text: str) -> str:
    """Tab for .tsv; else whichever of , ; | and tab the header line holds most of (a TSV or a
    European ';' export named .csv is common)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: header.count(sep) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] > counts[","] else ","


def _ragged_row(text: str, sep: str) -> tuple[int, int, int] | None:
    """(line, fields, header fields) of the first row whose field count differs from the
    header's: pandas would shift such a row's columns or make its first column the index."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text), delimiter=sep)
    width = None
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            return reader.line_num, len(row), width
    return None


def _read_csv(path: Path, metric: str | None) -> StudyTable:
    from advisor.inputs import decode_text, read_bytes

    text = decode_text(read_bytes(path, "trials CSV", MAX_CSV_BYTES), path, "trials CSV")
    sep = _separator(path, text)
    try:
        ragged = _ragged_row(text, sep)
    except Exception as exc:  # csv.Error: a NUL or an unterminated quote
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    if ragged:
        raise InputError(f"{path}: line {ragged[0]} has {ragged[1]} fields, the header {ragged[2]}; "
                         "fix that row (a comma inside an unquoted value?)")
    try:
        import io

        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV ({_first_line(exc)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise InputError(f"{path}: header only, no trials")
    cols = list(df.columns)
    if any(c.startswith("config/") for c in cols) or {"trial_id", "training_iteration"} <= set(cols):
        fmt = "ray-csv"
    elif "number" in cols and (any(c.startswith("params_") for c in cols) or "value" in cols):
        fmt = "optuna-csv"
    elif {"State", "Name"} <= set(cols) or "Sweep" in cols:
        fmt = "wandb-csv"
    else:
        fmt = "csv"
    if "values_0" in cols and "value" not in cols and metric is None:
        raise InputError(f"{path}: a multi-objective study (values_0, values_1 ...); "
                         "name the objective to audit with --metric")
    value_col = _value_column(path, df, metric)
    raw = df[value_col].str.strip()
    values = pd.to_numeric(raw.replace("", None), errors="coerce")
    bad = (raw != "") & values.isna() & (raw.str.lower() != "nan")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{path}: row {i + 2}, column '{value_col}': '{raw.iloc[i]}' is not a number")
    has_states = any(c in cols for c in ("state", "State", "status", "Status"))
    if values.isna().all() and not (raw.str.lower() == "nan").any() and not has_states:
        raise InputError(f"{path}: column '{value_col}' has no values")
    numbers = _numbers(df, fmt, path)
    epochs = _epochs(df)
    states = _states(df, fmt, epochs)
    param_cols = _param_columns(df, fmt, value_col)
    seed_col = next((c for c, n in param_cols.items() if n.lower() in SEED_NAMES), None) or \
        next((c for c in cols if c.lower() in {f"user_attrs_{s}" for s in SEED_NAMES}), None)
    names = {c: n for c, n in param_cols.items() if c != seed_col}
    params = list(names.values())
    converted = {c: _column(df[c]) for c in names}
    baseline_col = next((c for c in ("user_attrs_baseline", "baseline") if c in cols), None)
    enqueued_col = next((c for c in ("system_attrs_fixed_params", "user_attrs_fixed_params") if c in cols), None)
    rows = []
    for i in range(len(df)):
        v = values.iloc[i]
        state = states[i]
        nonfinite = raw.iloc[i] != "" and (raw.iloc[i].lower() == "nan" or _nonfinite(v))
        if state == "complete" and pd.isna(v) and not nonfinite:
            state = "failed"  # finished without the objective: it never got to report it
        row = {"number": numbers[i], "state": state, "value": float(v) if pd.notna(v) else math.nan,
               "nonfinite": nonfinite, "epochs": epochs[i],
               "enqueued": bool(enqueued_col and df[enqueued_col].iloc[i].strip()),
               "baseline": bool(baseline_col and _truthy(df[baseline_col].iloc[i])),
               "seed": (df[seed_col].iloc[i].strip() or None) if seed_col else None}
        for col, name in names.items():
            row[f"params_{name}"] = converted[col][i]
        rows.append(row)
    trials = _frame(rows, params)
    _mark_enqueued_baseline(trials)
    direction, direction_from = _guess_direction(value_col if value_col != "value" else None)
    notes = []
    if direction_from == "assumed":
        notes.append("direction assumed minimize (Optuna's default); give --direction if higher is better")
    return StudyTable(source=str(path), name=path.stem, format=fmt, direction=direction,
                      direction_from=direction_from, metric=value_col, trials=trials, params=params,
                      notes=notes)


def _column(raw: pd.Series) -> list[Any]:
    """A parameter column: numbers where every non-empty cell is one, else the text."""
    text = raw.str.strip()
    nums = pd.to_numeric(text.replace("", None), errors="coerce")
    if ((text == "") | nums.notna()).all() and nums.notna().any():
        return [None if pd.isna(x) else (int(x) if float(x).is_integer() and "." not in t and "e" not in t.lower()
                                          else float(x)) for x, t in zip(nums, text)]
    return [t or None for t in text]


def _truthy(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")


_VALUE_HINT = re.compile(r"^(val|valid|validation|eval|test)([_/.\-]|$)|^(value|objective|score)$", re.I)


def _value_column(path: Path, df: pd.DataFrame, metric: str | None) -> str:
    numeric = [c for c in df.columns
               if pd.to_numeric(df[c].str.strip().replace("", None), errors="coerce").notna().any()]
    if metric is not None:
        if metric not in df.columns:
            raise InputError(f"{path}: no column '{metric}' for --metric (numeric columns: {', '.join(numeric) or 'none'})")
        return metric
    if "value" in df.columns:
        return "value"
    hinted = [c for c in numeric if _VALUE_HINT.match(c)]
    if len(hinted) == 1:
        return hinted[0]
    shown = ", ".join(hinted or numeric) or "none"
    raise InputError(f"{path}: no value column; name the objective with --metric COLUMN "
                     f"({'candidates' if hinted else 'numeric columns'}: {shown})")


def _numbers(df: pd.DataFrame, fmt: str, path: Path | None = None) -> list[int]:
    if "number" in df.columns:
        raw = df["number"].str.strip()
        nums = pd.to_numeric(raw, errors="coerce")
        bad = nums.isna() | (nums % 1 != 0)
        if bad.any():  # never renumbered in silence: --baseline-trial and the findings name them
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path}: row {i + 2}, column 'number': {raw.iloc[i]!r:.40} is not a trial number")
        dup = nums.duplicated(keep="first")
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            first = int(np.flatnonzero((nums == nums.iloc[i]).to_numpy())[0])
            raise InputError(f"{path}: row {i + 2}: trial number {int(nums.iloc[i])} appears twice "
                             f"(first in row {first + 2})")
        return [int(n) for n in nums]
    if fmt == "wandb-csv":
        if "Created" in df.columns:
            created = pd.to_datetime(df["Created"], errors="coerce")
            if created.notna().all():
                return [int(i) for i in np.argsort(np.argsort(created.to_numpy(), kind="stable"), kind="stable")]
        return list(range(len(df)))[::-1]  # the W&B runs table lists the newest run first
    return list(range(len(df)))


def _epochs(df: pd.DataFrame) -> list[float]:
    for col in ("training_iteration", "epochs", "user_attrs_epochs", "user_attrs_n_epochs", "epoch"):
        if col in df.columns:
            e = pd.to_numeric(df[col].str.strip().replace("", None), errors="coerce")
            return [float(x) if pd.notna(x) else math.nan for x in e]
    return [math.nan] * len(df)


def _states(df: pd.DataFrame, fmt: str, epochs: list[float]) -> list[str]:
    for col in ("state", "State", "status", "Status"):
        if col in df.columns:
            return [_state(s) for s in df[col]]
    states = ["complete"] * len(df)
    known = [e for e in epochs if not math.isnan(e)]
    if fmt == "ray-csv" and known:
        # A Ray trial that stopped before the others' last iteration was stopped by its scheduler.
        most = max(known)
        states = ["pruned" if not math.isnan(e) and e < most else "complete" for e in epochs]
    return states


def _state(text: str) -> str:
    t = text.strip().lower().replace("trialstate.", "")
    if t in ("complete", "completed", "finished", "terminated", "success", "succeeded", "done"):
        return "complete"
    if t in ("pruned", "killed", "early_stopped", "stopped"):
        return "pruned"
    if t in ("fail", "failed", "crashed", "error", "errored"):
        return "failed"
    return "running"


_NOT_PARAMS = {"number", "value", "state", "datetime_start", "datetime_complete", "duration",
               "trial_id", "training_iteration", "done", "time_total_s", "timestamp", "logdir",
               "Name", "State", "Notes", "User", "Tags", "Created", "Runtime", "Sweep", "epoch",
               "_step", "_runtime", "_timestamp", "status", "experiment_id", "date", "hostname",
               "node_ip", "pid", "time_this_iter_s", "iterations_since_restore"}


def _param_columns(df: pd.DataFrame, fmt: str, value_col: str) -> dict[str, str]:
    """CSV column -> parameter name."""
    cols = [c for c in df.columns if c != value_col]
    if fmt == "optuna-csv" or any(c.startswith("params_") for c in cols):
        return {c: c[len("params_"):] for c in cols if c.startswith("params_")}
    prefixed = {c: re.split(r"[./]", c, maxsplit=1)[1] for c in cols if re.match(r"config[./]", c)}
    if prefixed or fmt == "ray-csv":
        return prefixed
    # A W&B runs export mixes config keys and summary metrics without a prefix: the config keys
    # are the columns named like a known hyperparameter (or a seed).
    from advisor.facts.params import param_aliases

    names = param_aliases()
    return {c: c for c in cols if c not in _NOT_PARAMS and
            (_canonical_key(c) in names or c.lower() in SEED_NAMES)}


def _canonical_key(name: str) -> str:
    return re.split(r"[./]", name)[-1].strip().lower().replace("-", "_")


def _observed_distribution(name: str, values: pd.Series) -> Distribution:
    present = values.dropna()
    nums = pd.to_numeric(present, errors="coerce")
    if len(present) and nums.notna().all() and not present.map(lambda v: isinstance(v, bool)).any():
        lo, hi = float(nums.min()), float(nums.max())
        integral = bool(np.all(np.mod(nums, 1) == 0))
        log = lo > 0 and (hi / lo >= 100 or _canonical_key(name) in _LOG_BY_NAME)
        return Distribution("int" if integral else "float", lo, hi, log, source="observed")
    return Distribution("categorical", choices=sorted({str(v) for v in present}), source="observed")


_LOG_BY_NAME = {"lr", "learning_rate", "weight_decay", "wd", "eps", "l2", "alpha", "lambda", "reg"}


def _guess_direction(metric: str | None) -> tuple[str, str]:
    """A trials CSV's direction from its value column's name: lower-is-better by the table in
    rules/tables/metric_direction.yaml (the one diagnose reads), higher-is-better for the names
    known to be; any other name (or Optuna's bare `value`): minimize, as Optuna assumes."""
    if metric:
        from advisor.ingest.roles import higher_is_better

        if not higher_is_better(metric):
            return "minimize", "metric name"
        if _MAXIMIZE.search(metric):
            return "maximize", "metric name"
    return "minimize", "assumed"
