"""advisor's own search-space YAML (`advisor.space.Space`): what `check` and `search` read."""

from __future__ import annotations

import math
from typing import Any

import yaml

from advisor.advice.plan import Plan, PlanParam
from advisor.emit import reason_codes, summary
from advisor.space import Param, Pruner, Space


def to_space(plan: Plan) -> Space:
    params: dict[str, Param] = {}
    gridded = plan.strategy in ("grid", "manual")
    for p in plan.params:
        if p.distribution == "categorical":
            params[p.name] = Param(type="categorical", choices=list(p.choices or []))
            continue
        kind = "int" if p.distribution in ("int", "intlog") else "float"
        fields: dict[str, Any] = {"type": kind, "log": p.log}
        if p.by and p.ranges:
            fields.update(by=p.by, ranges={k: list(v) for k, v in p.ranges.items()})
            if gridded and p.grid:
                fields["grid"] = {k: list(v) for k, v in p.grid.items()}
        else:
            fields.update(low=p.low, high=p.high)
            if gridded and p.choices:
                fields["choices"] = list(p.choices)
        if p.zero:
            fields["zero"] = True
        params[p.name] = Param(**fields)
    pr = plan.pruner
    pruner = Pruner(type=pr.type, n_startup_trials=pr.n_startup_trials, n_warmup_steps=pr.n_warmup_steps,
                    patience=pr.patience,
                    **({"min_resource": pr.min_resource, "max_resource": pr.max_resource,
                        "reduction_factor": pr.reduction_factor} if pr.type == "hyperband" else
                       {"min_resource": pr.min_resource, "reduction_factor": pr.reduction_factor}
                       if pr.type == "successive_halving" else {}))
    phases = {ph.name: ph.configs for ph in plan.phases if ph.name in ("explore", "refine", "grid", "manual")}
    extra: dict[str, Any] = {
        "sampler": {"type": plan.sampler.type, **plan.sampler.args},
        "phases": phases,
        "stop": {r.name: r.value for r in plan.stop_rules},
    }
    return Space(name=plan.name, direction=plan.direction, metric=plan.metric, strategy=plan.strategy,
                 trials=max(1, plan.n_configs), epochs=planned_epochs(plan), seeds_final=plan.seeds_final,
                 top_k=plan.top_k, pruner=pruner, baseline=plan.baseline, fixed=dict(plan.fixed),
                 params=params, **extra)


def middle(p: PlanParam) -> Any:
    """A value for a searched parameter that the baseline does not name (Ray's OptunaSearch needs
    every searched parameter in a point; the Optuna script would draw it at random): the middle of
    its range (geometric on a log scale), the middle choice; None for a range per optimizer."""
    if p.distribution == "categorical":
        choices = list(p.choices or [])
        return choices[len(choices) // 2] if choices else None
    if p.by and p.ranges:
        return None  # placed by its key's range in config_from_hp
    lo, hi = float(p.low), float(p.high)
    mid = math.sqrt(lo * hi) if p.log and lo > 0 else (lo + hi) / 2
    return int(round(mid)) if p.distribution in ("int", "intlog") else mid


def planned_epochs(plan: Plan) -> int | None:
    """The epochs per trial the plan was made for: given, or the ones its pruner assumed (so that
    `advisor search --plan` trains what the pruner's rungs were set for, not the trainer's default)."""
    if plan.budget.epochs:
        return plan.budget.epochs
    if getattr(plan.pruner, "epochs_assumed", False):
        from advisor.advice.plan import tables

        return int(tables()["budget"]["pruner"]["assumed_epochs"])
    return None


def render(plan: Plan, filename: str = "space.yaml") -> str:
    space = to_space(plan)
    data = _plain(space.to_yaml_dict())
    assumed = ("" if plan.budget.epochs or space.epochs is None else
               f"# epochs: {space.epochs} assumed (no --epochs): the pruner is set for it; set your own here.\n")
    header = (f"# advisor search space, planned by `advisor plan`.\n"
              f"# {summary(plan)}\n"
              f"# Decisions: {reason_codes(plan)} (`advisor explain CODE`).\n"
              "# zero: true adds exactly 0 as a choice besides the log range (a log range cannot reach 0).\n"
              + assumed)
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


def _plain(value: Any) -> Any:
    """Drop empty pruner fields and make every value a plain YAML scalar."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
