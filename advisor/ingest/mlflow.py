"""MLflow runs, two ways to one raw table (runs side by side, each named by its run name):

- the file store read directly (no MLflow library needed): a run folder
  `mlruns/<experiment>/<run>/` (its `metrics/` holds one file per metric, a line per logged value:
  `timestamp value step`; a key with '/' is a sub-folder) or an experiment folder of runs;
- any tracking URI the MLflow client supports (`sqlite:///mlflow.db`, `http://host:5000`,
  `databricks`, a file store), through the client library (`pip install 'advisor[mlflow]'`):
  given run ids, or every run of a named experiment.

Values are placed by step; a step logged twice keeps the later value (in log order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
    names = [_run_name(r) for r in runs]
    if len(set(names)) < len(names):
        names = [f"{n} ({r.name[:8]})" for n, r in zip(names, runs)]
    return _side_by_side(names, series)


def _side_by_side(names: list[str], series: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]):
    """One raw table on the union of the steps; with several runs, a group of columns per run."""
    from advisor.ingest.readers import RawLog

    steps = np.unique(np.concatenate([s for s, _ in series.values()]))
    several = len(names) > 1
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


# --- through the MLflow client -----------------------------------------------------------------

@dataclass(frozen=True)
class TrackedRuns:
    """Runs on an MLflow tracking server or store: these run ids, or all runs of an experiment."""

    uri: str
    run_ids: tuple[str, ...] = ()
    experiment: str | None = None
    shown: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.shown or f"mlflow:{self.experiment or ','.join(self.run_ids)}"

    def local_file(self) -> Path | None:
        """The database file behind a sqlite URI (an input: no report may be written onto it)."""
        if self.uri.startswith("sqlite:///"):
            return Path(self.uri[len("sqlite:///"):])
        return None


def _client(uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InputError("reading MLflow through a tracking URI needs the MLflow client: "
                         "pip install 'advisor[mlflow]' (an mlruns/ folder is read without it)") from None
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "creating tables" chatter on stderr
    return MlflowClient(tracking_uri=uri)


def tracked_runs(uri: str | None, run_ids: list[str], experiment: str | None) -> TrackedRuns:
    """The runs the options name, checked before any client is made."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise InputError("--mlflow-run/--experiment: give --tracking-uri (or set MLFLOW_TRACKING_URI), "
                         "e.g. --tracking-uri sqlite:///mlflow.db")
    if bool(run_ids) == bool(experiment):
        raise InputError("give --mlflow-run ID (one or more) or --experiment NAME, not both")
    source = TrackedRuns(uri, tuple(run_ids), experiment)
    db = source.local_file()
    # Opening a sqlite URI that names no file would create an empty MLflow database there.
    if db is not None and not db.is_file():
        raise InputError(f"--tracking-uri {uri}: no such database file {db}")
    if uri.startswith(("http://", "https://")):
        # a server that does not answer: a few seconds, not MLflow's minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store read-only-ish
    return source


def read_tracked(source: TrackedRuns):
    client = _client(source.uri)
    from mlflow.exceptions import MlflowException

    try:
        if source.experiment is not None:
            exp = client.get_experiment_by_name(source.experiment)
            if exp is None:
                known = sorted(e.name for e in client.search_experiments())
                raise InputError(f"{source.uri}: no experiment '{source.experiment}' "
                                 f"(experiments: {', '.join(known[:20]) or 'none'})")
            runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"],
                                      max_results=1000)
            if not runs:
                raise InputError(f"{source.uri}: experiment '{source.experiment}' has no runs")
        else:
            runs = [client.get_run(run_id) for run_id in source.run_ids]
        series: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
        for i, run in enumerate(runs):
            for key in sorted(run.data.metrics):
                history = client.get_metric_history(run.info.run_id, key)
                steps: dict[int, float] = {}
                for m in sorted(history, key=lambda m: m.timestamp):  # stable: log order within a tick
                    steps.pop(m.step, None)
                    steps[m.step] = m.value
                order = sorted(steps)
                series[(i, key)] = (np.asarray(order, dtype=np.int64),
                                    np.asarray([steps[s] for s in order], dtype=float))
    except MlflowException as exc:
        first = str(exc.message if hasattr(exc, "message") else exc).strip().splitlines()[0]
        raise InputError(f"{source.uri}: {first}") from None
    except (OSError, ConnectionError) as exc:
        raise InputError(f"{source.uri}: cannot reach the tracking store ({exc.__class__.__name__})") from None
    if not series:
        raise InputError(f"{source}: the MLflow run logged no metrics")
    names = [run.info.run_name or run.info.run_id for run in runs]
    if len(set(names)) < len(names):
        names = [f"{n} ({run.info.run_id[:8]})" for n, run in zip(names, runs)]
    return _side_by_side(names, series)
