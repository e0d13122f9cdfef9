"""Emitters: a plan written out as something that runs it.

One module per target, each a pure function `render(plan, filename) -> str`:
`optuna` (a runnable Python script), `wandb` (a sweep YAML for `wandb sweep`), `ray` (a Ray Tune
config module: `param_space`, scheduler, search algorithm) and `space` (advisor's own search-space
YAML, `advisor.space.Space`). None of them imports Optuna, W&B or Ray: the emitted files do.
"""

from __future__ import annotations

from typing import Any, Callable

from advisor.advice.plan import Plan
from advisor.errors import InputError

TARGETS = ("optuna", "wandb", "ray", "yaml")


def _renderer(target: str) -> Callable[[Plan, str], str]:
    if target == "optuna":
        from advisor.emit.optuna import render
    elif target == "wandb":
        from advisor.emit.wandb import render
    elif target == "ray":
        from advisor.emit.ray import render
    elif target == "yaml":
        from advisor.emit.space import render
    else:
        raise InputError(f"--emit: unknown target '{target}' (choose from {', '.join(TARGETS)})")
    return render


def emit(plan: Plan, target: str, filename: str = "search") -> str:
    """The text of the file that runs this plan with `target`."""
    render = _renderer(target)
    if not plan.tune:
        why = next((r.code for r in plan.reasons if r.severity != "info" or r.code.startswith("P01")), None)
        raise InputError(f"--emit {target}: the plan says not to tune"
                         f"{f' ({why})' if why else ''}; there is no search to write")
    return render(plan, filename)


def search_space(plan: Plan) -> dict[str, dict[str, Any]]:
    """The space as the emitted code reads it: name -> {type, low, high, log, zero, by, ranges, choices}.

    float/int ranges carry no grid points here: a grid or manual sweep lists its configurations
    separately (`plan.grid`).
    """
    space: dict[str, dict[str, Any]] = {}
    for p in plan.params:
        if p.distribution == "categorical":
            space[p.name] = {"type": "categorical", "choices": list(p.choices or [])}
            continue
        kind = "int" if p.distribution in ("int", "intlog") else "float"
        spec: dict[str, Any] = {"type": kind}
        if p.by and p.ranges:
            spec.update(by=p.by, ranges={k: [float(lo), float(hi)] for k, (lo, hi) in p.ranges.items()})
        else:
            lo, hi = p.low, p.high
            spec.update(low=int(lo) if kind == "int" else float(lo), high=int(hi) if kind == "int" else float(hi))
        spec["log"] = p.log
        if p.zero:
            spec["zero"] = True
        space[p.name] = spec
    return space


def summary(plan: Plan) -> str:
    """One line: what the plan runs."""
    names = ", ".join(p.name for p in plan.params)
    final = f", final top {plan.top_k} x {plan.seeds_final} seeds" if plan.top_k else ""
    pruner = f", {plan.pruner.type} pruning" if plan.pruner.type != "none" else ""
    return (f"{plan.strategy} search over {names}: {plan.n_configs} configurations{pruner}{final}; "
            f"budget {plan.budget.budget_hours:g} h x {plan.budget.workers} worker(s), "
            f"expected {plan.expected_hours:g} h")


def reason_codes(plan: Plan) -> str:
    return ", ".join(f"{r.code} {r.name}" for r in plan.reasons)
