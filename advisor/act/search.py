"""`advisor search`: the planned search, run with Optuna on the user's task.

advisor does not optimize hyperparameters itself: Optuna's samplers, pruners and storages do.
This module chooses and configures them from the plan (advisor's space format,
:mod:`advisor.space`), owns the objective (the trainer of :mod:`advisor.act.train`, or the
user's own `objective(hp, report)`), and runs the phases:

1. **search**: the baseline (the user's current configuration) first, then the sampler's
   configurations; the validation metric reported every epoch to the pruner; a global trial
   budget (MaxTrialsCallback, counted over COMPLETE, PRUNED and FAIL trials) that holds across
   resumes and workers; the plan's stop rules (the best improves by less than 0.1% per trial over
   the last N trials; the same best for N trials); a wall-clock --timeout per invocation.
2. **final**: the best `top_k` distinct configurations re-run, full length and unpruned, with
   `seeds_final` new seeds (seed+1 ..), as trials of the same study (user attributes `final`,
   `config`, `seed`), reported as mean and standard deviation.
3. **audit**: `advisor audit`'s rules on the finished study.

The study's storage is plain Optuna (SQLite by default; a journal file for several workers on
one host; PostgreSQL / MySQL for many machines), so optuna-dashboard opens it. The search's
settings (task, space, budget, seed ...) are stored in the study's user attributes
(`advisor_search`), so `--resume` and `advisor worker` need only the storage and the study name.

Per trial (user attributes): `hp` (every hyperparameter passed to the task, decoded, with its
`seed` and planned `epochs`), `epochs` (epochs trained), `worker` (host:pid), `baseline`, and on failure
`fail_reason`; a trial whose loss or metric turned non-finite is pruned at once with
`pruned_reason` and `diverged`; a trial cut off by Ctrl-C or a killed process is FAIL with
`interrupted` (it does not count against the budget).

The JSON document (schema ``advisor.search/1``) of `advisor search --json`:

    schema_version  "advisor.search/1"
    task, study, storage, dashboard (the optuna-dashboard command), device, resumed
    direction, metric, strategy, sampler {type, args}, pruner {type, args}
    budget          {trials, timeout_s, epochs, top_k, seeds_final}
    stopped_by      budget | grid | stale | timeout | epochs | none (a search whose first trials all
                    fail stops with an error instead)
    best            {number, value, params, baseline} or null: the best search trial
    baseline        {number, value, params} or null
    trials          {complete, pruned, failed, interrupted, running, total}: the search trials
    final           [{params, mean, std, seeds, values, failed, search_number, search_value}], best first
    audit           [finding]: advisor audit's findings on the study
    epochs_used     epochs trained by this study (search + final)
    epochs_search, epochs_final
    epochs_saved_by_pruning   sum over pruned trials of (planned - trained) epochs
    failures        [{number, reason}]: the first failed or diverged trials
    seconds, notes
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Optional

from pydantic import BaseModel

from advisor.errors import AdvisorError, InputError
from advisor.ingest.study import with_deadline
from advisor.space import Space

SCHEMA = "advisor.search/1"
SANITY_SCHEMA = "advisor.search-sanity/1"
SPEC_ATTR = "advisor_search"
STOP_ATTR = "advisor_stopped"
FINALISTS_ATTR = "advisor_finalists"
DEFAULT_STORAGE = "sqlite:///advisor-search.db"
DEFAULT_JOURNAL = "advisor-search.journal"


# =========================================================================== the space

def space_from_file(path) -> Space:
    """A `--plan` file: advisor's space YAML (what `advisor plan --emit yaml` writes) or a W&B sweep."""
    from advisor.ingest.space import load_space

    space = load_space(path).space
    _check_space(space, str(path))
    return space


def _check_space(space: Space, where: str) -> None:
    if not space.params:
        raise InputError(f"{where}: the space searches no parameters (params: is empty)")
    for name, p in space.params.items():
        if p.by is not None and p.by not in space.params:
            raise InputError(f"{where}: parameter '{name}': 'by: {p.by}' names no searched parameter")
        for _, low, high in p.bounds():
            if p.type != "categorical" and low > high:
                raise InputError(f"{where}: parameter '{name}': low {low:g} is above high {high:g}")
            if p.log and low <= 0:
                raise InputError(f"{where}: parameter '{name}': a log range cannot start at {low:g} "
                                 "(use a positive floor and zero: true; `advisor check` explains)")
        if space.strategy in ("grid", "manual") and p.type == "float" and not p.choices and p.by is None:
            raise InputError(f"{where}: parameter '{name}': a {space.strategy} search needs its grid points "
                             "as 'choices'")


def plan_space(*, budget_hours: float, trial_hours: float, epochs: Optional[int], params: Optional[list[str]],
               optimizer: Optional[str], current: dict[str, Any], workers: int, metric: str,
               direction: str, name: str) -> tuple[Space, Any]:
    """Build the plan with advisor.advice.plan (strategy, parameters, ranges, pruner, stop rules)
    and return it as a space, with the plan."""
    from advisor.advice.plan import PlanInput, build_plan
    from advisor.emit.space import to_space
    from advisor.facts.hardware import detect

    hw = detect(None, None)
    plan = build_plan(PlanInput(budget_hours=budget_hours, trial_hours=trial_hours, epochs=epochs,
                                hardware=hw, workers=workers, params=params, optimizer=optimizer,
                                current=current, metric=metric, direction=direction, name=name))
    if not plan.tune:
        why = next((r for r in plan.reasons if r.severity != "info"), plan.reasons[0] if plan.reasons else None)
        raise InputError("the plan says not to search" + (f": {why.code} {why.message} {why.advice}" if why else "")
                         + " (`advisor plan` shows the reasons)")
    return to_space(plan), plan


def demo_space(settings=None) -> Space:
    """The demo's plan: rules/search.yaml `demo` through the plan (a medium budget)."""
    from advisor.act.train import load_settings
    from advisor.advice.plan import parse_current

    d = (settings or load_settings()).demo
    current = parse_current({k: str(v) for k, v in d.current.items()}, d.optimizer)
    space, _ = plan_space(budget_hours=d.budget_hours, trial_hours=d.trial_hours, epochs=d.epochs,
                          params=list(d.params), optimizer=d.optimizer, current=current, workers=1,
                          metric="val_accuracy", direction="maximize", name="demo")
    space.trials = d.trials
    return space


def space_key(space: Space) -> dict[str, Any]:
    """What makes two searches the same search: the parameters and their ranges."""
    return {name: p.model_dump(exclude_none=True, exclude_defaults=True) for name, p in sorted(space.params.items())}


def space_difference(old: Space, new: Space) -> Optional[str]:
    """A short description of how two spaces differ, or None when they are the same search."""
    a, b = space_key(old), space_key(new)
    if a == b:
        return None
    gone = sorted(set(a) - set(b))
    added = sorted(set(b) - set(a))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    parts = []
    if changed:
        k = changed[0]
        parts.append(f"{k} was {_short(a[k])}, now {_short(b[k])}")
    if added:
        parts.append(f"adds {', '.join(added)}")
    if gone:
        parts.append(f"drops {', '.join(gone)}")
    return "; ".join(parts)


def _short(spec: dict) -> str:
    if "choices" in spec:
        return "[" + ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in spec["choices"]) + "]"
    if "ranges" in spec:
        return json.dumps(spec["ranges"])
    low, high = spec.get("low"), spec.get("high")
    return f"{low:g}..{high:g}" + (" log" if spec.get("log") else "") if low is not None else json.dumps(spec)


# =========================================================================== Optuna from the plan

def _zero_floor(low: float) -> float:
    return low / 10.0


def _gridded(space: Space) -> bool:
    return space.strategy in ("grid", "manual")


def _effective(p, key: Optional[str] = None):
    """The parameter as one distribution: a `by` parameter's range (and grid points) for the
    value `key` of the parameter it depends on."""
    if p.by is None or key is None:
        return p
    low, high = p.ranges[key]
    grid = ((getattr(p, "model_extra", None) or {}).get("grid") or {}).get(key)
    return p.model_copy(update={"by": None, "ranges": None, "low": float(low), "high": float(high),
                                "choices": list(grid) if grid else None})


def _floor(p) -> float:
    """Where a zero/log parameter's log range starts: its lowest positive grid point, else low."""
    positive = [c for c in (p.choices or []) if isinstance(c, (int, float)) and c > 0]
    return float(min(positive)) if positive else float(p.low)


def _has_zero(p) -> bool:
    return bool(p.log and (p.zero or any(c == 0 for c in (p.choices or []))))


def _suggest_one(trial, name: str, p, gridded: bool):
    if p.type == "categorical":
        return trial.suggest_categorical(name, list(p.choices))
    if p.choices and not gridded:  # listed values of a numeric parameter, sampled as given
        return trial.suggest_categorical(name, list(p.choices))
    if p.choices:  # grid points: the GridSampler (or the enqueued grid) gives the exact values
        low, high = (_floor(p) if p.log else min(p.choices)), max(p.choices)
    else:
        low, high = p.low, p.high
    if p.type == "int":
        step = 1 if p.log or p.choices else int(p.step or 1)
        return trial.suggest_int(name, int(low), int(high), log=p.log and low > 0, step=step)
    if _has_zero(p):
        floor = _floor(p)
        raw = trial.suggest_float(name, _zero_floor(floor), float(high), log=True)
        return 0.0 if raw < floor else raw
    if p.log:
        return trial.suggest_float(name, float(low), float(high), log=True)
    return trial.suggest_float(name, float(low), float(high), step=None if p.choices else p.step)


def suggest(trial, space: Space) -> dict[str, Any]:
    """The trial's searched hyperparameters. `by` parameters after the one they depend on, under
    the Optuna name `<name>_<value>` (one distribution per value); `zero: true` log parameters
    draw from low/10 and mean exactly 0 below low (the emitted Optuna script does the same), and
    numeric grid points keep their numeric, log-scaled distribution in the storage."""
    gridded = _gridded(space)
    hp: dict[str, Any] = {}
    for name, p in space.params.items():
        if p.by is None:
            hp[name] = _suggest_one(trial, name, p, gridded)
    for name, p in space.params.items():
        if p.by is not None:
            key = str(hp.get(p.by))
            if key in (p.ranges or {}):  # no range for this value: the parameter does not apply
                hp[name] = _suggest_one(trial, f"{name}_{key}", _effective(p, key), gridded)
    return hp


def _internal(p, value) -> Any:
    """A decoded value -> what the study stores (0 of a zero/log parameter -> its floor / 10)."""
    if p.type == "categorical" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if _has_zero(p) and value == 0:
        return _zero_floor(_floor(p))
    return value


def to_params(hp: dict[str, Any], space: Space) -> dict[str, Any]:
    """Hyperparameters -> the study's parameter names and values (for enqueue_trial)."""
    params: dict[str, Any] = {}
    for name, value in hp.items():
        p = space.params.get(name)
        if p is None:
            continue
        if p.by is not None:
            key = str(hp.get(p.by))
            if p.by in hp and key in (p.ranges or {}):
                params[f"{name}_{key}"] = _internal(_effective(p, key), value)
        else:
            params[name] = _internal(p, value)
    return params


def grid_points(space: Space) -> Optional[dict[str, list]]:
    """GridSampler's search space ({Optuna name: internal values}), or None when the space has
    conditional (`by`) parameters, whose grid is enqueued configuration by configuration."""
    if any(p.by is not None for p in space.params.values()):
        return None
    grid: dict[str, list] = {}
    for name, p in space.params.items():
        if p.type == "categorical":
            grid[name] = list(p.choices)
        elif p.choices:
            values = list(dict.fromkeys(list(p.choices) + ([0.0] if p.zero and p.log and 0 not in p.choices else [])))
            grid[name] = [_internal(p, v) for v in values]
        elif p.type == "int" and not p.log:
            grid[name] = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
        else:
            raise InputError(f"parameter '{name}': a grid needs its points as 'choices'")
    return grid


def grid_configs(space: Space) -> list[dict[str, Any]]:
    """Every configuration of a grid with conditional parameters, as hyperparameters."""
    import itertools

    plain = {n: p for n, p in space.params.items() if p.by is None}
    names = list(plain)
    values = []
    for n in names:
        p = plain[n]
        if p.choices:
            values.append(list(p.choices))
        elif p.type == "int":
            values.append(list(range(int(p.low), int(p.high) + 1)))
        else:
            raise InputError(f"parameter '{n}': a grid needs its points as 'choices'")
    configs = []
    for combo in itertools.product(*values):
        base = dict(zip(names, combo))
        cond = []
        for n, p in space.params.items():
            if p.by is None:
                continue
            key = str(base.get(p.by))
            if key not in (p.ranges or {}):
                continue
            q = _effective(p, key)
            grid = list(q.choices) if q.choices else [q.low, q.high]
            cond.append([(n, v) for v in grid])
        for extra in itertools.product(*cond) if cond else [()]:
            configs.append({**base, **dict(extra)})
    return configs


def sampler_spec(space: Space, seed: int, workers: int = 1, index: int = 0,
                 n_trials: Optional[int] = None) -> tuple[str, dict[str, Any]]:
    """The Optuna sampler the plan asks for, as (class name, every argument): plain data, so the
    Optuna script emitter and the search can share it. `index` (the worker) offsets the seed of
    the random samplers so that parallel workers do not draw the same points; QMC keeps one seed
    (Optuna hands out the Sobol indices through the storage)."""
    extra = getattr(space, "model_extra", None) or {}
    planned = dict(extra.get("sampler") or {})
    kind = planned.pop("type", None)
    if space.strategy in ("grid", "manual"):
        grid = grid_points(space)
        if grid is not None:
            return "GridSampler", {"search_space": grid, "seed": seed}
        return "RandomSampler", {"seed": seed + index}
    if kind is None:
        kind = "QMCSampler" if space.strategy == "random" else "TPESampler"
    if kind == "QMCSampler":
        return "QMCSampler", {"qmc_type": planned.get("qmc_type", "sobol"),
                              "scramble": bool(planned.get("scramble", True)),
                              "seed": seed, "independent_sampler": ("RandomSampler", {"seed": seed + index}),
                              "warn_independent_sampling": False, "warn_asynchronous_seeding": False}
    if kind == "TPESampler":
        startup = planned.get("n_startup_trials")
        if startup is None:
            from advisor.advice.plan import tables

            s = tables()["budget"]["samplers"]
            n = n_trials or space.trials or 100
            startup = max(int(s["tpe_startup_min"]), min(int(s["tpe_startup_max"]), round(s["tpe_startup_share"] * n)))
        return "TPESampler", {"n_startup_trials": int(startup), "n_ei_candidates": 24, "multivariate": True,
                              "group": True, "constant_liar": workers > 1, "consider_prior": True,
                              "prior_weight": 1.0, "consider_magic_clip": True, "consider_endpoints": False,
                              "warn_independent_sampling": False, "seed": seed + index}
    return "RandomSampler", {"seed": seed + index}


def make_sampler(space: Space, seed: int, workers: int = 1, index: int = 0, n_trials: Optional[int] = None):
    import optuna

    kind, args = sampler_spec(space, seed, workers, index, n_trials)
    args = dict(args)
    if "independent_sampler" in args:
        sub, sub_args = args["independent_sampler"]
        args["independent_sampler"] = getattr(optuna.samplers, sub)(**sub_args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning for some arguments
        return getattr(optuna.samplers, kind)(**args)


def pruner_spec(space: Space, epochs: int) -> tuple[str, dict[str, Any]]:
    """The Optuna pruner of the plan, as (class name, every argument)."""
    p = space.pruner
    extra = getattr(p, "model_extra", None) or {}
    from advisor.advice.plan import tables

    t = tables()["budget"]["pruner"]
    startup = p.n_startup_trials if p.n_startup_trials is not None else int(t["n_startup_trials"])
    warm = p.n_warmup_steps if p.n_warmup_steps is not None else max(1, round(t["warmup_share"] * epochs))
    median = ("MedianPruner", {"n_startup_trials": int(startup), "n_warmup_steps": int(warm),
                               "interval_steps": int(extra.get("interval_steps", 1)), "n_min_trials": 1})
    if p.type == "median":
        return median
    if p.type == "patient":
        patience = p.patience if p.patience is not None else \
            max(int(t["min_patience"]), round(t["patience_share"] * epochs))
        return "PatientPruner", {"wrapped_pruner": median, "patience": int(patience), "min_delta": 0.0}
    if p.type == "hyperband":
        return "HyperbandPruner", {
            "min_resource": int(extra.get("min_resource") or max(1, round(t["min_resource_share"] * epochs))),
            "max_resource": int(extra.get("max_resource") or epochs),
            "reduction_factor": int(extra.get("reduction_factor") or t["reduction_factor"]), "bootstrap_count": 0}
    if p.type == "successive_halving":
        return "SuccessiveHalvingPruner", {
            "min_resource": int(extra.get("min_resource") or max(1, round(t["min_resource_share"] * epochs))),
            "reduction_factor": int(extra.get("reduction_factor") or t["reduction_factor"]),
            "min_early_stopping_rate": 0, "bootstrap_count": 0}
    return "NopPruner", {}


def make_pruner(space: Space, epochs: int):
    import optuna

    kind, args = pruner_spec(space, epochs)
    args = dict(args)
    if "wrapped_pruner" in args:
        sub, sub_args = args["wrapped_pruner"]
        args["wrapped_pruner"] = getattr(optuna.pruners, sub)(**sub_args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning (PatientPruner)
        return getattr(optuna.pruners, kind)(**args)


# =========================================================================== storage

def storage_url(text: Optional[str], workers: int = 1) -> str:
    """--storage as given -> a URL, or a journal file path (several workers on one host)."""
    if not text:
        return DEFAULT_STORAGE if workers <= 1 else DEFAULT_JOURNAL
    text = text.strip()
    if "://" in text:
        return text
    low = text.lower()
    if low.endswith((".journal", ".log", ".jsonl")):
        return text
    if low.endswith((".db", ".sqlite", ".sqlite3")):
        return f"sqlite:///{text}"
    raise InputError(f"--storage {text}: give sqlite:///file.db (or a .db file), a .journal file "
                     "(several workers on one machine) or a database URL (postgresql://user@host/db)")


def is_journal(url: str) -> bool:
    return "://" not in url


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_storage(url: str, timeout: float = 10.0):
    """An Optuna storage for `url`, or InputError in one line (no hanging on a dead server)."""
    import optuna

    shown = _hide_password(url)
    if is_journal(url):
        from pathlib import Path

        from optuna.storages.journal import JournalFileBackend

        path = Path(url)
        if not path.parent.exists():
            raise InputError(f"--storage {url}: folder {path.parent} does not exist")
        if path.is_dir():
            raise InputError(f"--storage {url}: is a directory; give a journal file")
        if path.exists() and path.stat().st_size:
            with path.open("rb") as fh:
                head = fh.read(64).lstrip()
            if not head.startswith(b"{"):
                raise InputError(f"--storage {url}: exists and is not an Optuna journal file")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:
            raise InputError(f"--storage {url}: cannot open the journal ({_first_line(exc)})") from None
    scheme = url.split(":", 1)[0].split("+")[0].lower()
    if scheme == "sqlite":
        from pathlib import Path

        rest = url.split(":///", 1)[1] if ":///" in url else ""
        if not rest or rest.startswith(":memory:"):
            raise InputError(f"--storage {url}: give a SQLite file (sqlite:///path/to/file.db); "
                             "an in-memory database cannot be resumed")
        path = Path(rest.split("?", 1)[0])
        if not path.parent.exists():
            raise InputError(f"--storage {url}: folder {path.parent} does not exist")
        if path.is_dir():
            raise InputError(f"--storage {url}: {path} is a directory")
        if path.exists() and path.stat().st_size:
            with path.open("rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise InputError(f"--storage {url}: {path} exists and is not a SQLite database")
        kwargs = {"connect_args": {"timeout": max(1, int(math.ceil(timeout)) * 3)}}
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:
            raise InputError(f"--storage {url}: cannot open the SQLite storage ({_first_line(exc)})") from None
    # a database server: look first, with a deadline, so a dead host fails fast in one line
    import sqlalchemy

    seconds = max(1, int(math.ceil(timeout)))
    connect_args = {"connect_timeout": seconds} if scheme in ("postgresql", "postgres", "mysql", "mariadb") else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=connect_args)
    except ModuleNotFoundError as exc:
        hint = {"psycopg2": "pip install psycopg2-binary", "pymysql": "pip install pymysql",
                "MySQLdb": "pip install mysqlclient"}.get(exc.name or "", f"pip install {exc.name}")
        raise InputError(f"--storage {shown}: its database driver '{exc.name}' is not installed ({hint})") from None
    except Exception as exc:
        raise InputError(f"--storage {shown}: not a storage URL ({_first_line(exc)})") from None

    def probe() -> None:
        with engine.connect():
            pass

    try:
        with_deadline(probe, seconds + 1, f"--storage {shown}", hint="")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"--storage {shown}: cannot connect to the storage ({_first_line(exc)})") from None
    finally:
        engine.dispose()
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                                          heartbeat_interval=60, grace_period=180)
    except Exception as exc:
        raise InputError(f"--storage {shown}: cannot open the Optuna storage ({_first_line(exc)})") from None


def dashboard_command(url: str) -> str:
    return f"optuna-dashboard {_hide_password(url)}"


# =========================================================================== the search's settings

class SearchSpec(BaseModel):
    """Everything a worker needs, stored in the study (user attribute `advisor_search`)."""

    version: int = 1
    task: str
    space: dict[str, Any]
    trials: int
    epochs: int
    seed: int = 0
    top_k: int = 5
    seeds_final: int = 3
    direction: str = "maximize"
    metric: str = "val_metric"
    workers: int = 1
    stop_min_gain: float = 0.0       # the plan's stop rules (0: off)
    stop_stale: int = 0
    baseline: Optional[dict[str, Any]] = None
    fixed: dict[str, Any] = {}

    def get_space(self) -> Space:
        return Space.model_validate(self.space)


def stop_rules(space: Space) -> tuple[float, int]:
    """(min gain per trial, stale window) from the plan; only for random and Bayesian searches."""
    if space.strategy not in ("random", "bayesian"):
        return 0.0, 0
    extra = getattr(space, "model_extra", None) or {}
    stop = extra.get("stop") or {}
    from advisor.advice.plan import tables

    s = tables()["budget"]["stop"]
    gain = float(stop.get("min_gain_per_trial", s["min_gain_per_trial"]))
    stale = int(stop.get("stale_trials", s["stale_trials"]))
    return gain, stale


def budget_trials(space: Space, baseline: Optional[dict], trials: Optional[int]) -> int:
    """The search's trial budget: --trials, else the plan's (a grid: every point, plus the baseline)."""
    if trials is not None:
        return int(trials)
    if space.strategy in ("grid", "manual"):
        grid = grid_points(space)
        n = math.prod(len(v) for v in grid.values()) if grid is not None else len(grid_configs(space))
        return n + (1 if baseline else 0)
    return int(space.trials or 100)


# =========================================================================== what a trial runs

class Runner:
    """Runs one configuration: the task's build(hp) trained by advisor, or the user's objective."""

    def __init__(self, task: str, device=None, settings=None):
        from advisor.act.train import load_settings

        self.task = task
        self.settings = settings or load_settings()
        self.device = device
        if task == "demo":
            from advisor.act import demo

            self.fn, self.label, self.source = demo.build, "demo", None
        else:
            from advisor.act.task import load_builder

            self.fn, self.label, self.source = load_builder(task)
        self.kind = "objective" if _positional(self.fn) >= 2 else "build"

    def check(self, hp: dict, seed: int):
        """Build the task once (the baseline's hyperparameters) and validate it; return it."""
        if self.kind != "build":
            return None
        from advisor.act.lr_find import seed_everything
        from advisor.act.task import _describe, _user_frame, validate_task

        seed_everything(seed)
        try:
            built = self.fn(dict(hp))
        except AdvisorError:
            raise
        except Exception as exc:
            raise InputError(f"{self.label}: build(hp) raised {_user_frame(exc, self.source)}{_describe(exc)} "
                             f"(hp {_fmt_hp(hp)})") from None
        task = validate_task(built, self.label)
        if task.val_loader is None:
            raise InputError(f"{self.label}: task.val_loader is None; advisor search evaluates every epoch "
                             "on validation data")
        return task

    def run(self, hp: dict, report: Callable[[float, int], None], seed: int, epochs: int,
            on_epoch: Callable[[int], None]) -> float:
        from advisor.act.lr_find import seed_everything
        from advisor.act.train import TrialError, config_from_hp, describe, train

        seed_everything(seed)
        if self.kind == "objective":
            count = {"n": 0}

            def counted(value, epoch):
                count["n"] += 1
                on_epoch(count["n"])
                report(float(value), int(epoch))

            value = self.fn(dict(hp), counted)
            try:
                return float(value)
            except (TypeError, ValueError):
                raise TrialError(f"objective returned {type(value).__name__}, not a number") from None
        from advisor.act.task import _user_frame, validate_task

        try:
            built = self.fn(dict(hp))
        except AdvisorError as exc:
            raise TrialError(str(exc)) from None
        except Exception as exc:
            raise TrialError(f"build(hp) raised {_user_frame(exc, self.source)}{describe(exc)}") from None
        try:
            task = validate_task(built, self.label)
        except AdvisorError as exc:
            raise TrialError(str(exc)) from None
        config = config_from_hp(hp, self.settings, epochs=epochs)
        result = train(task, config, device=self.device, report=report, hp=hp, settings=self.settings,
                       on_epoch=on_epoch)
        return result.value


def _positional(fn) -> int:
    """Required positional parameters of fn: build(hp) has 1, objective(hp, report) 2."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    return sum(1 for p in sig.parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty)


def _fmt_hp(hp: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, tuples to lists."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        with contextlib.suppress(Exception):
            value = value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


class _TrialFailed(Exception):
    """Raised inside the objective so that Optuna marks the trial FAIL (its reason is recorded)."""


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def make_objective(runner: Runner, spec: SearchSpec, space: Space):
    """The Optuna objective: hyperparameters from the trial, the run, and the bookkeeping."""
    import optuna

    from advisor.act.train import Diverged, TrialError, describe

    worker = _worker_id()

    def objective(trial) -> float:
        attrs = trial.user_attrs
        final = bool(attrs.get("final"))
        seed = int(attrs.get("seed", spec.seed))
        searched = suggest(trial, space)
        hp = _plain({**spec.fixed, **searched, "epochs": spec.epochs, "seed": seed})
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("hp", hp)  # with its seed and epochs
        trained = {"n": 0}

        def on_epoch(n: int) -> None:
            trained["n"] = n

        def report(value: float, epoch: int) -> None:
            if not math.isfinite(value):
                raise Diverged(f"validation metric {value} after epoch {epoch + 1}", epoch, value)
            if final:
                return
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")

        try:
            value = runner.run(hp, report, seed, spec.epochs, on_epoch)
            if not math.isfinite(value):
                raise Diverged(f"the objective returned {value}", max(0, trained["n"] - 1), value)
            return value
        except optuna.TrialPruned:
            trial.set_user_attr("pruned_at", trained["n"])
            raise
        except Diverged as exc:
            trial.set_user_attr("diverged", True)
            trial.set_user_attr("pruned_reason", exc.reason)
            if final:
                trial.set_user_attr("fail_reason", f"diverged: {exc.reason}")
                raise _TrialFailed(exc.reason) from None
            with contextlib.suppress(Exception):
                trial.report(float("nan"), exc.epoch)  # so that an audit sees the non-finite value
            raise optuna.TrialPruned(exc.reason) from None
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
            raise
        except TrialError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise _TrialFailed(str(exc)) from None
        except AdvisorError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise _TrialFailed(str(exc)) from None
        except Exception as exc:  # the user's objective raised
            reason = _oom_reason(exc, hp) or f"{describe(exc)}"
            trial.set_user_attr("fail_reason", reason)
            raise _TrialFailed(reason) from None
        finally:
            trial.set_user_attr("epochs", trained["n"])

    return objective


def _oom_reason(exc: BaseException, hp: dict) -> Optional[str]:
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        bs = hp.get("batch_size")
        at = f" at batch_size={bs}" if bs is not None else ""
        return (f"CUDA out of memory{at}: lower batch_size (cap the batch-size range of the search "
                "below this value)")
    return None


# =========================================================================== trial bookkeeping

def _states():
    from optuna.trial import TrialState

    return TrialState


def is_final(t) -> bool:
    return bool(t.user_attrs.get("final"))


def trial_epochs(t) -> int:
    e = t.user_attrs.get("epochs")
    if isinstance(e, (int, float)) and not isinstance(e, bool):
        return int(e)
    return len(t.intermediate_values)


def counts(trials) -> dict[str, int]:
    """States of the search trials (the final re-runs left out)."""
    TS = _states()
    out = {"complete": 0, "pruned": 0, "failed": 0, "interrupted": 0, "running": 0, "total": 0}
    for t in trials:
        if is_final(t):
            continue
        if t.state == TS.COMPLETE:
            out["complete"] += 1
        elif t.state == TS.PRUNED:
            out["pruned"] += 1
        elif t.state == TS.FAIL:
            out["failed"] += 1
            if t.user_attrs.get("interrupted"):
                out["interrupted"] += 1
        elif t.state == TS.RUNNING:
            out["running"] += 1
        else:
            continue  # WAITING: enqueued, not started
        out["total"] += 1
    return out


def done_search(trials) -> int:
    """Search trials that count against the budget: finished, not interrupted, not final."""
    c = counts(trials)
    return c["complete"] + c["pruned"] + c["failed"] - c["interrupted"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a killed child not yet reaped by its parent is a zombie: dead for us
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return True


def fail_stale(study, storage) -> list[int]:
    """Mark FAIL (interrupted) the RUNNING trials whose process is gone: on this host, the
    recorded pid is dead; elsewhere, a storage heartbeat older than its grace period."""
    TS = _states()
    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,)):
        owner = str(t.user_attrs.get("worker", ""))
        h, _, pid = owner.rpartition(":")
        started = t.datetime_start.timestamp() if t.datetime_start else 0.0
        dead = (h == host and pid.isdigit() and not _alive(int(pid))) or (not owner and time.time() - started > 60)
        if not dead:
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_user_attr(t._trial_id, "fail_reason",
                                        "interrupted: the process running it stopped (killed or crashed)")
            storage.set_trial_state_values(t._trial_id, TS.FAIL)
            failed.append(t.number)
        except Exception:  # another process finished it meanwhile
            continue
    if getattr(storage, "is_heartbeat_enabled", lambda: False)():
        import optuna

        with contextlib.suppress(Exception):
            before = {t.number for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,))}
            optuna.storages.fail_stale_trials(study)
            after = {t.number for t in study.get_trials(deepcopy=False, states=(TS.RUNNING,))}
            failed += sorted(before - after)
    return failed


# =========================================================================== the search

class Event(BaseModel):
    """What the progress display is told after each trial."""

    phase: str                       # search | final
    done: int
    total: int
    best: Optional[float] = None
    elapsed: float = 0.0
    left: Optional[float] = None     # seconds, estimated
    last_state: Optional[str] = None


class TrialRef(BaseModel):
    number: int
    value: Optional[float]
    params: dict[str, Any]
    baseline: bool = False


class FinalResult(BaseModel):
    params: dict[str, Any]
    mean: Optional[float]
    std: Optional[float]
    seeds: list[int]
    values: list[Optional[float]]
    failed: int = 0
    search_number: Optional[int] = None
    search_value: Optional[float] = None


class SearchReport(BaseModel):
    schema_version: str = SCHEMA
    task: str
    study: str
    storage: str
    dashboard: str
    device: str
    resumed: bool
    direction: str
    metric: str
    strategy: str
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    budget: dict[str, Any]
    stopped_by: str
    best: Optional[TrialRef]
    baseline: Optional[TrialRef]
    trials: dict[str, int]
    final: list[FinalResult]
    audit: list[dict[str, Any]]
    epochs_used: int
    epochs_search: int
    epochs_final: int
    epochs_saved_by_pruning: int
    failures: list[dict[str, Any]]
    seconds: float
    notes: list[str]


def _spec_of(study) -> Optional[SearchSpec]:
    raw = study.user_attrs.get(SPEC_ATTR)
    if not raw:
        return None
    try:
        return SearchSpec.model_validate(raw)
    except Exception:
        return None


def study_names(storage) -> list[str]:
    try:
        return [s.study_name for s in storage.get_all_studies()]
    except Exception as exc:
        raise InputError(f"--storage: cannot read the studies ({_first_line(exc)})") from None


def load_spec(storage, url: str, name: str) -> SearchSpec:
    import optuna

    names = study_names(storage)
    if name not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise InputError(f"--study {name}: no such study in {_hide_password(url)} (studies: {listed})")
    with _quiet_optuna():
        study = optuna.load_study(study_name=name, storage=storage)
    spec = _spec_of(study)
    if spec is None:
        raise InputError(f"--study {name}: was not created by advisor search (no {SPEC_ATTR} settings); "
                         "choose another --study, or audit it with `advisor audit`")
    return spec


def latest_study(storage, url: str, task: Optional[str]) -> str:
    """The most recently created advisor study (for the task, when given) in the storage."""
    found = []
    for s in storage.get_all_studies():
        spec = s.user_attrs.get(SPEC_ATTR)
        if spec and (task is None or spec.get("task") == task):
            found.append((s._study_id, s.study_name))
    if not found:
        raise InputError(f"--resume: no advisor study{f' for {task}' if task else ''} in {_hide_password(url)}; "
                         "give --study NAME")
    return max(found)[1]


class Search:
    """One invocation of the search on a storage: create or resume, run, finalize, report."""

    def __init__(self, spec: SearchSpec, url: str, study_name: str, storage, *, device=None,
                 device_label: str = "cpu", timeout: Optional[float] = None,
                 progress: Optional[Callable[[Event], None]] = None, notes: Optional[list[str]] = None,
                 index: int = 0, runner: Optional[Runner] = None, epoch_budget: Optional[int] = None):
        self.spec, self.url, self.name, self.storage = spec, url, study_name, storage
        self.space = spec.get_space()
        self.device, self.device_label = device, device_label
        self.timeout, self.progress = timeout, progress
        self.notes = list(notes or [])
        self.index = index
        self.runner = runner or Runner(spec.task, device)
        self.epoch_budget = epoch_budget
        self.stopped_by = "none"
        self.began = time.monotonic()

    # ----------------------------------------------------------------- create / load

    def create(self):
        import optuna

        with _quiet_optuna():
            study = optuna.create_study(study_name=self.name, storage=self.storage, direction=self.spec.direction,
                                        sampler=self._sampler(), pruner=make_pruner(self.space, self.spec.epochs),
                                        load_if_exists=False)
        study.set_user_attr(SPEC_ATTR, self.spec.model_dump())
        with _quiet_optuna():
            if self.spec.baseline:
                params = to_params(self.spec.baseline, self.space)
                grid = grid_points(self.space) if _gridded(self.space) else None
                if params and grid is not None:  # Optuna's GridSampler runs an enqueued trial only whole
                    missing = [n for n in grid if n not in params]
                    for n in missing:
                        params[n] = grid[n][len(grid[n]) // 2]
                    if missing:
                        self.notes.append(f"the baseline does not set {', '.join(missing)}: it runs with the "
                                          "middle grid point")
                if params:
                    study.enqueue_trial(params, user_attrs={"baseline": True})
                    self._check_baseline(params)
            if _gridded(self.space) and grid_points(self.space) is None:
                for hp in grid_configs(self.space):
                    study.enqueue_trial(to_params(hp, self.space), skip_if_exists=True)
        return study

    def _check_baseline(self, params: dict) -> None:
        """A note for each baseline value outside the searched range (it still runs as given)."""
        for name, value in params.items():
            base = name if name in self.space.params else name.rsplit("_", 1)[0]
            p = self.space.params.get(base)
            if p is None or p.type == "categorical" or not isinstance(value, (int, float)):
                if p is not None and p.choices and value not in p.choices:
                    self.notes.append(f"the baseline's {base}={value} is not one of the searched choices")
                continue
            key = name[len(base) + 1:] if name != base else None
            q = _effective(p, key) if key else p
            low = min(q.choices) if q.choices else q.low
            high = max(q.choices) if q.choices else q.high
            outside = low is not None and high is not None and not low <= value <= high
            if outside and not (_has_zero(q) and value <= low):
                self.notes.append(f"the baseline's {base}={value:g} lies outside the searched range "
                                  f"{low:g}..{high:g}: it runs as given, the search stays inside")

    def load(self):
        import optuna

        with _quiet_optuna():
            return optuna.load_study(study_name=self.name, storage=self.storage, sampler=self._sampler(),
                                     pruner=make_pruner(self.space, self.spec.epochs))

    def _sampler(self):
        return make_sampler(self.space, self.spec.seed, self.spec.workers, self.index, self.spec.trials)

    # ----------------------------------------------------------------- the search phase

    def run_search(self, study) -> str:
        """Run search trials until the budget, the stop rules, the grid or the timeout says stop."""
        import optuna

        TS = _states()
        stored = study.user_attrs.get(STOP_ATTR)
        trials = study.get_trials(deepcopy=False)
        done = done_search(trials)
        if stored in ("grid", "stale", "epochs") or (stored == "budget" and done >= self.spec.trials):
            self.stopped_by = stored
            return stored
        if done >= self.spec.trials:
            self._mark_stopped(study, "budget")
            return "budget"
        c = counts(trials)
        excluded = c["interrupted"] + sum(1 for t in trials if is_final(t) and t.state != TS.WAITING
                                          and t.state != TS.RUNNING)
        counted = (TS.COMPLETE, TS.PRUNED, TS.FAIL)
        state = {"stale": False, "aborted": None, "epochs": False}
        callbacks = [optuna.study.MaxTrialsCallback(self.spec.trials + excluded, states=counted),
                     self._stop_rule(state), self._abort_rule(state), self._progress_callback("search")]
        if self.epoch_budget:
            callbacks.append(self._epoch_rule(state))
        timeout = None if self.timeout is None else max(0.0, self.timeout - (time.monotonic() - self.began))
        if timeout is not None and timeout <= 0:
            self.stopped_by = "timeout"
            return "timeout"
        self._emit("search", study)
        objective = make_objective(self.runner, self.spec, self.space)
        with _quiet_optuna():
            study.optimize(objective, n_trials=self.spec.trials - done, timeout=timeout, callbacks=callbacks,
                           catch=(_TrialFailed,), gc_after_trial=False, show_progress_bar=False)
        if state["aborted"]:
            raise InputError(state["aborted"])
        trials = study.get_trials(deepcopy=False)
        elapsed = time.monotonic() - self.began
        if state["stale"]:
            reason = "stale"
        elif state["epochs"]:
            reason = "epochs"
        elif done_search(trials) >= self.spec.trials:
            reason = "budget"
        elif _gridded(self.space) and self._grid_exhausted(trials):
            reason = "grid"
        elif self.timeout is not None and elapsed >= self.timeout - 0.5:
            reason = "timeout"
        else:
            reason = "none"
        if reason in ("budget", "grid", "stale", "epochs"):
            self._mark_stopped(study, reason)
        self.stopped_by = reason
        return reason

    def _grid_exhausted(self, trials) -> bool:
        grid = grid_points(self.space)
        if grid is None:
            return not any(t.state == _states().WAITING and not is_final(t) for t in trials)
        size = math.prod(len(v) for v in grid.values())
        seen = {json.dumps(t.params, sort_keys=True, default=str) for t in trials
                if not t.user_attrs.get("baseline") and not is_final(t) and t.state != _states().RUNNING}
        return len(seen) >= size

    def _mark_stopped(self, study, reason: str) -> None:
        with contextlib.suppress(Exception):
            study.set_user_attr(STOP_ATTR, reason)

    def _stop_rule(self, state):
        """The plan's stop rules: the best value improved by less than `min_gain` (relative) per
        trial over the last `window` complete trials (the same best for `window` trials is the
        case of no gain)."""
        TS = _states()
        window, min_gain = self.spec.stop_stale, self.spec.stop_min_gain
        sign = 1.0 if self.spec.direction == "maximize" else -1.0

        def callback(study, trial) -> None:
            if not window:
                return
            if study.user_attrs.get(STOP_ATTR) == "stale":  # another worker decided
                state["stale"] = True
                study.stop()
                return
            done = [t for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE,)) if not is_final(t)]
            if len(done) <= window:
                return
            values = [sign * t.value for t in sorted(done, key=lambda t: t.number)]
            now, before = max(values), max(values[:-window])
            gain = (now - before) / max(abs(before), 1e-12) / window
            if gain < min_gain:
                state["stale"] = True
                self._mark_stopped(study, "stale")
                study.stop()

        return callback

    def _abort_rule(self, state):
        TS = _states()
        limit = self.runner.settings.search.abort_after_failures

        def callback(study, trial) -> None:
            finished = [t for t in study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.PRUNED, TS.FAIL))
                        if not is_final(t) and not t.user_attrs.get("interrupted")]
            if len(finished) >= limit and all(t.state == TS.FAIL for t in finished):
                last = finished[-1].user_attrs.get("fail_reason", "no reason recorded")
                state["aborted"] = (f"the first {len(finished)} trials all failed, the last with: {last} "
                                    "(fix the task; `advisor search TASK --sanity` tries a few configurations)")
                study.stop()

        return callback

    def _epoch_rule(self, state):
        def callback(study, trial) -> None:
            used = sum(trial_epochs(t) for t in study.get_trials(deepcopy=False) if not is_final(t))
            if used >= self.epoch_budget:
                state["epochs"] = True
                study.stop()

        return callback

    def _progress_callback(self, phase: str):
        def callback(study, trial) -> None:
            self._emit(phase, study, trial)

        return callback

    def _emit(self, phase: str, study, trial=None) -> None:
        if self.progress is None:
            return
        trials = study.get_trials(deepcopy=False)
        TS = _states()
        if phase == "search":
            done, total = done_search(trials), self.spec.trials
            pool = [t for t in trials if not is_final(t) and t.state == TS.COMPLETE]
        else:
            finals = [t for t in trials if is_final(t)]
            done = sum(1 for t in finals if t.state in (TS.COMPLETE, TS.FAIL, TS.PRUNED)
                       and not t.user_attrs.get("interrupted"))
            total = max(done, len({(t.user_attrs.get("config"), t.user_attrs.get("seed")) for t in finals}))
            pool = []
        sign = 1.0 if self.spec.direction == "maximize" else -1.0
        best = max((t.value for t in pool), key=lambda v: sign * v, default=None)
        elapsed = time.monotonic() - self.began
        left = None
        if done and total > done:
            durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                         if t.datetime_complete and t.datetime_start and (is_final(t) == (phase == "final"))]
            if durations:
                parallel = self.spec.workers if phase == "search" else 1
                left = statistics.fmean(durations) * (total - done) / max(1, parallel)
        if self.timeout is not None and phase == "search":
            rest = max(0.0, self.timeout - elapsed)
            left = rest if left is None else min(left, rest)
        self.progress(Event(phase=phase, done=done, total=total, best=best, elapsed=elapsed, left=left,
                            last_state=trial.state.name.lower() if trial is not None else None))

    # ----------------------------------------------------------------- the final phase

    def finalists(self, study) -> list[dict[str, Any]]:
        """The best `top_k` distinct configurations of the search; chosen once per state of the
        search (kept in the study, so a resumed final phase re-runs the same ones)."""
        TS = _states()
        trials = study.get_trials(deepcopy=False)
        n_done = done_search(trials)
        stored = study.user_attrs.get(FINALISTS_ATTR)
        if isinstance(stored, dict) and stored.get("done") == n_done and stored.get("top_k") == self.spec.top_k:
            return stored["chosen"]
        sign = 1.0 if self.spec.direction == "maximize" else -1.0
        done = [t for t in trials if t.state == TS.COMPLETE and not is_final(t)]
        done.sort(key=lambda t: (-sign * t.value, t.number))
        chosen, seen = [], set()
        for t in done:
            key = _config_key(t.params)
            if key in seen:
                continue
            seen.add(key)
            chosen.append({"params": _plain(t.params), "hp": _searched(t, self.space), "number": t.number,
                           "value": t.value, "key": key})
            if len(chosen) >= self.spec.top_k:
                break
        study.set_user_attr(FINALISTS_ATTR, {"done": n_done, "top_k": self.spec.top_k, "chosen": chosen})
        return chosen

    def run_final(self, study) -> list[FinalResult]:
        import optuna

        if self.spec.top_k <= 0:
            return []
        chosen = self.finalists(study)
        if not chosen:
            return []
        TS = _states()
        seeds = [self.spec.seed + 1 + s for s in range(self.spec.seeds_final)]
        have = set()
        for t in study.get_trials(deepcopy=False):
            if is_final(t) and not t.user_attrs.get("interrupted"):
                have.add((t.user_attrs.get("config"), t.user_attrs.get("seed")))
        for c in chosen:
            for s in seeds:
                if (c["key"], s) not in have:
                    study.enqueue_trial(c["params"], user_attrs={"final": True, "config": c["key"], "seed": s})
        waiting = [t for t in study.get_trials(deepcopy=False, states=(TS.WAITING,))]
        if waiting:
            with _quiet_optuna():
                final_study = optuna.load_study(study_name=self.name, storage=self.storage,
                                                sampler=optuna.samplers.RandomSampler(seed=self.spec.seed),
                                                pruner=optuna.pruners.NopPruner())
            objective = make_objective(self.runner, self.spec, self.space)
            self._emit("final", final_study)
            with _quiet_optuna():
                final_study.optimize(objective, n_trials=len(waiting), catch=(_TrialFailed,),
                                     callbacks=[self._progress_callback("final")], gc_after_trial=False,
                                     show_progress_bar=False)
        return final_results(study, chosen, seeds, self.spec.direction)

    # ----------------------------------------------------------------- the report

    def report(self, study, finals: list[FinalResult], resumed: bool, seconds: float,
               audit: list[dict[str, Any]]) -> SearchReport:
        TS = _states()
        trials = study.get_trials(deepcopy=False)
        search = [t for t in trials if not is_final(t)]
        sign = 1.0 if self.spec.direction == "maximize" else -1.0
        complete = [t for t in search if t.state == TS.COMPLETE]
        best_t = max(complete, key=lambda t: (sign * t.value, -t.number), default=None)
        base_t = next((t for t in search if t.user_attrs.get("baseline")), None)
        e_search = sum(trial_epochs(t) for t in search)
        e_final = sum(trial_epochs(t) for t in trials if is_final(t))
        saved = sum(max(0, _planned(t, self.spec.epochs) - trial_epochs(t)) for t in search if t.state == TS.PRUNED)
        failures = []
        for t in search:
            reason = t.user_attrs.get("fail_reason") if t.state == TS.FAIL else t.user_attrs.get("pruned_reason")
            if reason and not t.user_attrs.get("interrupted"):
                failures.append({"number": t.number, "state": t.state.name.lower(), "reason": reason,
                                 "params": _searched(t, self.space)})
        s_kind, s_args = sampler_spec(self.space, self.spec.seed, self.spec.workers, 0, self.spec.trials)
        p_kind, p_args = pruner_spec(self.space, self.spec.epochs)
        return SearchReport(
            task=self.spec.task, study=self.name, storage=_hide_password(self.url),
            dashboard=dashboard_command(self.url), device=self.device_label, resumed=resumed,
            direction=self.spec.direction, metric=self.spec.metric, strategy=self.space.strategy,
            sampler={"type": s_kind, "args": _plain(_nested_spec(s_args))},
            pruner={"type": p_kind, "args": _plain(_nested_spec(p_args))},
            budget={"trials": self.spec.trials, "timeout_s": self.timeout, "epochs": self.spec.epochs,
                    "top_k": self.spec.top_k, "seeds_final": self.spec.seeds_final},
            stopped_by=self.stopped_by,
            best=_ref(best_t, self.space), baseline=_ref(base_t, self.space),
            trials=counts(trials), final=finals, audit=audit,
            epochs_used=e_search + e_final, epochs_search=e_search, epochs_final=e_final,
            epochs_saved_by_pruning=saved, failures=failures[:10], seconds=round(seconds, 2),
            notes=self.notes)


def _planned(t, default: int) -> int:
    hp = t.user_attrs.get("hp")
    e = hp.get("epochs") if isinstance(hp, dict) else None
    return int(e) if isinstance(e, (int, float)) and not isinstance(e, bool) else default


def _config_key(params: dict) -> str:
    return json.dumps(_plain(params), sort_keys=True, default=str)


def _nested_spec(args: dict) -> dict:
    out = {}
    for k, v in args.items():
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], dict):
            out[k] = {"type": v[0], **v[1]}
        elif k == "search_space":
            out[k] = {n: list(vals) for n, vals in v.items()}
        else:
            out[k] = v
    return out


def _searched(t, space: Space) -> dict[str, Any]:
    hp = t.user_attrs.get("hp")
    if isinstance(hp, dict):
        return {k: hp[k] for k in space.params if k in hp}
    return _plain(dict(t.params))


def _ref(t, space: Space) -> Optional[TrialRef]:
    if t is None:
        return None
    value = t.value if t.value is not None and math.isfinite(t.value) else None
    return TrialRef(number=t.number, value=value, params=_searched(t, space),
                    baseline=bool(t.user_attrs.get("baseline")))


def final_results(study, chosen: list[dict], seeds: list[int], direction: str) -> list[FinalResult]:
    TS = _states()
    results = []
    trials = [t for t in study.get_trials(deepcopy=False) if is_final(t)]
    for i, c in enumerate(chosen):
        mine = [t for t in trials if t.user_attrs.get("config") == c["key"] and not t.user_attrs.get("interrupted")]
        values, used, failed = [], [], 0
        for s in seeds:
            runs = [t for t in mine if t.user_attrs.get("seed") == s]
            ok = [t for t in runs if t.state == TS.COMPLETE]
            if ok:
                values.append(ok[-1].value)
                used.append(s)
            elif any(t.state == TS.FAIL for t in runs):
                failed += 1
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        results.append(FinalResult(params=c["hp"], mean=mean, std=std, seeds=used, values=values, failed=failed,
                                   search_number=c.get("number"), search_value=c.get("value")))
    sign = 1.0 if direction == "maximize" else -1.0
    results.sort(key=lambda r: (r.mean is None, -sign * (r.mean or 0.0)))
    return results


@contextlib.contextmanager
def _quiet_optuna():
    """Optuna logs every trial (and a traceback per failed trial): advisor reports them itself."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(level)


# =========================================================================== audit

def audit_findings(url: str, study_name: str) -> tuple[list[dict[str, Any]], Optional[str]]:
    """`advisor audit`'s findings on the finished study (advisor.advice.audit), or ([], why not)."""
    try:
        from advisor.advice.audit import audit
    except Exception as exc:  # the audit is missing or broken: the search result stands
        return [], f"audit unavailable ({type(exc).__name__}: {exc})"
    source = url if not is_journal(url) else url
    try:
        report = audit(source, study=study_name)
    except Exception as exc:
        return [], f"audit could not run ({_first_line(exc)})"
    return [f.model_dump() for f in report.findings], None


# =========================================================================== entry points

def _threads_for(device, workers: int, task: str) -> None:
    import torch

    if device is not None and device.type == "cpu":
        cores = os.cpu_count() or 1
        if task == "demo":
            torch.set_num_threads(1)  # the demo MLP is too small to gain from threads
        elif workers > 1:
            torch.set_num_threads(max(1, cores // workers))


def run(spec: SearchSpec, url: str, study_name: str, *, resume: bool, device_name: str = "auto",
        timeout: Optional[float] = None, workers: int = 1, progress: Optional[Callable[[Event], None]] = None,
        notes: Optional[list[str]] = None, storage=None, runner: Optional[Runner] = None,
        epoch_budget: Optional[int] = None, audit: bool = True) -> SearchReport:
    """Create (or resume) the study and run search, final seeds and audit; return the report.
    `spec` is the stored one when resuming. Checks that can fail on user input run before the
    study is written to."""
    from advisor.act.device import describe_device, resolve_device

    began = time.monotonic()
    notes = list(notes or [])
    device = resolve_device(device_name)
    storage = storage or open_storage(url)
    runner = runner or Runner(spec.task, device)
    runner.device = device
    _threads_for(device, workers, spec.task)
    search = Search(spec, url, study_name, storage, device=device, device_label=describe_device(device),
                    timeout=timeout, progress=progress, notes=notes, runner=runner, epoch_budget=epoch_budget)
    if resume:
        study = search.load()
        if _spec_of(study) != spec:  # a new trial budget or top-k: the workers read it from here
            study.set_user_attr(SPEC_ATTR, spec.model_dump())
        stale = fail_stale(study, storage)
        if stale:
            search.notes.append(f"trials {', '.join(f'#{n}' for n in stale)} were left running by a stopped "
                                "process: marked failed (interrupted), not counted against the budget")
    else:
        study = search.create()
    procs = _spawn_workers(url, study_name, workers, device_name) if workers > 1 else []
    try:
        search.run_search(study)
    except BaseException:
        _stop_workers(procs)
        raise
    problems = _wait_workers(procs)
    search.notes += problems
    if procs:  # the other workers' trials count too: re-read what stopped the search
        trials = study.get_trials(deepcopy=False)
        if done_search(trials) >= spec.trials and search.stopped_by != "stale":
            search.stopped_by = "budget"
            search._mark_stopped(study, "budget")
    finals = search.run_final(study)
    findings, why = audit_findings(url, study_name) if audit else ([], None)
    if why:
        search.notes.append(why)
    return search.report(study, finals, resume, time.monotonic() - began, findings)


def run_worker(url: str, study_name: str, *, index: Optional[int] = None, device_name: str = "auto",
               task: Optional[str] = None, timeout: Optional[float] = None) -> int:
    """`advisor worker`: run search trials of an existing advisor study until its budget is spent.
    `index` offsets the seed of the random samplers (default: from the host name and process id,
    so that workers on many machines do not draw the same points). Returns the number of trials
    this worker finished."""
    import zlib

    from advisor.act.device import resolve_device

    if index is None:
        index = 1 + zlib.crc32(_worker_id().encode()) % 100_000

    storage = open_storage(url)
    spec = load_spec(storage, url, study_name)
    if task:
        spec = spec.model_copy(update={"task": task})
    device = resolve_device(device_name)
    runner = Runner(spec.task, device)
    _threads_for(device, spec.workers, spec.task)
    search = Search(spec, url, study_name, storage, device=device, timeout=timeout, index=index, runner=runner)
    study = search.load()
    before = {t.number for t in study.get_trials(deepcopy=False)}
    search.run_search(study)
    worker = _worker_id()
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.number not in before and t.user_attrs.get("worker") == worker)


def _spawn_workers(url: str, study_name: str, workers: int, device_name: str) -> list:
    """Workers 1..N-1 as processes on this host (this process is worker 0); one GPU each when
    there are several."""
    import subprocess
    import tempfile
    from pathlib import Path

    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        gpus = 0
    procs = []
    for i in range(1, workers):
        env = dict(os.environ)
        dev = device_name
        if gpus > 1 and device_name in ("auto", "cuda"):
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
            dev = "cuda"
        root = str(Path(__file__).resolve().parents[2])  # so that the child imports this advisor
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log = tempfile.TemporaryFile()
        cmd = [sys.executable, "-m", "advisor.act.search", "worker", url, study_name, str(i), dev]
        procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env), log))
    return procs


def _wait_workers(procs) -> list[str]:
    problems = []
    for proc, log in procs:
        code = proc.wait()
        if code != 0:
            log.seek(0)
            lines = [ln for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
            problems.append(f"worker (pid {proc.pid}) exited with code {code}: {lines[-1] if lines else 'no output'}")
        log.close()
    return problems


def _stop_workers(procs) -> None:
    import signal

    for proc, _ in procs:
        with contextlib.suppress(Exception):
            proc.send_signal(signal.SIGINT)
    for proc, log in procs:
        try:
            proc.wait(timeout=30)
        except Exception:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait()
        log.close()


# =========================================================================== from the command line

class Request(BaseModel):
    """What `advisor search` was asked (already parsed: durations in hours / seconds)."""

    task: Optional[str] = None
    demo: bool = False
    plan: Optional[str] = None
    budget_hours: Optional[float] = None
    trial_hours: Optional[float] = None
    params: Optional[list[str]] = None
    epochs: Optional[int] = None
    optimizer: Optional[str] = None
    current: dict[str, str] = {}
    trials: Optional[int] = None
    timeout_s: Optional[float] = None
    storage: Optional[str] = None
    study: Optional[str] = None
    resume: bool = False
    workers: int = 1
    device: str = "auto"
    seed: int = 0
    top_k: Optional[int] = None
    direction: Optional[str] = None
    sanity: bool = False


class Prepared(BaseModel):
    """Everything checked and decided before the study is written to."""

    model_config = {"arbitrary_types_allowed": True}

    spec: SearchSpec
    url: str
    study: str
    storage: Any = None
    runner: Any = None
    resume: bool
    timeout_s: Optional[float] = None   # --timeout, else the plan's wall-clock budget for the search
    notes: list[str] = []


def _validate_request(req: Request) -> None:
    if req.demo and req.task:
        raise InputError("give either TASK or --demo, not both")
    if not req.demo and not req.task and not req.resume:
        raise InputError("TASK: missing; give path/to/file.py:build (or :objective), package.module:build, or --demo")
    for name, value, least in (("--trials", req.trials, 1), ("--epochs", req.epochs, 1), ("--workers", req.workers, 1),
                               ("--top-k", req.top_k, 0)):
        if value is not None and value < least:
            raise InputError(f"{name}: must be at least {least}, got {value}")
    if req.timeout_s is not None and req.timeout_s <= 0:
        raise InputError("--timeout: must be positive")
    if req.direction is not None and req.direction not in ("maximize", "minimize"):
        raise InputError(f"--direction: expected maximize or minimize, got '{req.direction}'")
    if req.resume and req.sanity:
        raise InputError("--sanity runs before a search; it cannot be combined with --resume")
    if req.plan and (req.budget_hours is not None or req.params):
        raise InputError("give either --plan FILE or --budget/--params (which make a plan), not both")
    if req.trial_hours is not None and req.budget_hours is None:
        raise InputError("--trial-time goes with --budget (they make the plan)")
    if req.demo and (req.plan or req.budget_hours is not None or req.params):
        raise InputError("--demo has its own plan; drop --plan, --budget and --params")


def prepare(req: Request, settings=None) -> Prepared:
    """Check every input and decide the search's settings; nothing is written yet. Order: the
    options, the plan file, the storage (fails fast), the existing study, the task (imported,
    built once with the baseline and validated)."""
    from advisor.act.train import load_settings, metric_direction

    settings = settings or load_settings()
    _validate_request(req)
    notes: list[str] = []
    task = "demo" if req.demo else req.task  # None: --resume takes the study's
    file_space = space_from_file(req.plan) if req.plan else None
    url = storage_url(req.storage, req.workers)
    if req.workers > 1 and url.startswith("sqlite"):
        raise InputError(f"--workers {req.workers}: SQLite is for one process; use --storage runs.journal "
                         "(several workers on this machine) or a PostgreSQL URL (several machines)")
    if req.resume and url.startswith("sqlite:///"):
        from pathlib import Path

        path = Path(url.split(":///", 1)[1].split("?", 1)[0])
        if not path.is_file():
            raise InputError(f"--resume: {path}: no such file (the storage of the study to resume; --storage)")
    if req.resume and is_journal(url):
        from pathlib import Path

        if not Path(url).is_file():
            raise InputError(f"--resume: {url}: no such file (the storage of the study to resume; --storage)")
    storage = None if req.sanity else open_storage(url, settings.search.storage_timeout)

    if req.resume:
        name = req.study or latest_study(storage, url, task)
        spec = load_spec(storage, url, name)
        task = task or spec.task
        if spec.task != task:
            notes.append(f"the study was made for task {spec.task}; running {task}")
            spec = spec.model_copy(update={"task": task})
        if file_space is not None:
            diff = space_difference(spec.get_space(), file_space)
            if diff:
                raise InputError(f"--study {name}: was created with a different space ({diff}); nothing was "
                                 "changed; resume with the same plan, or start a new --study")
        ignored = [o for o, v in (("--budget", req.budget_hours), ("--params", req.params), ("--epochs", req.epochs),
                                  ("--optimizer", req.optimizer), ("--current", req.current or None)) if v]
        if ignored:
            notes.append(f"--resume continues the stored plan: {', '.join(ignored)} ignored")
        update: dict[str, Any] = {"workers": max(req.workers, 1)}
        if req.trials is not None and req.trials != spec.trials:
            notes.append(f"trial budget changed from {spec.trials} to {req.trials}")
            update["trials"] = req.trials
        if req.top_k is not None:
            update["top_k"] = req.top_k
        spec = spec.model_copy(update=update)
        runner = Runner(task, settings=settings)
        return Prepared(spec=spec, url=url, study=name, storage=storage, runner=runner, resume=True,
                        timeout_s=req.timeout_s, notes=notes)

    runner = Runner(task, settings=settings)
    from advisor.advice.plan import parse_current, parse_params

    optimizer = req.optimizer.lower() if req.optimizer else None
    if optimizer is not None and optimizer not in ("sgd", "adam", "adamw", "rmsprop"):
        raise InputError(f"--optimizer: unknown optimizer '{req.optimizer}' (choose from sgd, adam, adamw, rmsprop)")
    current = parse_current(req.current, optimizer)
    names = parse_params(req.params)

    # the task, built once with the current configuration: protocol errors stop here, in one line
    probe_hp = {**({"optimizer": optimizer} if optimizer else {}), **current}
    built = runner.check(probe_hp, req.seed)
    direction = req.direction
    if runner.kind == "build":
        own = metric_direction(built.metric)
        if own is None and direction is None:
            raise InputError(f"{runner.label}: task.metric is a callable; say --direction maximize or minimize "
                             "(or give the callable a `direction` attribute)")
        if own is not None and direction is not None and own != direction:
            raise InputError(f"--direction {direction}: contradicts task.metric {built.metric!r} ({own})")
        direction = direction or own
        metric_name = built.metric if isinstance(built.metric, str) else getattr(built.metric, "__name__", "metric")
        metric_name = f"val_{metric_name}"
    else:
        direction = direction or getattr(runner.fn, "direction", None) or (
            file_space.direction if file_space is not None else "maximize")
        metric_name = file_space.metric if file_space is not None else "objective"

    timeout_s = req.timeout_s
    if file_space is not None:
        space = file_space
        budget = ((getattr(space, "model_extra", None) or {}).get("stop") or {}).get("budget")
        if timeout_s is None and isinstance(budget, (int, float)) and budget > 0 and not req.sanity:
            timeout_s = float(budget) * 3600
            notes.append(f"the plan's budget, {budget:g} h of wall time, caps the search (--timeout to change it)")
        if space.direction != direction:
            notes.append(f"the plan says {space.direction}; the task's metric is to {direction}: {direction} it is")
    elif req.demo:
        space = demo_space(settings)
    else:
        if req.budget_hours is not None:
            budget, trial_hours = req.budget_hours, req.trial_hours
            if trial_hours is None:
                trial_hours = _measure_trial_hours(runner, built, probe_hp, req.epochs or settings.trainer.epochs,
                                                   req.device, req.seed, settings)
                notes.append(f"one trial measured at about {trial_hours * 3600:.3g} s "
                             f"({req.epochs or settings.trainer.epochs} epochs); the plan is made for that")
        else:
            n = req.trials or settings.search.default_trials
            trial_hours = settings.search.nominal_trial_hours
            budget = n * trial_hours
            notes.append(f"no --budget: planned as {n} trials of {trial_hours:g} GPU-hour each "
                         "(the trial count sets the budget band)")
        space, plan = plan_space(budget_hours=budget, trial_hours=trial_hours,
                                 epochs=req.epochs or settings.trainer.epochs,
                                 params=names, optimizer=optimizer, current=current, workers=req.workers,
                                 metric=metric_name, direction=direction, name=task)
        notes += [n for n in plan.notes if "no CUDA GPU" not in n]
        notes += [f"the plan leaves {d.param} out: {d.why}" for d in plan.deferred]
        if req.budget_hours is None and req.top_k is None:
            space.top_k = settings.final.top_k  # no budget: the final seeds are not the plan's to cut
        if req.budget_hours is not None and timeout_s is None:
            final_hours = plan.budget.final_gpu_hours / max(1, plan.budget.workers)
            timeout_s = max(trial_hours, req.budget_hours - final_hours) * 3600
            notes.append(f"the budget caps the search at {timeout_s / 3600:.3g} h, leaving "
                         f"{final_hours:.3g} h for the final seeds")
    _check_space(space, req.plan or "the plan")
    space.direction = direction

    # what the search runs with
    epochs = req.epochs or space.epochs or space.fixed.get("epochs") or settings.trainer.epochs
    baseline = dict(space.baseline or {})
    fixed = {k: v for k, v in space.fixed.items() if k != "epochs"}
    if optimizer and "optimizer" not in space.params:
        fixed["optimizer"] = optimizer
    for k, v in current.items():
        (baseline if k in space.params else fixed)[k] = v
    if baseline and "optimizer" not in baseline and "optimizer" in space.params and fixed.get("optimizer"):
        baseline["optimizer"] = fixed.pop("optimizer")
    trials = budget_trials(space, baseline or None, req.trials)
    gain, stale = stop_rules(space)
    top_k = req.top_k if req.top_k is not None else space.top_k
    seeds_final = space.seeds_final if space.seeds_final > 1 else settings.final.seeds
    spec = SearchSpec(task=task, space=_plain(space.to_yaml_dict()), trials=trials, epochs=int(epochs), seed=req.seed,
                      top_k=top_k, seeds_final=seeds_final, direction=direction, metric=metric_name,
                      workers=req.workers, stop_min_gain=gain, stop_stale=stale, baseline=_plain(baseline) or None,
                      fixed=_plain(fixed))
    if space.seeds > 1:
        notes.append(f"the plan asks for {space.seeds} seeds per configuration while exploring; advisor search "
                     "runs one and re-runs only the finalists with seeds")
    name = req.study or _default_name(task)
    if storage is not None:
        _check_new_study(storage, url, name, spec)
    return Prepared(spec=spec, url=url, study=name, storage=storage, runner=runner, resume=False,
                    timeout_s=timeout_s, notes=notes)


def _default_name(task: str) -> str:
    import re

    stem = task.rsplit(":", 1)[0]
    stem = re.split(r"[\\/]", stem)[-1].removesuffix(".py").split(".")[-1] or "search"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_new_study(storage, url: str, name: str, spec: SearchSpec) -> None:
    import optuna

    if name not in study_names(storage):
        return
    with _quiet_optuna():
        study = optuna.load_study(study_name=name, storage=storage)
    old = _spec_of(study)
    n = len(study.get_trials(deepcopy=False))
    where = _hide_password(url)
    if old is None:
        raise InputError(f"--study {name}: already exists in {where} ({n} trials) and was not made by advisor "
                         "search; nothing was changed; choose another --study")
    diff = space_difference(old.get_space(), spec.get_space())
    if diff:
        raise InputError(f"--study {name}: exists in {where} with a different space ({diff}); nothing was "
                         "changed; choose another --study, or --resume with the original plan")
    raise InputError(f"--study {name}: already exists in {where} ({n} trials); add --resume to continue it, "
                     "or choose another --study")


def _measure_trial_hours(runner: Runner, built, hp: dict, epochs: int, device_name: str, seed: int,
                         settings) -> float:
    """Time one epoch of the current configuration (the task as built) -> hours per trial."""
    if runner.kind != "build":
        raise InputError("--budget with a custom objective: say what one trial costs with --trial-time "
                         "(advisor cannot time an objective's epoch)")
    from advisor.act.device import resolve_device
    from advisor.act.train import Diverged, TrialError, config_from_hp, train

    device = resolve_device(device_name)
    config = config_from_hp(hp, settings, epochs=2)
    stamps: list[float] = []
    try:  # two epochs, the second timed: the first pays for one-off start-up costs
        train(built, config, device=device, hp=hp, settings=settings,
              on_epoch=lambda n: stamps.append(time.perf_counter()))
    except (TrialError, Diverged) as exc:
        raise InputError(f"{runner.label}: two epochs of the current configuration failed, so a trial's time "
                         f"cannot be measured ({exc}); give --trial-time") from None
    return (stamps[1] - stamps[0]) * epochs / 3600


# =========================================================================== the sanity run

class SanityConfig(BaseModel):
    number: int
    params: dict[str, Any]
    state: str                  # ok | diverged | failed
    value: Optional[float]
    history: list[Optional[float]]
    reason: Optional[str] = None
    seconds: float


class SanityReport(BaseModel):
    schema_version: str = SANITY_SCHEMA
    task: str
    device: str
    epochs: int
    configs: list[SanityConfig]
    findings: list[dict[str, Any]]
    verdict: str                # ok | fix-first
    facts: dict[str, Any]
    seconds: float
    notes: list[str] = []


def sanity(spec: SearchSpec, *, device_name: str = "auto", budget_hours: Optional[float] = None,
           runner: Optional[Runner] = None, progress: Optional[Callable[[Event], None]] = None,
           notes: Optional[list[str]] = None) -> SanityReport:
    """A few random configurations, a short budget each, in memory (nothing is stored): are the
    trials different, is the metric recorded and does it move, does anything crash or diverge.
    The checks are the rules of rules/sanity/."""
    import optuna

    from advisor.act.device import describe_device, resolve_device
    from advisor.advice.plan import tables
    from advisor.engine import evaluate, load_knowledge

    began = time.monotonic()
    kb = load_knowledge("sanity")
    n = int(kb.catalogue.analysis.get("configs", 5))
    epochs = min(spec.epochs, int(kb.catalogue.analysis.get("epochs", 2)))
    device = resolve_device(device_name)
    runner = runner or Runner(spec.task, device)
    runner.device = device
    _threads_for(device, 1, spec.task)
    space = spec.get_space()
    short = spec.model_copy(update={"epochs": epochs})
    with _quiet_optuna():
        study = optuna.create_study(direction=spec.direction, sampler=optuna.samplers.RandomSampler(seed=spec.seed),
                                    pruner=optuna.pruners.NopPruner())
    objective = make_objective(runner, short, space)
    state = {"done": 0}

    def callback(st, trial) -> None:
        state["done"] += 1
        if progress is not None:
            progress(Event(phase="sanity", done=state["done"], total=n, elapsed=time.monotonic() - began))

    with _quiet_optuna():
        study.optimize(objective, n_trials=n, catch=(_TrialFailed,), callbacks=[callback], gc_after_trial=False)
    TS = _states()
    configs = []
    for t in study.trials:
        hist = [t.intermediate_values.get(e) for e in range(epochs)] if t.intermediate_values else []
        diverged = bool(t.user_attrs.get("diverged"))
        st = "ok" if t.state == TS.COMPLETE else ("diverged" if diverged else "failed")
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else 0.0
        configs.append(SanityConfig(
            number=t.number, params=_searched(t, space), state=st,
            value=t.value if t.state == TS.COMPLETE else None, history=[_plain(h) for h in hist],
            reason=t.user_attrs.get("fail_reason") or t.user_attrs.get("pruned_reason"), seconds=round(seconds, 3)))
    facts = sanity_facts(study, space, spec, epochs, budget_hours, tables())
    findings, _ = evaluate(kb, facts)
    verdict = "fix-first" if any(f.severity == "error" for f in findings) else "ok"
    shown = {k: _plain(v) for k, v in facts.items() if v is not None}
    return SanityReport(task=spec.task, device=describe_device(device), epochs=epochs, configs=configs,
                        findings=[f.model_dump() for f in findings], verdict=verdict, facts=shown,
                        seconds=round(time.monotonic() - began, 2), notes=list(notes or []))


def sanity_facts(study, space: Space, spec: SearchSpec, epochs: int, budget_hours: Optional[float],
                 tables: dict) -> dict[str, Any]:
    TS = _states()
    trials = study.trials
    n = len(trials)
    ok = [t for t in trials if t.state == TS.COMPLETE and t.value is not None and math.isfinite(t.value)]
    diverged = [t for t in trials if t.user_attrs.get("diverged")]
    failed = [t for t in trials if t.state == TS.FAIL]
    f: dict[str, Any] = {"n_configs": n, "n_ok": len(ok), "n_failed": len(failed), "n_diverged": len(diverged),
                         "sanity_epochs": epochs, "n_params": len(space.params)}
    if n:
        f["failed_fraction"] = len(failed) / n
        f["diverged_fraction"] = len(diverged) / n
    if failed:
        f["first_failure"] = failed[0].user_attrs.get("fail_reason", "no message")
    if diverged:
        f["diverged_configs"] = "; ".join(_fmt_hp(_searched(t, space)) for t in diverged[:3])
    constant = []
    if n >= 2:
        for name, p in space.params.items():
            values = [json.dumps(_searched(t, space).get(name), default=str) for t in trials
                      if name in _searched(t, space)]
            if len(values) >= 2 and len(set(values)) == 1:
                constant.append(name)
    f["n_params_constant"] = len(constant)
    if constant:
        f["params_constant"] = ", ".join(constant)
    f["n_unreported"] = sum(1 for t in ok if not t.intermediate_values)
    if ok:
        values = [t.value for t in ok]
        sign = 1.0 if spec.direction == "maximize" else -1.0
        best = max(values, key=lambda v: sign * v)
        f["metric_low"], f["metric_high"] = min(values), max(values)
        f["metric_spread"] = (max(values) - min(values)) / max(abs(best), 1e-12)
        improved = 0
        for t in ok:
            iv = t.intermediate_values
            if len(iv) >= 2:
                first, last = iv[min(iv)], iv[max(iv)]
                if sign * (last - first) > 0:
                    improved += 1
        f["n_improved"] = improved
        per_epoch = [(t.datetime_complete - t.datetime_start).total_seconds() / max(1, trial_epochs(t))
                     for t in ok if t.datetime_complete and t.datetime_start]
        if per_epoch:
            es = statistics.median(per_epoch)
            share = float(tables["budget"]["pruning_cost_share"].get(space.pruner.type, 1.0))
            runs = spec.trials * share + spec.top_k * spec.seeds_final
            f["epoch_seconds"] = es
            f["planned_trials"] = spec.trials
            f["planned_epochs"] = spec.epochs
            f["search_hours"] = runs * spec.epochs * es / 3600 / max(1, spec.workers)
    if budget_hours:
        f["budget_hours"] = budget_hours
    return f


def _main(argv: list[str]) -> int:
    """`python -m advisor.act.search worker URL STUDY INDEX DEVICE`: a worker process of --workers."""
    if len(argv) != 5 or argv[0] != "worker":
        print("usage: python -m advisor.act.search worker URL STUDY INDEX DEVICE", file=sys.stderr)
        return 2
    _, url, name, index, device = argv
    try:
        run_worker(url, name, index=int(index), device_name=device)
    except AdvisorError as exc:
        print(f"advisor worker: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


__all__ = ["Event", "FinalResult", "Runner", "SanityReport", "Search", "SearchReport", "SearchSpec",
           "audit_findings", "budget_trials", "demo_space", "grid_points", "make_pruner", "make_sampler",
           "open_storage", "plan_space", "pruner_spec", "run", "run_worker", "sampler_spec", "sanity",
           "space_difference", "space_from_file", "storage_url", "suggest", "to_params"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
