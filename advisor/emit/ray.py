"""A Ray Tune config module for a plan: `param_space` (tune.loguniform ...), the ASHA scheduler
when the plan prunes, the search algorithm, and `run(train_fn)` to start it. It imports Ray."""

from __future__ import annotations

import pprint
from string import Template

from advisor.advice.plan import Plan, PlanParam, tables
from advisor.emit import reason_codes, summary


def _domain(p: PlanParam, conditional: bool) -> str:
    if p.distribution == "categorical":
        return f"tune.choice({list(p.choices or [])!r})"
    if p.by and p.ranges:
        if conditional:
            return f"tune.sample_from(lambda spec: _loguniform(*RANGES[{p.name!r}][spec.config[{p.by!r}]]))"
        lo = min(v[0] for v in p.ranges.values())
        hi = max(v[1] for v in p.ranges.values())
        return f"tune.loguniform({lo!r}, {hi!r})  # every {p.by}'s range: no conditional spaces here"
    if p.distribution == "loguniform":
        low = p.low / 10 if p.zero else p.low
        note = f"  # below {p.low:g} means exactly 0" if p.zero else ""
        return f"tune.loguniform({float(low)!r}, {float(p.high)!r}){note}"
    if p.distribution == "uniform":
        return f"tune.uniform({float(p.low)!r}, {float(p.high)!r})"
    if p.distribution == "intlog":
        return f"tune.lograndint({int(p.low)}, {int(p.high) + 1})  # upper bound exclusive"
    return f"tune.randint({int(p.low)}, {int(p.high) + 1})  # upper bound exclusive"


def render(plan: Plan, filename: str = "ray_search.py") -> str:
    bt = tables()["budget"]
    gridded = plan.strategy in ("grid", "manual")
    bayesian = plan.strategy == "bayesian"
    conditional = not bayesian  # OptunaSearch cannot read tune.sample_from
    if gridded:  # every configuration listed, exactly as planned (conditional grids included)
        grid = pprint.pformat(plan.grid or [], width=90).replace("\n", "\n" + " " * 4)
        space_lines = [f"    GRID_KEY: tune.grid_search({grid}),"]
    else:
        space_lines = []
        for p in plan.params:
            code, _, comment = _domain(p, conditional).partition("  # ")
            space_lines.append(f"    {p.name!r}: {code},{'  # ' + comment if comment else ''}")
    space_lines += [f"    {k!r}: {v!r}," for k, v in plan.fixed.items()]
    ranges = {p.name: p.ranges for p in plan.params if p.by and p.ranges}
    zero = {p.name: p.low for p in plan.params if p.zero and not gridded}
    pr = plan.pruner
    epochs = plan.budget.epochs or int(bt["pruner"]["assumed_epochs"])
    if pr.type == "none":
        scheduler = "None  # every trial runs to the end"
    else:
        grace = pr.min_resource or pr.n_warmup_steps or 1
        scheduler = (f"ASHAScheduler(time_attr=\"training_iteration\", max_t=EPOCHS, grace_period={grace}, "
                     f"reduction_factor={pr.reduction_factor or 3})  # the plan's {pr.type} pruning, as ASHA")
    points = "None"
    if plan.baseline:
        points = pprint.pformat([{"_config": plan.baseline} if gridded else plan.baseline], width=90)
    if bayesian:
        from advisor.emit.optuna import spec_code, strategy_specs

        (kind, args), _ = strategy_specs(plan)  # the sampler `advisor search` builds, argument for argument
        search_alg = (
            "OptunaSearch(\n"
            f"        sampler={spec_code('samplers', kind, args, 8)},\n"
            "        points_to_evaluate=POINTS_TO_EVALUATE,\n"
            "    )")
        imports = ("from ray.tune.search.optuna import OptunaSearch\n\n"
                   "warnings.filterwarnings(\"ignore\", category=optuna.exceptions.ExperimentalWarning)")
    else:
        search_alg = "BasicVariantGenerator(points_to_evaluate=POINTS_TO_EVALUATE, random_state=SEED)"
        imports = "from ray.tune.search.basic_variant import BasicVariantGenerator"
    samples = 1 if gridded else max(1, plan.n_configs)
    notes = []
    if plan.strategy == "random" and plan.quasi_random:
        notes.append("# Ray's random search is plain random, not quasi-random (the Optuna script is).")
    if plan.top_k:
        notes.append(f"# Final phase: re-run the best {plan.top_k} configurations with {plan.seeds_final} "
                     "seeds each and report mean ± std.")
    return _TEMPLATE.substitute(
        summary=summary(plan), reasons=reason_codes(plan), filename=filename,
        imports=imports, optuna_import="import optuna" if bayesian else "", metric=repr(plan.metric), mode=repr("max" if plan.direction == "maximize" else "min"),
        epochs=epochs, num_samples=samples, workers=plan.budget.workers,
        ranges=pprint.pformat(ranges, width=90),
        filename_stem=filename.rsplit("/", 1)[-1].removesuffix(".py").replace("-", "_") or "ray_search",
        zero=pprint.pformat(zero, width=90), points=points,
        param_space="\n".join(space_lines), scheduler=scheduler, search_alg=search_alg,
        notes="\n".join(notes),
    )


_TEMPLATE = Template('''"""Ray Tune search planned by `advisor plan`.

$summary.
Decisions: $reasons (`advisor explain CODE`).

    from ${filename_stem} import run
    run(train_fn)   # train_fn(hp: dict, report) -> float

or use `param_space` and `tune_config` in your own tune.Tuner(...). Needs ray[tune].
"""

import math
import random
import warnings

$optuna_import
from ray import tune
from ray.tune.schedulers import ASHAScheduler
$imports

METRIC = $metric
MODE = $mode
SEED = 0
EPOCHS = $epochs
NUM_SAMPLES = $num_samples
MAX_CONCURRENT = $workers
$notes

# A learning-rate range per optimizer (conditional parameters).
RANGES = $ranges
# A grid or manual sweep lists whole configurations under this key.
GRID_KEY = "_config"
# Log-scaled parameters with 0 as a separate choice: sampled down to low/10, below low means 0.
ZERO_BELOW = $zero
# The baseline (your current configuration) runs first.
POINTS_TO_EVALUATE = $points


def _loguniform(low, high):
    return math.exp(random.uniform(math.log(low), math.log(high)))


param_space = {
$param_space
}

scheduler = $scheduler

search_alg = $search_alg

tune_config = tune.TuneConfig(
    metric=METRIC, mode=MODE, num_samples=NUM_SAMPLES, scheduler=scheduler,
    search_alg=search_alg, max_concurrent_trials=MAX_CONCURRENT,
)


def hp_from_config(config):
    """Ray's sampled config -> the hyperparameters your training reads (0 for the zero choice,
    and "seed", as in the Optuna script)."""
    hp = dict(config)
    hp.update(hp.pop(GRID_KEY, None) or {})
    hp.setdefault("seed", SEED)
    for name, low in ZERO_BELOW.items():
        if name in hp and hp[name] < low:
            hp[name] = 0.0
    return hp


def run(train_fn):
    """train_fn(hp, report) -> float; report(value, epoch) after each epoch feeds the scheduler."""

    def trainable(config):
        hp = hp_from_config(config)

        reported = []

        def report(value, step):
            reported.append(step)
            tune.report({METRIC: value, "epoch": step})

        value = train_fn(hp, report)
        if not reported:
            tune.report({METRIC: value})

    tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config)
    return tuner.fit()
''')
