"""A W&B sweep configuration for a plan, valid for `wandb sweep sweep.yaml`.

Log ranges use `log_uniform_values` (min and max are the values themselves); `log_uniform` would
read them as exponents of e, a common mistake.
"""

from __future__ import annotations

from typing import Any

import yaml

from advisor.advice.plan import Plan, PlanParam
from advisor.emit import reason_codes, summary

METHODS = {"manual": "grid", "grid": "grid", "random": "random", "bayesian": "bayes"}
WANDB_TESTED = "0.31"  # wandb (and W&B's `sweeps` 0.3) the real-tool tests load and run the sweeps with
PLANNED = "planned"    # a conditional grid: one grid axis whose values are the planned configurations


def conditional_grid(plan: Plan) -> bool:
    """A grid whose ranges depend on another parameter (a learning rate per optimizer): W&B crosses
    every value of every axis, so the sweep lists the planned configurations instead (report 2.1)."""
    return plan.strategy in ("grid", "manual") and bool(plan.grid) and any(p.by and p.grid for p in plan.params)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() and abs(value) >= 1 else float(value)


def _param(p: PlanParam, gridded: bool) -> dict[str, Any]:
    if p.distribution == "categorical":
        return {"values": list(p.choices or [])}
    if gridded:
        if p.by and p.grid:
            return {"values": sorted({v for vals in p.grid.values() for v in vals})}
        return {"values": list(p.choices or [])}
    low, high = (p.low, p.high)
    if p.distribution == "loguniform":
        return {"distribution": "log_uniform_values", "min": float(low / 10 if p.zero else low), "max": float(high)}
    if p.distribution == "uniform":
        return {"distribution": "uniform", "min": float(low), "max": float(high)}
    if p.distribution == "intlog":
        return {"distribution": "q_log_uniform_values", "min": _number(low), "max": _number(high), "q": 1}
    return {"distribution": "int_uniform", "min": int(low), "max": int(high)}


def sweep_config(plan: Plan) -> dict[str, Any]:
    gridded = plan.strategy in ("grid", "manual")
    if conditional_grid(plan):
        listed = {k for config in plan.grid or [] for k in config}
        parameters = {PLANNED: {"values": [dict(config) for config in plan.grid or []]}}
        parameters.update({p.name: _param(p, gridded) for p in plan.params if p.name not in listed})
    else:
        parameters = {p.name: _param(p, gridded) for p in plan.params}
    for name, value in plan.fixed.items():
        parameters.setdefault(name, {"value": value})
    config: dict[str, Any] = {
        "program": "train.py",
        "name": plan.name,
        "method": METHODS[plan.strategy],
        "metric": {"name": plan.metric, "goal": plan.direction},
        "parameters": parameters,
    }
    if not gridded:
        config["run_cap"] = max(1, plan.n_configs)
    pr = plan.pruner
    if pr.type != "none":
        config["early_terminate"] = {"type": "hyperband",
                                     "min_iter": int(pr.min_resource or pr.n_warmup_steps or 1),
                                     "eta": int(pr.reduction_factor or 3)}
    return config


def limits(plan: Plan) -> list[str]:
    """What a W&B sweep cannot do of this plan, as comment lines of the file (and `plan` prints
    them): nothing of the plan is dropped without a word."""
    gridded = plan.strategy in ("grid", "manual")
    lines: list[str] = []
    for p in plan.params:
        if p.zero:
            lines.append(f"# {p.name}: values below {p.low:g} mean exactly 0 (no {p.name.replace('_', ' ')}), a "
                         "separate choice that a log range cannot reach; in train.py:")
            lines.append(f"#   {p.name} = 0.0 if config.{p.name} < {p.low:g} else config.{p.name}")
        if p.by and p.ranges and not (gridded and p.grid):
            rng = ", ".join(f"{k}: {lo:g}-{hi:g}" for k, (lo, hi) in p.ranges.items())
            lines.append(f"# {p.name}: W&B has no conditional ranges; this covers every {p.by}'s range "
                         f"({rng}); prefer the Optuna script for this space.")
        if gridded and p.by and p.grid and conditional_grid(plan):
            planned = len(plan.grid or [])
            crossed = len({v for vals in p.grid.values() for v in vals}) * len(p.grid)
            lines.append(f"# {p.name}: a range per {p.by}, and W&B has no conditional grid (crossing the axes "
                         f"would run {crossed} {p.name}-{p.by} pairs for the {planned} planned); the sweep is one "
                         f"grid over '{PLANNED}', whose {planned} values are the planned configurations. "
                         "In train.py:")
            lines.append(f"#   hp = {{**config, **config.pop('{PLANNED}', {{}})}}  # config = dict(wandb.config)")
    pr = plan.pruner
    if pr.type in ("median", "patient"):
        lines.append(f"# Pruner: the plan's {pr.type} pruner has no W&B form; W&B's hyperband early termination "
                     "stands in (it keeps the best 1/eta of the runs at each band instead of stopping a run "
                     "below the median).")
    elif pr.type == "successive_halving":
        lines.append("# Pruner: successive halving as W&B's hyperband early termination (bands at min_iter "
                     "x eta^k; the best 1/eta go on).")
    if any(ph.name == "refine" for ph in plan.phases):
        lines.append("# Refine phase: a sweep cannot narrow its ranges; run_cap covers explore and refine over "
                     "the full ranges (narrow them by hand after the explore runs, or use the Optuna script).")
    stale = next((r.value for r in plan.stop_rules if r.name == "stale_trials"), None)
    if stale:
        lines.append(f"# Stop rule: a sweep has none; stop it (wandb sweep --stop) when the best run has not "
                     f"improved for {int(stale)} runs.")
    if plan.strategy == "random" and plan.quasi_random:
        lines.append("# W&B random search is plain random, not quasi-random: the Optuna script covers "
                     "the space more evenly.")
    if plan.baseline:
        base = ", ".join(f"{k}={v}" for k, v in plan.baseline.items())
        lines.append(f"# Baseline: W&B cannot enqueue a run; run your current config ({base}) first, "
                     "in the same project.")
    if plan.top_k:
        lines.append(f"# Final phase: re-run the best {plan.top_k} runs with {plan.seeds_final} seeds each "
                     "and report mean ± std (a sweep does not do this by itself).")
    return lines


def render(plan: Plan, filename: str = "sweep.yaml") -> str:
    lines = [
        "# W&B sweep planned by `advisor plan`.",
        f"# {summary(plan)}",
        f"# Decisions: {reason_codes(plan)} (`advisor explain CODE`).",
        f"# Run: wandb sweep {filename if filename.isprintable() else repr(filename)}, then "
        "`wandb agent <sweep-id>` once per GPU.",
        f"# Written for wandb >= {WANDB_TESTED} (loaded and run with wandb {WANDB_TESTED} and W&B's sweeps 0.3); "
        "`wandb sweep` validates it.",
        "# program: replace train.py with your training script; it reads wandb.config and logs",
        f"#   {plan.metric} every epoch (the early termination reads it).",
    ]
    lines += limits(plan)
    body = yaml.safe_dump(sweep_config(plan), sort_keys=False, default_flow_style=False, width=100)
    return "\n".join(lines) + "\n" + body
