"""The phases of a search as the plan prints them: explore, refine, final.

- **explore**: the plan's sampler over the full ranges;
- **refine**: the same sampler over ranges narrowed around the best explore configurations
  (rules/tables/budget.yaml `phases`: the best `refine_top` -- at most that many, and never more
  than `refine_top_share` of the explore trials -- log ranges widened `refine_widen` times beyond
  them, linear ones padded by the same factor);
- **final**: the finalists re-run with new seeds, full length, unpruned (advisor.act.search.run).

Where the search stands is kept in the study (user attributes `advisor_phase` and
`advisor_refine`), so that a resumed search, or another worker on the same storage, continues
in the phase where it stopped and with the same narrowed ranges. Optuna keeps one distribution per
parameter name in a study: numeric ranges may change between trials, a categorical parameter's
choices may not; so a narrowed categorical keeps its choices in the storage and the refine
sampler draws only among those of the best configurations (`keep`).
"""

from __future__ import annotations

import math
import random
from typing import Any, Optional

from advisor.space import Space

PHASE_ATTR = "advisor_phase"
REFINE_ATTR = "advisor_refine"


def split_trials(trials: int, explore: int | None, refine: int | None) -> list[dict[str, Any]]:
    """The search trials between explore and refine, in the plan's proportion ({name, trials})."""
    from advisor.advice.plan import tables

    if explore is None or refine is None:
        share = float(tables()["budget"]["phases"]["explore"])
    else:
        share = explore / max(1, explore + refine)
    if share >= 1.0 or trials < 2:
        return [{"name": "explore", "trials": trials}]
    n_explore = min(trials - 1, max(1, round(trials * share)))
    return [{"name": "explore", "trials": n_explore}, {"name": "refine", "trials": trials - n_explore}]


def refine_top(n_explore: int) -> int:
    """How many of the best explore configurations the refine phase narrows around."""
    from advisor.advice.plan import refine_top as plan_refine_top

    return plan_refine_top(n_explore)


def narrow(space: Space, best: list[dict[str, Any]], widen: float) -> tuple[Space, dict[str, list]]:
    """The space narrowed around the hyperparameters `best` (decoded values, as the task got them),
    and the categorical choices to keep drawing from. Ranges never leave the original ones."""
    if not best:
        return space, {}
    params: dict[str, Any] = {}
    keep: dict[str, list] = {}
    for name, p in space.params.items():
        values = [hp[name] for hp in best if name in hp and hp[name] is not None]
        if not values:
            params[name] = p
            continue
        if p.type == "categorical" or (p.choices and space.strategy not in ("grid", "manual")):
            seen = [c for c in (p.choices or []) if c in values]
            if seen and len(seen) < len(p.choices or []):
                keep[name] = seen
            params[name] = p
            continue
        if p.by is not None:
            ranges = {}
            for key, (low, high) in (p.ranges or {}).items():
                mine = [hp[name] for hp in best if name in hp and str(hp.get(p.by)) == key]
                ranges[key] = list(_narrow(mine, low, high, p.log, widen, p.type)) if mine else [low, high]
            params[name] = p.model_copy(update={"ranges": ranges})
            continue
        if p.log and p.zero:
            positive = [v for v in values if v > 0]
            low, high = (_narrow(positive, p.low, p.high, True, widen, p.type) if positive else (p.low, p.high))
            params[name] = p.model_copy(update={"low": low, "high": high, "zero": len(positive) < len(values)})
            continue
        low, high = _narrow(values, p.low, p.high, p.log, widen, p.type)
        params[name] = p.model_copy(update={"low": low, "high": high})
    return space.model_copy(update={"params": params}), keep


def _narrow(values: list[float], low: float, high: float, log: bool, widen: float, kind: str) -> tuple[float, float]:
    a, b = float(min(values)), float(max(values))
    if log and a > 0:
        a, b = a / widen, b * widen
    else:
        pad = max(b - a, (high - low) * 0.1) * (widen - 1) / 2
        a, b = a - pad, b + pad
    a, b = max(float(low), a), min(float(high), b)
    if kind == "int":
        a, b = math.floor(a), math.ceil(b)
        a, b = max(int(low), int(a)), min(int(high), int(b))
        if a == b:
            b = min(int(high), a + 1) if a < high else b
            a = max(int(low), b - 1)
    return a, b


def distributions(space: Space) -> dict[str, Any]:
    """The Optuna distributions `suggest` asks for under `space` (every branch of a `by` parameter),
    so that a sampler can be told the narrowed ranges before the trial asks for them."""
    import optuna.distributions as D

    from advisor.act.search.space import _effective, _floor, _has_zero, _zero_floor

    out: dict[str, Any] = {}

    def one(name: str, p) -> None:
        if p.type == "categorical" or p.choices:
            out[name] = D.CategoricalDistribution(list(p.choices))
            return
        if p.type == "int":
            out[name] = D.IntDistribution(int(p.low), int(p.high), log=bool(p.log and p.low > 0),
                                          step=1 if p.log else int(p.step or 1))
            return
        if _has_zero(p):
            out[name] = D.FloatDistribution(_zero_floor(_floor(p)), float(p.high), log=True)
            return
        out[name] = D.FloatDistribution(float(p.low), float(p.high), log=bool(p.log), step=None if p.log else p.step)

    for name, p in space.params.items():
        if p.by is None:
            one(name, p)
        else:
            for key in (p.ranges or {}):
                one(f"{name}_{key}", _effective(p, key))
    return out


def refine_sampler(base, space: Space, keep: dict[str, list], seed: int):
    """The plan's sampler `base` drawing inside the narrowed `space` (see the module's docstring)."""
    import optuna

    narrowed = distributions(space)

    class RefineSampler(optuna.samplers.BaseSampler):
        """The plan's sampler on the narrowed ranges; categorical values only among `keep`."""

        def __init__(self) -> None:
            self._base, self._rng = base, random.Random(seed)

        def infer_relative_search_space(self, study, trial):
            found = self._base.infer_relative_search_space(study, trial)
            return {n: narrowed.get(n, d) for n, d in found.items() if n not in keep}

        def sample_relative(self, study, trial, search_space):
            if not search_space:
                return {}
            return self._base.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            if param_name in keep:
                return self._rng.choice(keep[param_name])
            return self._base.sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial) -> None:
            self._base.before_trial(study, trial)

        def after_trial(self, study, trial, state, values) -> None:
            self._base.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self._base.reseed_rng()

    return RefineSampler()


def describe(space: Space, keep: dict[str, list]) -> dict[str, Any]:
    """The narrowed ranges as the report shows them: name -> [low, high], {key: [low, high]} or choices."""
    out: dict[str, Any] = {}
    for name, p in space.params.items():
        if name in keep:
            out[name] = list(keep[name])
        elif p.type == "categorical" or p.choices:
            out[name] = list(p.choices or [])
        elif p.by is not None:
            out[name] = {k: list(v) for k, v in (p.ranges or {}).items()}
        else:
            out[name] = [p.low, p.high] + (["or 0"] if p.zero and p.log else [])
    return out


def stored_refine(study) -> Optional[tuple[Space, dict[str, list]]]:
    raw = study.user_attrs.get(REFINE_ATTR)
    if not isinstance(raw, dict) or "space" not in raw:
        return None
    try:
        return Space.model_validate(raw["space"]), dict(raw.get("keep") or {})
    except Exception:
        return None
