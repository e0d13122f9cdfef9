"""Facts of a search space: the space as a whole, and each parameter on its own scale."""

from __future__ import annotations

import math
from typing import Any

from advisor.facts.params import canonical, name_parts, tables
from advisor.ingest.space import SpaceFile, grid_size

ADAPTIVE = {"adam", "adamw", "rmsprop", "adagrad", "adamax", "nadam", "radam", "lamb"}


def _is_exponential(name: str, canon: str | None) -> bool:
    scales = tables()["scales"]
    if canon is not None:
        return canon in scales["exponential"]
    return any(p in scales["exponential_fragments"] for p in name_parts(name))


def _decades(low: float | None, high: float | None) -> float | None:
    if low is None or high is None or low <= 0 or high <= 0:
        return None
    return math.log10(high / low)


def _linear_choices(values: list[float], a: dict[str, float]) -> bool:
    """Evenly spaced on a linear scale (gaps within a factor of each other), across a decade or
    more, or from 0 in several steps (0, 0.025, 0.05, ...: a linear grid where a log one belongs)."""
    values = sorted(values)
    if len(values) < 3:
        return False
    gaps = [b - a for a, b in zip(values, values[1:])]
    if min(gaps) <= 0 or max(gaps) / min(gaps) > a["linear_gap_ratio"]:
        return False
    positive = [v for v in values if v > 0]
    spans_decade = len(positive) >= 2 and positive[-1] / positive[0] >= 10
    return spans_decade or (values[0] == 0 and len(values) >= a["linear_from_zero_values"])


def _lr_range(optimizer: str | None) -> tuple[float, float]:
    by = tables()["ranges"]["parameters"]["learning_rate"]["by_optimizer"]
    return tuple(by.get(optimizer or "unknown", by["unknown"]))  # type: ignore[return-value]


_SCALAR = (str, int, float, bool, type(None))
# W&B distributions whose min/max are the values themselves (a reversed pair is swapped by --fix)
_WANDB_VALUE_BOUNDS = {"int_uniform", "uniform", "q_uniform", "log_uniform_values",
                       "q_log_uniform_values", "inv_log_uniform_values"}


def broken_param_facts(sf: SpaceFile, name: str) -> dict[str, Any]:
    """Facts of a parameter that could not be read as one (lint mode: a W&B distribution that
    W&B does not have): its name, line and what it says."""
    raw = sf.broken[name]
    return {"p_name": name, "p_canonical": canonical(name) or "other", "p_line": sf.lines.get(name),
            "p_distribution": raw.get("distribution"), "p_distribution_known": False}


def _bad_choice(p: Any) -> str | None:
    """The first choice a search cannot use: a list or mapping (Optuna takes numbers, strings,
    booleans and null), or for a float / int parameter anything but a number."""
    numeric = p.type in ("float", "int")
    for c in p.choices or []:
        if not isinstance(c, _SCALAR) or (numeric and (isinstance(c, bool) or not isinstance(c, (int, float)))):
            return repr(c)[:60]
    return None


def _validity(sf: SpaceFile, name: str) -> dict[str, Any]:
    """What keeps the parameter from running as written: a reversed or non-finite range (the
    first one, as written), choices that are not values, a step that does not move."""
    p = sf.space.params[name]
    facts: dict[str, Any] = {"p_reversed": False, "p_nonfinite": False}
    for key, lo, hi in p.bounds():
        if not (math.isfinite(lo) and math.isfinite(hi)):
            facts.update(p_nonfinite=True, p_bad_low=lo, p_bad_high=hi, p_bad_range=key)
            break
        if p.type != "categorical" and lo > hi:
            facts.update(p_reversed=True, p_bad_low=lo, p_bad_high=hi, p_bad_range=key)
            break
    if not facts["p_nonfinite"] and p.type in ("float", "int"):
        odd = [c for c in p.choices or [] if isinstance(c, float) and not math.isfinite(c)]
        if odd:
            facts.update(p_nonfinite=True, p_bad_low=min(odd), p_bad_high=max(odd))
    raw = sf.raw_params.get(name) or {}
    if facts["p_reversed"] and p.by is None and p.choices is None:
        keys = ("low", "high") if sf.format == "advisor" else ("min", "max")
        if sf.format == "advisor" or sf.wandb_distribution.get(name) in _WANDB_VALUE_BOUNDS:
            facts["p_swap_low"], facts["p_swap_high"] = raw.get(keys[1]), raw.get(keys[0])
    bad = _bad_choice(p)
    facts["p_choices_unusable"] = bad is not None
    facts["p_bad_choice"] = bad
    facts["p_has_choices"] = bool(p.choices)
    facts["p_by"] = p.by
    facts["p_by_searched"] = p.by is not None and p.by in sf.space.params
    facts["p_step"] = p.step
    facts["p_distribution"] = sf.wandb_distribution.get(name)
    facts["p_distribution_known"] = True
    return facts


def param_facts(sf: SpaceFile, name: str, optimizer: str | None, a: dict[str, float]) -> dict[str, Any]:
    p = sf.space.params[name]
    canon = canonical(name)
    ranges = tables()["ranges"]["parameters"]
    validity = _validity(sf, name)
    numeric = [c for c in (p.choices or []) if isinstance(c, (int, float)) and not isinstance(c, bool)
               and math.isfinite(c)]
    bounds = p.bounds()
    if validity["p_reversed"] or validity["p_nonfinite"]:
        bounds, numeric = [], []  # a range that cannot run has no scale to judge (rules K003, K004)
    low = min((b[1] for b in bounds), default=min(numeric) if numeric else None)
    high = max((b[2] for b in bounds), default=max(numeric) if numeric else None)
    positive = [v for v in numeric if v > 0]
    decades = _decades(low, high) if bounds else (_decades(min(positive), max(positive)) if len(positive) >= 2 else None)
    facts: dict[str, Any] = {
        "p_name": name, "p_canonical": canon or "other", "p_line": sf.lines.get(name),
        "p_type": p.type, "p_log": p.log, "p_low": low, "p_high": high, "p_decades": decades,
        "p_exponential": _is_exponential(name, canon), "p_n_choices": len(p.choices or []) or None,
        "p_choices_linear": _linear_choices([float(v) for v in numeric], a) if numeric else False,
        "p_conditional": p.by is not None,
        "p_wandb_log_uniform": sf.wandb_distribution.get(name) in ("log_uniform", "q_log_uniform", "inv_log_uniform"),
        **validity,
    }
    raw = sf.raw_params.get(name) or {}
    if facts["p_wandb_log_uniform"] and bounds:
        facts["p_raw_low"], facts["p_raw_high"] = raw.get("min"), raw.get("max")
    # corrected ranges the lint rules quote and --fix writes
    if canon == "learning_rate":
        facts["p_usual_low"], facts["p_usual_high"] = _lr_range(optimizer)
    elif canon in ranges and "range" in ranges[canon]:
        facts["p_usual_low"], facts["p_usual_high"] = ranges[canon]["range"]
    elif canon == "weight_decay":
        facts["p_usual_low"], facts["p_usual_high"] = ranges["weight_decay"]["by_optimizer"].get(
            optimizer or "default", ranges["weight_decay"]["by_optimizer"]["default"])
    if high is not None and high > 0:
        floor = facts.get("p_usual_low") if canon in ("weight_decay", "learning_rate") else None
        facts["p_safe_low"] = floor if floor and floor < high else high / 1e4
    return facts


def space_facts(sf: SpaceFile, context: dict[str, Any], a: dict[str, float]) -> tuple[dict[str, Any], str | None]:
    """Facts of the whole space, and the optimizer it trains with (fixed or given)."""
    space = sf.space
    by_canon: dict[str, list[str]] = {}
    for name in space.params:
        by_canon.setdefault(canonical(name) or name, []).append(name)
    fixed_canon = {canonical(k) or k: v for k, v in space.fixed.items()}
    optimizer = fixed_canon.get("optimizer") or context.get("optimizer")
    optimizer = str(optimizer).lower() if optimizer else None
    opt_choices: list[str] = []
    if "optimizer" in by_canon:
        opt_choices = [str(c).lower() for c in space.params[by_canon["optimizer"][0]].choices or []]
    lr_names = by_canon.get("learning_rate", [])
    wd_positive = False
    if "weight_decay" in by_canon:
        wd = space.params[by_canon["weight_decay"][0]]
        wd_positive = any(v > 0 for v in [wd.high or 0, *[c for c in wd.choices or [] if isinstance(c, (int, float))]])
    elif isinstance(fixed_canon.get("weight_decay"), (int, float)):
        wd_positive = fixed_canon["weight_decay"] > 0
    warmup_fixed = fixed_canon.get("warmup")
    epochs = space.epochs or context.get("epochs")
    trial_hours = context.get("trial_hours")
    if trial_hours is None and context.get("epoch_hours") and epochs:
        trial_hours = context["epoch_hours"] * epochs
    size = grid_size(space)
    budget = context.get("budget_hours")
    affordable = int(budget / trial_hours) if budget and trial_hours else None
    advised = int(a["random_trials_advised"])
    family = fixed_canon.get("model_family") or context.get("model_family")
    facts: dict[str, Any] = {
        "format": sf.format, "strategy": space.strategy, "n_params": len(space.params) + len(sf.broken),
        "params_line": sf.key_lines.get("params" if sf.format == "advisor" else "parameters"),
        "wandb_goal": sf.goal, "wandb_goal_line": sf.key_lines.get("metric.goal"),
        "wandb_goal_unknown": sf.goal is not None and sf.goal not in ("minimize", "maximize"),
        "trials": space.trials, "grid_size": size, "epochs": epochs, "seeds": space.seeds,
        "budget_hours": budget, "trial_hours": trial_hours,
        "grid_hours": size * trial_hours if size and trial_hours else None,
        "affordable_trials": affordable,
        "random_trials_advised": min(advised, affordable) if affordable else advised,
        "pruning": space.pruner.type != "none",
        "lr_searched": bool(lr_names), "lr_conditional": any(space.params[n].by for n in lr_names),
        "batch_size_searched": "batch_size" in by_canon,
        "optimizer_searched": bool(opt_choices),
        "optimizers_mixed": bool({c for c in opt_choices if c in ADAPTIVE}) and any(
            c not in ADAPTIVE for c in opt_choices),
        "optimizer": optimizer if optimizer in ("sgd", "adam", "adamw", "rmsprop") else ("other" if optimizer else None),
        "adam_used": optimizer == "adam" or "adam" in opt_choices,
        "weight_decay_positive": wd_positive,
        "warmup_present": "warmup" in by_canon or (isinstance(warmup_fixed, (int, float)) and warmup_fixed > 0),
        "architecture_searched": "width" in by_canon or "depth" in by_canon,
        "model_family": str(family).lower() if family else None,
        "seed_searched": any(name_parts(n)[-1:] == ["seed"] for n in space.params),
    }
    return facts, optimizer
