"""The plan: budget, hardware and context in; strategy, space, budget split, pruner, stop rules out.

Every decision comes from a rule in rules/plan/ (its code is in `reasons`); the numbers come
from rules/tables/{budget,ranges,importance}.yaml. The facts are settled in two evaluations of
the same rules: the first decides the budget band, which sets how many parameters to pick and
what the final seeds cost; the second runs with the chosen parameters and the configurations
the budget affords, and its findings are the plan's reasons.

`advisor plan --json` prints `Plan` (schema "advisor.plan/1"); its top level:

    tune            bool: run a search at all (false: `reasons` say why and what to do instead)
    strategy        "manual" | "grid" | "random" | "bayesian"
    n_configs       search configurations (pruned ones included; the final seeds not)
    params          [{name, tier, share, distribution (loguniform|uniform|int|intlog|categorical),
                      low, high, log, choices (categorical, or grid points), zero (0 is a separate
                      choice), by + ranges (a range per optimizer), grid, unit, because, note}]
    phases          [{name (manual|grid|explore|refine|final), configs, seeds, sampler,
                      description, gpu_hours}]
    pruner          {type (none|median|hyperband|patient), cost_share, n_startup_trials,
                     n_warmup_steps, interval_steps, min_resource, max_resource,
                     reduction_factor, patience, epochs_assumed}
    seeds_final, top_k   the final validation: top_k configurations x seeds_final seeds
    stop_rules      [{name (min_gain_per_trial|stale_trials|budget), value, text}]
    expected_hours  wall-clock hours with the workers in parallel; gpu_hours the compute
    reasons         [{code, name, kind, severity, message, advice, tune, source}]: every fired rule
    baseline        the current configuration, enqueued as trial 0 (or null)
    fixed           values not searched (the optimizer, epochs, other --current values)
    coupled         [{params, code, scaling (linear|sqrt|by_optimizer), note}]
    sampler         {type, args}; storage "sqlite" | "journal"; quasi_random; lr_shift
    grid            every configuration of a grid or manual sweep, in order (or null)
    deferred        [{param, asked_by, why}]: asked for by a rule, left out for the budget
    budget          {budget_hours, workers, compute_hours, trial_hours, epochs, band, band_label,
                     affordable_configs, final_gpu_hours}
    hardware        advisor.hardware/1 (cuda [{index, name, memory_gb}], mps, cpu_cores, ...)
    from_run        the --from diagnosis {run, labels, notes, codes, verdict, lr} (or null)
    metric, direction, name, notes
"""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from advisor.engine import Finding, evaluate, load_knowledge
from advisor.errors import InputError
from advisor.facts.hardware import Hardware
from advisor.facts.params import param_aliases, tables

SCHEMA = "advisor.plan/1"
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
MODEL_FAMILIES = ("cnn", "transformer", "mlp", "rnn")
CATEGORICAL = ("optimizer", "lr_schedule")
DIAG_FACTS = {"healthy": "diag_healthy", "underfitting": "diag_underfitting",
              "overfitting": "diag_overfitting", "unstable": "diag_unstable",
              "diverged": "diag_diverged", "slow_convergence": "diag_slow_convergence",
              "plateau": "diag_plateau", "not_learning": "diag_not_learning"}
# Diagnose notes (no label) that the plan reads, by rule name.
DIAG_NOTES = {"noisy-validation": "diag_noisy_validation"}


# --------------------------------------------------------------------------- the tables

def canonical_param(name: str, option: str = "--params") -> str:
    key = name.strip().lower()
    names = param_aliases()
    if key in names:
        return names[key]
    if key.replace("-", "_") in names:
        return names[key.replace("-", "_")]
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    hint = f"; did you mean '{names[close[0]]}'?" if close else ""
    raise InputError(f"{option}: unknown parameter '{name}'{hint} (known: {', '.join(tables()['importance'])})")


def parse_params(items: list[str] | None) -> list[str] | None:
    """['lr,bs', 'wd'] -> ['learning_rate', 'batch_size', 'weight_decay']; None when not given."""
    if not items:
        return None
    names = [canonical_param(p) for item in items for p in item.split(",") if p.strip()]
    if not names:
        raise InputError("--params: no parameter named")
    return list(dict.fromkeys(names))


def _check_valid(key: str, text: str, name: str, value: float) -> None:
    """One line when a current value is one no training runs with (rules/tables/ranges.yaml `valid`)."""
    v = tables()["ranges"].get("valid", {}).get(name)
    if not v:
        return
    tests = (("above", lambda b: value > b, "above"), ("low", lambda b: value >= b, "at least"),
             ("below", lambda b: value < b, "below"), ("high", lambda b: value <= b, "at most"))
    wrong = [f"{words} {v[k]:g}" for k, ok, words in tests if k in v and not ok(v[k])]
    if v.get("integer") and not value.is_integer():
        wrong.append("a whole number")
    if wrong:
        raise InputError(f"--current {key}={text}: {name.replace('_', ' ')} must be {' and '.join(wrong)}")


def parse_current(assignments: dict[str, str], optimizer: str | None = None) -> dict[str, Any]:
    """--current key=value pairs -> canonical name -> number (or name, for optimizer and schedule)."""
    current: dict[str, Any] = {}
    for key, text in assignments.items():
        name = canonical_param(key, "--current")
        if name in CATEGORICAL:
            current[name] = text.lower()
            continue
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"--current {key}={text}: '{text}' is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"--current {key}={text}: must be a finite number >= 0")
        _check_valid(key, text, name, value)
        current[name] = int(value) if name in ("batch_size", "width", "depth") and value.is_integer() else value
    if "optimizer" in current and current["optimizer"] not in OPTIMIZERS:
        raise InputError(f"--current optimizer={current['optimizer']}: unknown optimizer "
                         f"(choose from {', '.join(OPTIMIZERS)})")
    if optimizer and current.get("optimizer", optimizer) != optimizer:
        raise InputError(f"--current optimizer={current['optimizer']} contradicts --optimizer {optimizer}")
    return current


class Finder(BaseModel):
    path: str
    suggested_lr: float
    low: float | None = None
    high: float | None = None
    verdict: str | None = None    # `advisor lr-find`: ok, never-diverged, too-noisy ...
    optimizer: str | None = None  # the optimizer the range test ran with


def read_finder(path: Path) -> Finder:
    """An LR-finder result: {"suggested_lr": 3e-3, "range": [1e-4, 1e-2]} (range optional), or
    the whole `advisor lr-find --json` document (its verdict and optimizer are read too).
    Read as every input is (advisor/inputs.py: a regular file, bounded, UTF-8 or UTF-16); a
    suggestion outside any plausible learning rate (rules/tables/ranges.yaml), or outside the
    finder's own range, is refused."""
    from advisor.inputs import load_json

    data = load_json(path, "LR-finder result")
    if not isinstance(data, dict) or "suggested_lr" not in data:
        raise InputError(f"{path}: expected a JSON object with 'suggested_lr' (and optionally 'range': [low, high])")
    lr = data["suggested_lr"]
    verdict = data.get("verdict") if isinstance(data.get("verdict"), str) else None
    if lr is None:
        why = f" (verdict {verdict}: {data.get('message', '')})" if verdict else ""
        raise InputError(f"{path}: the LR finder suggests no learning rate{why}; fix the range test or drop --lr-from")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise InputError(f"{path}: 'suggested_lr' must be a positive number, got {lr!r:.60}")
    lo_ok, hi_ok = tables()["ranges"]["parameters"]["learning_rate"]["plausible"]
    if not lo_ok <= lr <= hi_ok:
        raise InputError(f"{path}: 'suggested_lr' {lr:g} is no learning rate an optimizer trains with "
                         f"(plausible: {lo_ok:g} to {hi_ok:g}); check the range test, or drop --lr-from")
    low = high = None
    if data.get("range") is not None:
        rng = data["range"]
        if (not isinstance(rng, list) or len(rng) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in rng)
                or rng[0] >= rng[1]):
            raise InputError(f"{path}: 'range' must be [low, high] with 0 < low < high, got {rng!r:.80}")
        low, high = float(rng[0]), float(rng[1])
        if not low * 0.99 <= lr <= high * 1.01:  # a little slack for rounding
            raise InputError(f"{path}: 'suggested_lr' {lr:g} lies outside the finder's own 'range' "
                             f"[{low:g}, {high:g}]; the result contradicts itself, rerun the range test")
    opt = data.get("optimizer")
    opt = opt.get("name") if isinstance(opt, dict) else opt
    opt = opt.lower() if isinstance(opt, str) and opt.lower() in OPTIMIZERS else None
    return Finder(path=str(path), suggested_lr=float(lr), low=low, high=high, verdict=verdict, optimizer=opt)


class DiagnosisSummary(BaseModel):
    run: str
    labels: list[str]
    notes: list[str]       # names of the diagnose notes that fired (noisy-validation ...)
    codes: list[str]
    verdict: str
    lr: float | None = None  # the peak learning rate logged in the run


def summarize_diagnosis(report: Any) -> DiagnosisSummary:
    """The part of `advisor.advice.diagnosis.diagnose` that a plan uses."""
    run = report.runs[0]
    return DiagnosisSummary(
        run=run.run, labels=[f.label for f in run.diagnoses if f.label],
        notes=[f.name for f in run.notes], codes=[f.code for f in run.diagnoses + run.notes],
        verdict=run.verdict, lr=run.facts.get("lr_max"))


# --------------------------------------------------------------------------- the plan model

class PlanInput(BaseModel):
    budget_hours: float
    trial_hours: float
    epochs: int | None = None
    hardware: Hardware
    workers: int | None = None
    params: list[str] | None = None
    optimizer: str | None = None
    model_family: str | None = None
    finetune: bool = False
    dataset_size: int | None = None
    current: dict[str, Any] = {}
    diagnosis: DiagnosisSummary | None = None
    finder: Finder | None = None
    metric: str = "val_metric"
    direction: Literal["maximize", "minimize"] = "maximize"
    name: str = "advisor-plan"
    assumed: dict[str, Any] = {}       # what the plan assumed for want of a figure (trial_hours, optimizer)
    trial_time_from: str | None = None  # where the trial time came from (--trial-time, a log's timings)


class PlanParam(BaseModel):
    name: str
    tier: int
    share: float          # share of the tuning effort the importance hierarchy gives it
    distribution: Literal["loguniform", "uniform", "int", "intlog", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None   # categorical choices, or the grid points of a grid search
    zero: bool = False                 # exactly 0 is a separate choice besides the log range
    by: str | None = None              # a range per value of this parameter ...
    ranges: dict[str, list[float]] | None = None
    grid: dict[str, list[float]] | None = None  # ... and its grid points per value
    unit: str | None = None
    because: list[str]                 # rule codes (or "--params", "tier N") that put it in
    note: str | None = None


class Phase(BaseModel):
    name: Literal["manual", "grid", "explore", "refine", "final"]
    configs: int
    seeds: int
    sampler: str
    description: str
    gpu_hours: float


class SamplerPlan(BaseModel):
    type: Literal["manual", "grid", "QMCSampler", "RandomSampler", "TPESampler"]
    args: dict[str, Any] = {}


class PrunerPlan(BaseModel):
    type: Literal["none", "median", "hyperband", "patient", "successive_halving"]
    cost_share: float = 1.0            # what a configuration costs, as a share of a full trial
    n_startup_trials: int | None = None
    n_warmup_steps: int | None = None
    interval_steps: int | None = None
    min_resource: int | None = None
    max_resource: int | None = None
    reduction_factor: int | None = None
    patience: int | None = None
    epochs_assumed: bool = False


class StopRule(BaseModel):
    name: Literal["min_gain_per_trial", "stale_trials", "budget"]
    value: float
    text: str


class Reason(BaseModel):
    code: str
    name: str
    kind: str
    severity: str
    message: str
    advice: str
    tune: list[str]
    source: str


class Coupling(BaseModel):
    params: list[str]
    code: str
    scaling: str | None = None  # linear | sqrt | by_optimizer, for learning rate with batch size
    note: str


class Deferred(BaseModel):
    param: str
    asked_by: list[str]
    why: str


class BudgetSummary(BaseModel):
    budget_hours: float
    workers: int
    compute_hours: float       # GPU-hours
    trial_hours: float
    epochs: int | None
    band: str
    band_label: str
    affordable_configs: float  # full trials after the final seeds, without pruning
    final_gpu_hours: float


class Plan(BaseModel):
    schema_version: str = SCHEMA
    tune: bool
    strategy: Literal["manual", "grid", "random", "bayesian"]
    n_configs: int
    params: list[PlanParam]
    phases: list[Phase]
    pruner: PrunerPlan
    seeds_final: int
    top_k: int
    stop_rules: list[StopRule]
    expected_hours: float      # wall-clock, with the workers in parallel
    gpu_hours: float
    reasons: list[Reason]
    baseline: dict[str, Any] | None
    fixed: dict[str, Any]
    coupled: list[Coupling]
    sampler: SamplerPlan
    storage: str | None
    quasi_random: bool
    lr_shift: str | None
    grid: list[dict[str, Any]] | None  # every configuration of a grid or manual sweep, in order
    deferred: list[Deferred]
    budget: BudgetSummary
    hardware: dict[str, Any]
    from_run: DiagnosisSummary | None
    metric: str
    direction: str
    name: str
    notes: list[str]
    assumed: dict[str, Any] = {}       # figures the plan assumed: {trial_hours, epochs, optimizer ...}
    trial_time_from: str | None = None

    def param(self, name: str) -> PlanParam | None:
        return next((p for p in self.params if p.name == name), None)


# --------------------------------------------------------------------------- helpers

def sig(x: float, digits: int = 3) -> float:
    """Round to significant digits, so what the plan prints is what it runs (KNOWLEDGE 3)."""
    return float(f"{x:.{digits}g}") if x else 0.0


def _importance_order(name: str) -> tuple:
    imp = tables()["importance"]
    return (imp[name]["tier"], -imp[name]["share"], list(imp).index(name))


def _applies(name: str, optimizer: str | None, optimizer_searched: bool) -> bool:
    spec = tables()["ranges"]["parameters"][name]
    if "optimizers" in spec:
        return optimizer in spec["optimizers"] or optimizer_searched
    return True


def _choose(inp: PlanInput, band: dict[str, Any], asked_by: list[Finding],
            limit: tuple[set[str], list[str]] | None = None) \
        -> tuple[list[str], dict[str, list[str]], list[Deferred], bool]:
    """Parameters: the user's, or the learning rate, then what rules ask for, then by tier; never
    one that a context rule of diagnose leaves alone (`limit`: the allowed names, the rule codes)."""
    because: dict[str, list[str]] = {}
    allowed, limit_codes = limit if limit is not None else (None, [])
    family_only = context_table().get("family_only", {})

    def family_wants(p: str) -> bool:
        return p not in family_only or inp.model_family in family_only[p]

    if inp.params is not None:
        names = list(inp.params)
        for name in names:
            because[name] = ["--params"]
        added = "learning_rate" not in names and bool({"batch_size", "warmup", "optimizer"} & set(names))
        if added:
            names.insert(0, "learning_rate")
            because["learning_rate"] = ["P121"]
        return sorted(names, key=_importance_order), because, [], added
    ranges = tables()["ranges"]["parameters"]
    cap = int(band["params"])
    opt_searched = inp.optimizer is None and cap >= 4 and (allowed is None or "optimizer" in allowed)
    names = ["learning_rate"]
    because["learning_rate"] = ["tier 1: always first"]
    asked: dict[str, list[str]] = {}
    for finding in asked_by:
        for p in finding.tune:
            asked.setdefault(p, [])
            if finding.code not in asked[p]:
                asked[p].append(finding.code)
    deferred: list[Deferred] = []
    for p in sorted(asked, key=_importance_order):
        if p == "learning_rate":
            because[p] += asked[p]
        elif not _applies(p, inp.optimizer, opt_searched):
            continue
        elif allowed is not None and p not in allowed:
            deferred.append(Deferred(param=p, asked_by=asked[p],
                                     why=f"{' and '.join(limit_codes)}: leave it alone in this context"))
        elif set(asked[p]) <= set(limit_codes) and not family_wants(p):
            continue  # a limit allows it, no rule asks for it, the family does not want it
        elif len(names) < cap:
            names.append(p)
            because[p] = asked[p]
        else:
            deferred.append(Deferred(param=p, asked_by=asked[p],
                                     why=f"the {band['name']} budget affords {cap} parameter(s)"))
    for p in sorted(tables()["importance"], key=_importance_order):
        if len(names) >= cap:
            break
        if p in names or ranges[p].get("auto", True) is False:
            continue
        if p == "optimizer" and inp.optimizer is not None:
            continue  # the user chose the optimizer
        if not _applies(p, inp.optimizer, opt_searched):
            continue
        if (allowed is not None and p not in allowed) or not family_wants(p):
            continue
        names.append(p)
        because[p] = [f"tier {tables()['importance'][p]['tier']}"]
    return sorted(names, key=_importance_order), because, deferred, False


def _lr_range(optimizer: str | None, inp: PlanInput, shift: str | None, current_lr: float | None,
              is_current: bool) -> tuple[float, float]:
    spec = tables()["ranges"]["parameters"]["learning_rate"]
    low, high = spec["by_optimizer"][optimizer or "unknown"]
    factors = [spec["scale"][k] for k in (inp.model_family, "finetune" if inp.finetune else None)
               if k in spec["scale"]]
    factor = min(factors) if factors else 1.0
    low, high = low * factor, high * factor
    if shift == "finder" and is_current and inp.finder is not None:
        centre, d = inp.finder.suggested_lr, spec["finder"]["decades_each_side"]
        low, high = centre / 10 ** d, centre * 10 ** d
        if inp.finder.low is not None and spec["finder"].get("clip_to_finder", True):
            low, high = max(low, inp.finder.low), min(high, inp.finder.high)
        min_d = spec["finder"]["min_decades"]
        if high <= low or math.log10(high / low) < min_d:
            low, high = centre / 10 ** (min_d / 2), centre * 10 ** (min_d / 2)
    elif shift in ("lower", "higher"):
        rule = spec["shift"][shift]
        if current_lr and is_current:
            # around the run's learning rate, and never less far moved than the defaults themselves
            a, b = current_lr * rule["around_current"][0], current_lr * rule["around_current"][1]
            low, high = (min(a, low), min(b, high)) if shift == "lower" else (max(a, low), max(b, high))
        else:
            low, high = low * rule["factor"], high * rule["factor"]
    return sig(low), sig(high)


def _powers_of_two(low: float, high: float) -> list[int]:
    return [2 ** k for k in range(0, 16) if low <= 2 ** k <= high]


def _spec(name: str, inp: PlanInput, facts: dict[str, Any], searched: list[str],
          because: list[str], current_lr: float | None) -> PlanParam:
    t = tables()
    r = t["ranges"]["parameters"][name]
    imp = t["importance"][name]
    p = PlanParam(name=name, tier=imp["tier"], share=imp["share"], distribution=r["distribution"],
                  because=because, unit=r.get("unit"))
    cur = inp.current.get(name)
    opt = inp.optimizer
    if name == "learning_rate":
        shift = facts.get("lr_shift")
        if "optimizer" in searched:
            choices = _optimizer_choices(inp)
            p.by = "optimizer"
            p.ranges = {o: list(_lr_range(o, inp, shift, current_lr, o == opt)) for o in choices}
            p.low = min(v[0] for v in p.ranges.values())
            p.high = max(v[1] for v in p.ranges.values())
            p.note = "a range per optimizer"
        else:
            p.low, p.high = _lr_range(opt, inp, shift, current_lr, True)
            if opt is None:
                p.note = "no --optimizer given: a range wide enough for SGD and Adam"
    elif name == "weight_decay":
        by_opt = r["by_optimizer"]
        keys = _optimizer_choices(inp) if "optimizer" in searched else [opt]
        lows = [by_opt.get(k, by_opt["default"])[0] for k in keys]
        highs = [by_opt.get(k, by_opt["default"])[1] for k in keys]
        p.low, p.high, p.zero = min(lows), max(highs), bool(r.get("zero"))
        p.note = "log scale from a positive floor, with 0 (no decay) as a separate choice"
        if facts.get("diag_overfitting") and r.get("overfitting_high", 0) > p.high:
            p.high = float(r["overfitting_high"])
            p.note += f"; up to {p.high:g} because the run overfits"
    elif name == "batch_size":
        choices = list(r["choices"])
        if isinstance(cur, (int, float)) and cur >= 1:
            lo, hi = r["around_current"]
            choices = _powers_of_two(cur * lo, cur * hi)
        mem = inp.hardware.gpu_memory_gb
        if mem:
            caps = sorted((float(k), v) for k, v in r["max_by_gpu_memory_gb"].items())
            ceiling = next((v for k, v in caps if mem <= k), caps[-1][1])
            kept = [c for c in choices if c <= ceiling]
            choices = kept if len(kept) >= 2 else choices[:2]
            p.note = f"powers of two up to {ceiling} for {mem:g} GB per GPU (a rough ceiling; out-of-memory trials are pruned)"
        if isinstance(cur, (int, float)) and cur >= 1 and int(cur) not in choices:
            choices = sorted(set(choices) | {int(cur)})
        p.choices = choices
    elif name in CATEGORICAL:
        choices = _optimizer_choices(inp) if name == "optimizer" else list(r["choices"])
        if isinstance(cur, str) and cur not in choices:
            choices.append(cur)
        p.choices = choices
        if name == "lr_schedule":
            p.note = "; ".join(f"{k}: {v}" for k, v in r["meaning"].items() if k in choices)
    elif name == "warmup":
        rng = r.get("by_family", {}).get(inp.model_family, r["range"])
        p.low, p.high = rng
        p.note = "linear warmup from 0 to the peak learning rate over this share of the steps"
    elif name in ("width", "depth"):
        lo, hi = r["range"]
        if isinstance(cur, (int, float)) and cur >= 1:
            f_lo, f_hi = r["around_current"]
            lo, hi = max(1, round(cur * f_lo)), max(2, round(cur * f_hi))
        p.low, p.high = float(lo), float(hi)
        p.note = "architecture: scale the range to your model"
    else:
        p.low, p.high = r["range"]
        if name == "momentum" and opt not in r.get("optimizers", []):
            p.note = "used by SGD and RMSprop only"
    p.log = p.distribution in ("loguniform", "intlog")
    return p


def _optimizer_choices(inp: PlanInput) -> list[str]:
    choices = list(tables()["ranges"]["parameters"]["optimizer"]["choices"])
    for o in (inp.optimizer, inp.current.get("optimizer")):
        if o and o not in choices:
            choices.append(o)
    return choices


def _grid_points(p: PlanParam, k: int, low: float, high: float) -> list[float]:
    if p.distribution == "categorical":
        return list(p.choices or [])
    if p.distribution in ("int", "intlog"):
        pts = (_geom(low, high, k) if p.distribution == "intlog" else _lin(low, high, k))
        return sorted({int(round(v)) for v in pts})
    n = k - 1 if p.zero and k > 2 else k
    pts = [sig(v) for v in (_geom(low, high, n) if p.log else _lin(low, high, n))]
    return ([0.0] if p.zero and k > 2 else []) + pts


def _geom(low: float, high: float, n: int) -> list[float]:
    if n <= 1:
        return [math.sqrt(low * high)]
    return [low * (high / low) ** (i / (n - 1)) for i in range(n)]


def _lin(low: float, high: float, n: int) -> list[float]:
    if n <= 1:
        return [(low + high) / 2]
    return [low + (high - low) * i / (n - 1) for i in range(n)]


def _grid(params: list[PlanParam], total: int) -> list[dict[str, Any]]:
    """Every grid configuration; numeric parameters get as many points as the budget allows."""
    g = tables()["budget"]["grid"]
    numeric = [p for p in params if p.distribution != "categorical"]
    cats = math.prod(len(p.choices or []) for p in params if p.distribution == "categorical") or 1
    k = g["values_max"]
    if numeric:
        k = int(math.floor((max(total, 1) / cats) ** (1 / len(numeric)) + 1e-9))
        k = max(g["values_min"], min(g["values_max"], k))
    for p in numeric:
        if p.by and p.ranges:
            p.grid = {key: _grid_points(p, k, lo, hi) for key, (lo, hi) in p.ranges.items()}
        else:
            p.choices = _grid_points(p, k, p.low, p.high)
    ordered = sorted(params, key=lambda p: p.by is not None)  # a parameter after the one it depends on
    configs: list[dict[str, Any]] = [{}]
    for p in ordered:
        configs = [{**c, p.name: v} for c in configs
                   for v in ((p.grid or {}).get(c.get(p.by), []) if p.by else (p.choices or []))]
    return configs


def _manual(p: PlanParam, n: int, centre: float | None) -> list[float]:
    factor = tables()["budget"]["manual"]["factor"]
    centre = centre or math.sqrt(p.low * p.high)
    return sorted(sig(centre * factor ** (j - (n - 1) // 2)) for j in range(n))


def _finding_reason(f: Finding) -> Reason:
    return Reason(code=f.code, name=f.name, kind=f.kind, severity=f.severity, message=f.message,
                  advice=f.advice, tune=f.tune, source=f.source)


# --------------------------------------------------------------------------- building the plan

@lru_cache(maxsize=None)
def context_table() -> dict[str, Any]:
    """rules/tables/context.yaml: which diagnose context rules bound a search, and family defaults."""
    from advisor.engine.loader import read_yaml, rules_dir

    return read_yaml(rules_dir() / "tables" / "context.yaml") or {}


def context_findings(inp: PlanInput) -> list[Finding]:
    """`advisor diagnose`'s context rules (rules/diagnose/context.yaml) on what the user said: the
    same rules, the same facts, so that plan and diagnose cannot disagree on the context."""
    from advisor.facts.context import CURRENT, context_facts

    facts = context_facts(optimizer=inp.optimizer, model_family=inp.model_family, finetune=inp.finetune,
                          dataset_size=inp.dataset_size, budget_hours=inp.budget_hours,
                          current={k: repr(float(v)) for k, v in inp.current.items()
                                   if k in CURRENT and isinstance(v, (int, float)) and not isinstance(v, bool)})
    kb = load_knowledge("diagnose")
    context_rules = {r.code for r in kb.rules if r.kind == "context" and r.file.endswith("context.yaml")}
    findings, _ = evaluate(kb, facts)
    return [f for f in findings if f.code in context_rules]


def context_limit(findings: list[Finding]) -> tuple[set[str], list[str]] | None:
    """What a search may tune under the context rules that bound it (rules/tables/context.yaml
    `limits`): the intersection of their `tune` lists, and their codes; None when none fires."""
    codes = list(context_table().get("limits", []))
    fired = [f for f in findings if f.code in codes]
    if not fired:
        return None
    allowed = set(fired[0].tune)
    for f in fired[1:]:
        allowed &= set(f.tune)
    return allowed or {"learning_rate"}, [f.code for f in fired]


def assumed_trial(epochs: int | None, had_log: bool) -> tuple[float, dict[str, Any]]:
    """No trial time given and none in a log: the assumed one (rules/tables/budget.yaml `assumed`)."""
    hours = float(tables()["budget"]["assumed"]["trial_hours"])
    why = "no --trial-time or --epoch-time" + (", and the --from log holds no timings" if had_log else "")
    return hours, {"trial_hours": hours, "why": why}


def _assumption_hint(inp: PlanInput, plan: "Plan") -> str:
    """One line: how the plan changes when the real trial time differs from the assumed one."""
    factors = tables()["budget"]["assumed"]["hint_factors"]
    alt = []
    for f in factors:
        other = build_plan(inp.model_copy(update={"trial_hours": inp.trial_hours * f, "assumed": {}}))
        alt.append(f"{_dur(inp.trial_hours * f)} per trial: {other.n_configs} configurations"
                   + (f" ({other.strategy})" if other.strategy != plan.strategy else ""))
    return (f"trial time assumed: {_dur(inp.trial_hours)} ({inp.assumed.get('why')}); the plan scales with it "
            f"({'; '.join(alt)}); give --trial-time 30m, or --epoch-time 90s --epochs 40, or --from a log "
            "with timings")


def _dur(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.3g} s"
    return f"{hours * 60:.3g} min" if hours < 1 else f"{hours:.3g} h"


def _lr_below_finder(inp: PlanInput, current_lr: float | None) -> bool:
    """The current LR below the range test's range, or below its suggestion by more than the
    factor rules/tables/ranges.yaml gives (learning_rate.finder.below_suggestion)."""
    f = inp.finder
    if not (f and current_lr):
        return False
    factor = tables()["ranges"]["parameters"]["learning_rate"]["finder"]["below_suggestion"]
    return bool((f.low and current_lr < f.low) or (f.suggested_lr and current_lr * factor < f.suggested_lr))


def _base_facts(inp: PlanInput, workers: int, current_lr: float | None) -> dict[str, Any]:
    diag = inp.diagnosis
    labels = set(diag.labels) if diag else set()
    notes = set(diag.notes) if diag else set()
    facts: dict[str, Any] = {
        "budget_hours": inp.budget_hours, "compute_hours": inp.budget_hours * workers,
        "trial_hours": inp.trial_hours, "epochs": inp.epochs, "epochs_known": inp.epochs is not None,
        "gpus": inp.hardware.gpus, "gpu_memory_gb": inp.hardware.gpu_memory_gb, "workers": workers,
        "params_given": inp.params is not None, "optimizer": inp.optimizer,
        "optimizer_given": inp.optimizer is not None, "model_family": inp.model_family,
        "finetune": bool(inp.finetune), "dataset_size": inp.dataset_size,
        "current_learning_rate": current_lr, "lr_from_finder": inp.finder is not None,
        "finder_lr": inp.finder.suggested_lr if inp.finder else None,
        "finder_low": inp.finder.low if inp.finder else None,
        "lr_below_finder": _lr_below_finder(inp, current_lr),
        "has_diagnosis": diag is not None,
    }
    facts.update({fact: label in labels for label, fact in DIAG_FACTS.items()})
    facts.update({fact: name in notes for name, fact in DIAG_NOTES.items()})
    return facts


def build_plan(inp: PlanInput) -> Plan:
    kb = load_knowledge("plan")
    t = tables()
    bt = t["budget"]
    workers = max(1, inp.workers if inp.workers is not None else inp.hardware.gpus)
    compute = inp.budget_hours * workers
    notes = list(inp.hardware.notes)
    if inp.hardware.gpus == 0 and inp.workers is None:
        notes.append(f"no CUDA GPU (training device: {inp.hardware.device}): the plan assumes one worker; "
                     "give --gpus or --workers if trials can run in parallel")
    current_lr = inp.current.get("learning_rate")
    if current_lr is None and inp.diagnosis is not None and inp.diagnosis.lr:
        current_lr = inp.diagnosis.lr
        notes.append(f"current learning rate {current_lr:.3g}: the peak logged in {inp.diagnosis.run}")

    if inp.finder is not None:
        f = inp.finder
        if f.verdict and f.verdict != "ok":
            notes.append(f"the LR finder's verdict is '{f.verdict}': its suggestion {f.suggested_lr:.3g} is a "
                         "rough centre for the range, not a measurement to trust")
        if f.optimizer and inp.optimizer and f.optimizer != inp.optimizer:
            notes.append(f"the LR finder ran with {f.optimizer}, the plan is for {inp.optimizer}: its range "
                         "may not carry over")

    # The context, decided once by diagnose's context rules (rules/tables/context.yaml).
    family_opt = context_table().get("optimizer_by_family", {}).get(inp.model_family)
    if inp.optimizer is None and family_opt and not inp.current.get("optimizer") and inp.params is None:
        inp = inp.model_copy(update={"optimizer": family_opt, "assumed": {**inp.assumed, "optimizer": family_opt}})
        notes.append(f"optimizer assumed: {family_opt}, what a {inp.model_family} is trained with (no --optimizer); "
                     "its learning-rate range is used; give --optimizer if you train with another")
    ctx_findings = context_findings(inp)
    limit = context_limit(ctx_findings)
    if limit is not None and inp.params is not None:
        outside = [p for p in inp.params if p not in limit[0]]
        if outside:
            notes.append(f"{' and '.join(limit[1])} say{'s' if len(limit[1]) == 1 else ''} to leave "
                         f"{', '.join(outside)} alone in this context; searched anyway, as --params asks")

    # Pass 1: the budget band (and what the context and the diagnosis ask to tune).
    facts = _base_facts(inp, workers, current_lr)
    findings1, concluded1 = evaluate(kb, facts)
    band_name = concluded1["budget_band"]
    band = {**bt["bands"][band_name], "name": band_name}

    bounding = [f for f in ctx_findings if limit and f.code in limit[1]]
    names, because, deferred, lr_added = _choose(inp, band, [f for f in findings1 + bounding if f.tune], limit)

    # The final validation: top_k finalists x seeds, at most a share of the budget.
    top_k, seeds = int(band["top_k"]), int(band["seeds_final"])
    while top_k > 1 and top_k * seeds * inp.trial_hours > bt["final_share_max"] * compute:
        top_k -= 1
    if top_k and top_k * seeds * inp.trial_hours > bt["final_share_max"] * compute:
        notes.append("the budget leaves no room for final seeds: validate the best configuration "
                     "with more seeds when you can")
        top_k = 0
    if top_k == 0:
        seeds = 1
    final_cost = top_k * seeds * inp.trial_hours
    affordable = (compute - final_cost) / inp.trial_hours

    # Pass 2: every decision, with the parameters and what the budget affords.
    facts.update({
        "n_params": len(names), "band_params": int(band["params"]), "band_configs": int(band["configs"]),
        "affordable_configs": affordable,
        "optimizer_searched": "optimizer" in names, "batch_size_searched": "batch_size" in names,
        "warmup_searched": "warmup" in names, "weight_decay_searched": "weight_decay" in names,
        "lr_added_for_coupling": lr_added,
    })
    baseline_probe = {k: v for k, v in inp.current.items() if k in names}
    if current_lr is not None and "learning_rate" in names:
        baseline_probe["learning_rate"] = current_lr
    facts["has_baseline"] = bool(baseline_probe)
    findings, concluded = evaluate(kb, facts)
    tune = bool(concluded["tune"])
    strategy = concluded["strategy"] or "manual"
    pruner_type = concluded.get("pruner") or "none"
    limiting = set(limit[1]) if limit else set()
    reasons = [_finding_reason(f) for f in sorted(findings + [f for f in ctx_findings if f.code in limiting],
                                                   key=lambda f: f.code)]

    budget = BudgetSummary(budget_hours=inp.budget_hours, workers=workers, compute_hours=compute,
                           trial_hours=inp.trial_hours, epochs=inp.epochs, band=band_name,
                           band_label=band["label"], affordable_configs=round(affordable, 2),
                           final_gpu_hours=round(final_cost, 3))
    common = dict(assumed=dict(inp.assumed), trial_time_from=inp.trial_time_from,
                  reasons=reasons, budget=budget, hardware=inp.hardware.model_dump(),
                  from_run=inp.diagnosis, metric=inp.metric, direction=inp.direction, name=inp.name,
                  lr_shift=concluded.get("lr_shift"), quasi_random=bool(concluded.get("quasi_random")))
    if not tune:
        if inp.assumed.get("trial_hours"):
            notes.insert(0, f"trial time assumed: {_dur(inp.trial_hours)} ({inp.assumed.get('why')}); "
                            "give --trial-time or --epoch-time with --epochs")
        return Plan(tune=False, strategy="manual", n_configs=0, params=[], phases=[],
                    pruner=PrunerPlan(type="none"), seeds_final=0, top_k=0,
                    stop_rules=[], expected_hours=0.0, gpu_hours=0.0, baseline=None,
                    fixed={}, coupled=[], sampler=SamplerPlan(type="manual"), storage=None,
                    grid=None, deferred=[], notes=notes, **common)

    if strategy == "manual" and len(names) > 1:
        for extra in names[1:]:
            deferred.append(Deferred(param=extra, asked_by=because.get(extra, []),
                                     why="tuning by hand: the learning rate only"))
        names = names[:1] if names[0] == "learning_rate" else ["learning_rate"]
        because.setdefault("learning_rate", ["tier 1: always first"])
    params = [_spec(n, inp, concluded, names, because.get(n, []), current_lr) for n in names]

    # How many configurations, and the grid or manual values themselves.
    late = bool(concluded.get("late_first_rung"))
    cost_share = float(bt["pruner"]["late_first_rung_cost_share"] if late else bt["pruning_cost_share"][pruner_type])
    grid: list[dict[str, Any]] | None = None
    if strategy == "manual":
        lr = params[0]
        n = max(1, min(int(bt["manual"]["values"]), int(band["configs"]), int(math.floor(affordable))))
        lr.choices = _manual(lr, n, current_lr or (inp.finder.suggested_lr if inp.finder else None))
        grid = [{"learning_rate": v} for v in lr.choices]
        n_configs = len(grid)
    elif strategy == "grid":
        grid = _grid(params, min(int(band["configs"]), int(math.floor(affordable))))
        n_configs = len(grid)
    else:
        n_configs = max(1, min(int(band["configs"]), int(math.floor(affordable / cost_share))))

    pruner = _pruner(pruner_type, inp.epochs, cost_share, n_configs, late=late)
    sampler = _sampler(strategy, n_configs, workers, bool(concluded.get("quasi_random")))
    phases = _phases(strategy, n_configs, top_k, seeds, inp.trial_hours, cost_share, sampler, grid, params)
    gpu_hours = sum(ph.gpu_hours for ph in phases)
    expected = max(gpu_hours / workers, inp.trial_hours) if gpu_hours else 0.0

    baseline = {k: v for k, v in inp.current.items() if k in names}
    if current_lr is not None and "learning_rate" in names:
        baseline["learning_rate"] = current_lr
    if baseline and "optimizer" in names and "optimizer" not in baseline:
        if inp.optimizer:
            baseline["optimizer"] = inp.optimizer
        elif "learning_rate" in baseline:
            notes.append("the baseline learning rate cannot be placed in a per-optimizer range without "
                         "--optimizer: the emitted searches leave it out of trial 0")
    if "warmup" in baseline and baseline["warmup"] > 1:
        notes.append(f"--current warmup={baseline['warmup']:g} looks like steps; the plan searches warmup "
                     "as a share of the training steps, so the baseline leaves it out")
        del baseline["warmup"]
    fixed = {k: v for k, v in inp.current.items() if k not in names}
    if inp.optimizer and "optimizer" not in names:
        fixed["optimizer"] = inp.optimizer
    if inp.epochs is not None:
        fixed.setdefault("epochs", inp.epochs)

    coupled = [Coupling(params=f.tune, code=f.code, note=f.message,
                        scaling=concluded.get("lr_batch_scaling") if "batch_size" in f.tune else None)
               for f in findings if f.kind == "note" and len(f.tune) >= 2]
    plan = Plan(tune=True, strategy=strategy, n_configs=n_configs, params=params, phases=phases,
                pruner=pruner, seeds_final=seeds if top_k else 1, top_k=top_k,
                stop_rules=_stop_rules(strategy, inp.budget_hours), expected_hours=round(expected, 3),
                gpu_hours=round(gpu_hours, 3), baseline=baseline or None, fixed=fixed, coupled=coupled,
                sampler=sampler, storage=concluded.get("storage"), grid=grid, deferred=deferred,
                notes=notes, **common)
    if inp.assumed.get("trial_hours"):
        plan.notes.insert(0, _assumption_hint(inp, plan))
    return plan


def _pruner(kind: str, epochs: int | None, cost_share: float, n_configs: int = 0, late: bool = False) -> PrunerPlan:
    """`late`: the first rung of successive halving or Hyperband later in training (rule P205)."""
    p = tables()["budget"]["pruner"]
    e = epochs or int(p["assumed_epochs"])
    plan = PrunerPlan(type=kind, cost_share=cost_share, epochs_assumed=epochs is None and kind != "none")
    if kind in ("median", "patient"):
        plan.n_startup_trials = int(p["n_startup_trials"])
        plan.n_warmup_steps = max(1, round(p["warmup_share"] * e))
        plan.interval_steps = 1
    if kind == "patient":
        plan.patience = max(int(p["min_patience"]), round(p["patience_share"] * e))
    if kind == "hyperband":
        plan.min_resource = max(1, round(p["late_first_rung_share" if late else "min_resource_share"] * e))
        plan.max_resource = e
        plan.reduction_factor = int(p["reduction_factor"])
    if kind == "successive_halving":
        sha = p["successive_halving"]
        plan.min_resource = max(1, round((p["late_first_rung_share"] if late else sha["min_resource_share"]) * e))
        plan.reduction_factor = int(sha["reduction_factor"])
    return plan


def _sampler(strategy: str, n: int, workers: int, quasi: bool) -> SamplerPlan:
    s = tables()["budget"]["samplers"]
    seed = int(s["seed"])
    if strategy in ("manual", "grid"):
        return SamplerPlan(type=strategy)
    if strategy == "random":
        if quasi:
            return SamplerPlan(type="QMCSampler", args={"qmc_type": "sobol", "scramble": True, "seed": seed})
        return SamplerPlan(type="RandomSampler", args={"seed": seed})
    startup = max(int(s["tpe_startup_min"]), min(int(s["tpe_startup_max"]), round(s["tpe_startup_share"] * n)))
    return SamplerPlan(type="TPESampler", args={
        "n_startup_trials": min(startup, n), "multivariate": True, "group": True,
        "constant_liar": workers > 1, "seed": seed})


def refine_top(n_explore: int) -> int:
    """How many of the best explore configurations the refine phase narrows the ranges around."""
    ph = tables()["budget"]["phases"]
    share = max(int(ph["refine_top_min"]), math.ceil(n_explore * float(ph["refine_top_share"])))
    return min(int(ph["refine_top"]), share)


def _phases(strategy: str, n: int, top_k: int, seeds: int, trial_hours: float, share: float,
            sampler: SamplerPlan, grid: list[dict[str, Any]] | None, params: list[PlanParam]) -> list[Phase]:
    ph = tables()["budget"]["phases"]
    phases: list[Phase] = []
    if strategy == "manual":
        values = ", ".join(f"{v:g}" for v in (params[0].choices or []))
        phases.append(Phase(name="manual", configs=n, seeds=1, sampler="by hand",
                            description=f"learning rates {values}, one run each, by hand",
                            gpu_hours=sig(n * trial_hours)))
    elif strategy == "grid":
        phases.append(Phase(name="grid", configs=n, seeds=1, sampler="grid",
                            description=f"every grid point once ({n} configurations)",
                            gpu_hours=sig(n * trial_hours)))
    else:
        explore = max(1, round(n * ph["explore"])) if n > 1 else 1
        refine = n - explore
        label = {"QMCSampler": "quasi-random (scrambled Sobol)", "RandomSampler": "random",
                 "TPESampler": f"TPE, multivariate, first {sampler.args.get('n_startup_trials')} random"}[sampler.type]
        phases.append(Phase(name="explore", configs=explore, seeds=1, sampler=label,
                            description="wide: the full ranges, one seed per configuration",
                            gpu_hours=sig(explore * trial_hours * share)))
        if refine:
            phases.append(Phase(name="refine", configs=refine, seeds=1, sampler=label,
                                description=f"narrowed around the best {refine_top(explore)} explore "
                                            f"configurations (log ranges widened {ph['refine_widen']:g}x beyond "
                                            "them; categorical values only among theirs)",
                                gpu_hours=sig(refine * trial_hours * share)))
    if top_k:
        phases.append(Phase(name="final", configs=top_k, seeds=seeds, sampler="the finalists",
                            description=f"top {top_k} x {seeds} seeds, full length, no pruning; "
                                        "report mean ± std",
                            gpu_hours=sig(top_k * seeds * trial_hours)))
    return phases


def _stop_rules(strategy: str, budget_hours: float) -> list[StopRule]:
    s = tables()["budget"]["stop"]
    rules = [StopRule(name="budget", value=budget_hours,
                      text=f"the budget is spent ({budget_hours:g} h of wall time)")]
    if strategy in ("random", "bayesian"):
        rules = [
            StopRule(name="min_gain_per_trial", value=s["min_gain_per_trial"],
                     text=f"the best value improves by less than {s['min_gain_per_trial']:.1%} per trial "
                          f"over the last {s['stale_trials']} trials"),
            StopRule(name="stale_trials", value=s["stale_trials"],
                     text=f"the same configuration stays best for {s['stale_trials']} trials"),
        ] + rules
    return rules


__all__ = ["Plan", "PlanInput", "build_plan", "parse_params", "parse_current", "read_finder",
           "summarize_diagnosis", "canonical_param", "tables", "OPTIMIZERS", "MODEL_FAMILIES"]
