"""The sanity run: a few short random configurations checked before the budget is spent."""

from __future__ import annotations

import json
import math
import statistics
import time
from typing import Any, Callable, Optional

from pydantic import BaseModel

from advisor.act.search.constants import SANITY_SCHEMA
from advisor.act.search.objective import (
    Runner, SearchSpec, _TrialFailed, _fmt_hp, _plain, make_objective,
)
from advisor.act.search.run import Event, _quiet_optuna, _searched, _threads_for
from advisor.act.search.trials import _states, trial_epochs
from advisor.space import Space


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
    objective = make_objective(runner, short, space, shared=False)
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
