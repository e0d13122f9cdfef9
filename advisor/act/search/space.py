"""The plan's space in Optuna: suggesting values, grids, samplers and pruners."""

from __future__ import annotations

import json
import warnings
from typing import Any, Optional

from advisor.errors import InputError
from advisor.space import Space


def space_from_file(path) -> Space:
    """A `--plan` file: advisor's space YAML (what `advisor plan --emit yaml` writes) or a W&B sweep."""
    from advisor.advice.check import runnable_space  # the guarded read, refused on a K0xx finding

    space = runnable_space(path).space
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
            "min_early_stopping_rate": 0, "bootstrap_count": int(extra.get("bootstrap_count") or 0)}
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
