"""A Ray Tune module for a plan: `param_space`, the ASHA scheduler when the plan prunes, the
search algorithm with the plan's concurrency, one GPU per trial where the plan has GPUs, and
`run(train_fn)` to start it. The emitted module imports Ray; this one does not.

How the plan maps onto Ray (emitters report, section 3):
- random: `BasicVariantGenerator(max_concurrent=...)` (Ray ignores `max_concurrent_trials` for a
  SearchGenerator); grid / manual: one `grid_search` over the planned configurations, the
  baseline first among them; Bayesian: `OptunaSearch` with the sampler `advisor search` builds,
  behind a `ConcurrencyLimiter`.
- a range per optimizer: the parameter is searched as a unit draw `u` in [0, 1] and mapped into
  its optimizer's range in `hp_from_config` -- seeded, and readable by OptunaSearch.
- "0 or a log range": drawn down to low/10, below low means exactly 0 (as in the Optuna script).
"""

from __future__ import annotations

import pprint
from string import Template

from advisor.advice.plan import Plan, PlanParam, tables
from advisor.emit import reason_codes, summary
from advisor.emit.space import middle

RAY_TESTED = "2.60.0"  # the version the real-tool tests run (tests/test_emit_real.py)
UNIT = "__unit"        # suffix of the unit draw of a conditional parameter


def _domain(p: PlanParam) -> str:
    if p.distribution == "categorical":
        return f"tune.choice({list(p.choices or [])!r})"
    if p.distribution == "loguniform":
        low = p.low / 10 if p.zero else p.low
        note = f"  # below {p.low:g} means exactly 0" if p.zero else ""
        return f"tune.loguniform({float(low)!r}, {float(p.high)!r}){note}"
    if p.distribution == "uniform":
        return f"tune.uniform({float(p.low)!r}, {float(p.high)!r})"
    if p.distribution == "intlog":
        return f"tune.lograndint({int(p.low)}, {int(p.high) + 1})  # upper bound exclusive"
    return f"tune.randint({int(p.low)}, {int(p.high) + 1})  # upper bound exclusive"


def _scheduler(plan: Plan) -> str:
    pr = plan.pruner
    if pr.type == "none":
        return "None  # every trial runs to the end"
    from advisor.emit.optuna import _epoch_code

    epochs = plan.budget.epochs or int(tables()["budget"]["pruner"]["assumed_epochs"])
    code = _epoch_code(plan, epochs)
    if pr.min_resource:
        grace = code.get("min_resource", pr.min_resource)
    elif pr.n_warmup_steps:
        grace = code.get("n_warmup_steps", pr.n_warmup_steps)
    else:
        grace = 1
    grace = str(grace).replace("EPOCHS", "epochs")
    return (f"ASHAScheduler(time_attr=\"training_iteration\", max_t=epochs, grace_period={grace}, "
            f"reduction_factor={pr.reduction_factor or 3})")


def notes(plan: Plan) -> list[str]:
    """What Ray does differently from the plan, one line each (the module's header says them)."""
    pr = plan.pruner
    lines = []
    if pr.type in ("median", "patient"):
        lines.append(f"Pruner: the plan's {pr.type} pruner runs as ASHA (grace period = its warm-up, "
                     f"the best 1/{pr.reduction_factor or 3} go on at each rung); n_startup_trials"
                     f"{' and patience are' if pr.type == 'patient' else ' is'} not used.")
    elif pr.type in ("hyperband", "successive_halving"):
        lines.append(f"Pruner: the plan's {pr.type} as ASHA (one asynchronous bracket).")
    if plan.strategy == "random" and plan.quasi_random:
        lines.append("Ray's random search is plain random (seeded), not quasi-random (the Optuna script is).")
    if any(ph.name == "refine" for ph in plan.phases):
        lines.append("Refine phase: not run here; NUM_SAMPLES covers explore and refine over the full ranges.")
    if any(r.name == "stale_trials" for r in plan.stop_rules):
        lines.append("Stop rule: not run here; the search runs all NUM_SAMPLES trials.")
    if plan.top_k:
        lines.append(f"Final phase: re-run the best {plan.top_k} configurations with {plan.seeds_final} "
                     "seeds each and report mean +- std (not run here).")
    if plan.baseline and plan.strategy == "bayesian":
        missing = [p.name for p in plan.params if p.name not in plan.baseline]
        if missing:
            lines.append(f"Baseline: OptunaSearch needs every searched parameter; {', '.join(missing)} "
                         "(not in --current) take the middle of their range.")
    lines.append("Resume: pass storage_path to run() and use tune.Tuner.restore(); advisor's sqlite/journal "
                 "storage is the Optuna script's.")
    return lines


def render(plan: Plan, filename: str = "ray_search.py") -> str:
    bt = tables()["budget"]
    gridded = plan.strategy in ("grid", "manual")
    bayesian = plan.strategy == "bayesian"
    baseline = dict(plan.baseline or {})
    if gridded:  # every configuration listed, exactly as planned (conditional grids included)
        grid = list(plan.grid or [])
        if baseline:  # the baseline is the grid's first configuration (report 3.2)
            grid = [baseline] + [g for g in grid if g != baseline]
        text = pprint.pformat(grid, width=90).replace("\n", "\n" + " " * 4)
        space_lines = [f"    GRID_KEY: tune.grid_search({text}),"]
    else:
        space_lines = []
        for p in plan.params:
            if p.by and p.ranges:
                space_lines.append(f"    {p.name + UNIT!r}: tune.uniform(0.0, 1.0),  # {p.name}: "
                                   f"placed in its {p.by}'s range (RANGES) by hp_from_config")
                continue
            code, _, comment = _domain(p).partition("  # ")
            space_lines.append(f"    {p.name!r}: {code},{'  # ' + comment if comment else ''}")
        if bayesian and baseline:
            for p in plan.params:
                if p.name not in baseline and middle(p) is not None:
                    baseline[p.name] = middle(p)
    space_lines += [f"    {k!r}: {v!r}," for k, v in plan.fixed.items()]
    ranges = {p.name: {"by": p.by, "log": p.log, "ranges": {k: [float(a), float(b)] for k, (a, b) in p.ranges.items()}}
              for p in plan.params if p.by and p.ranges and not gridded}
    zero = {p.name: float(p.low) for p in plan.params if p.zero and not gridded}
    epochs = plan.budget.epochs or int(bt["pruner"]["assumed_epochs"])
    if bayesian:
        from advisor.emit.optuna import spec_code, strategy_specs

        (kind, args), _ = strategy_specs(plan)  # the sampler `advisor search` builds, argument for argument
        search_alg = (
            "ConcurrencyLimiter(\n"
            "        OptunaSearch(\n"
            f"            sampler={spec_code('samplers', kind, args, 12)},\n"
            "            points_to_evaluate=points_to_evaluate(),\n"
            "        ),\n"
            "        max_concurrent=MAX_CONCURRENT,\n"
            "    )")
        imports = ("import optuna\n"
                   "from ray.tune.search import ConcurrencyLimiter\n"
                   "from ray.tune.search.optuna import OptunaSearch\n\n"
                   "warnings.filterwarnings(\"ignore\", category=optuna.exceptions.ExperimentalWarning)")
    else:
        search_alg = ("BasicVariantGenerator(points_to_evaluate=points_to_evaluate(), "
                      "max_concurrent=MAX_CONCURRENT, random_state=SEED)")
        imports = "from ray.tune.search.basic_variant import BasicVariantGenerator"
    samples = 1 if gridded else max(1, plan.n_configs)
    gpus = 1 if plan.hardware.get("cuda") else 0
    return _TEMPLATE.substitute(
        summary=summary(plan), reasons=reason_codes(plan), ray_tested=RAY_TESTED,
        notes="\n".join(f"- {line}" for line in notes(plan)),
        imports=imports, plan_name=repr(plan.name), metric=repr(plan.metric), mode=repr("max" if plan.direction == "maximize" else "min"),
        epochs=epochs, epochs_note=("  # assumed: set your epochs (ASHA stops every trial at EPOCHS reports)"
                                    if not plan.budget.epochs else ""),
        num_samples=samples, workers=plan.budget.workers, gpus=gpus,
        gpus_note=(f"one trial per GPU: the plan counts {len(plan.hardware.get('cuda') or [])} GPU(s)" if gpus
                   else "the plan has no GPU"),
        ranges=pprint.pformat(ranges, width=90, sort_dicts=False), unit=repr(UNIT),
        stem=filename.rsplit("/", 1)[-1].removesuffix(".py").replace("-", "_") or "ray_search",
        zero=pprint.pformat(zero, width=90), baseline=pprint.pformat(baseline or None, width=90, sort_dicts=False),
        bayesian=bayesian, gridded=gridded,
        baseline_note=(" (the grid's first configuration)." if gridded else
                       " (OptunaSearch needs every searched parameter: the ones --current did not name take "
                       "the middle of their range)." if bayesian and plan.baseline else "."),
        param_space="\n".join(space_lines), scheduler=_scheduler(plan), search_alg=search_alg,
    )


_TEMPLATE = Template('''"""Ray Tune search planned by `advisor plan`.

$summary.
Decisions: $reasons (`advisor explain CODE`).

    from ${stem} import run, best_hp
    results = run(train_fn)   # train_fn(hp: dict, report) -> float; report(value, epoch) each epoch
    print(best_hp(results))   # the best trial's hyperparameters, as train_fn got them

Needs ray[tune] with `ray.tune.report` (Ray 2.40 and older lack it; written for and tested with
$ray_tested): checked at import. What differs from the plan:
$notes
"""

import math
import warnings

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
$imports

RAY_TESTED = "$ray_tested"
if not hasattr(tune, "report"):
    raise ImportError(f"this search needs ray[tune] with ray.tune.report (tested with {RAY_TESTED}); "
                      f"found ray {ray.__version__}: pip install 'ray[tune]=={RAY_TESTED}'")

PLAN_NAME = $plan_name  # the experiment's folder under ~/ray_results (run(..., name=...) to change)
METRIC = $metric
MODE = $mode
SEED = 0
EPOCHS = $epochs$epochs_note
NUM_SAMPLES = $num_samples
MAX_CONCURRENT = $workers  # trials at once (the plan's workers)
GPUS_PER_TRIAL = $gpus  # $gpus_note; 0 where Ray sees none
CPUS_PER_TRIAL = 1

# A range per value of another parameter (the learning rate per optimizer): searched as a unit
# draw NAME + UNIT in [0, 1], placed in its range by hp_from_config.
RANGES = $ranges
UNIT = $unit
# A grid or manual sweep lists whole configurations under this key.
GRID_KEY = "_config"
# Log-scaled parameters with 0 as a separate choice: sampled down to low/10, below low means 0.
ZERO_BELOW = $zero
# Your current configuration: the first trial$baseline_note
BASELINE = $baseline


param_space = {
$param_space
}


def hp_from_config(config):
    """Ray's sampled config -> the hyperparameters your training reads: the grid's configuration,
    conditional ranges placed, 0 for the zero choice, and "seed", as in the Optuna script."""
    hp = dict(config)
    hp.update(hp.pop(GRID_KEY, None) or {})
    for name, spec in RANGES.items():
        if name + UNIT in hp:
            u = hp.pop(name + UNIT)
            low, high = spec["ranges"][hp[spec["by"]]]
            if spec["log"]:
                hp[name] = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
            else:
                hp[name] = low + u * (high - low)
    for name, low in ZERO_BELOW.items():
        if name in hp and hp[name] < low:
            hp[name] = 0.0
    hp.setdefault("seed", SEED)
    return hp


def config_from_hp(hp):
    """The inverse of hp_from_config: hyperparameters -> a point of param_space."""
    config = dict(hp)
    for name, spec in RANGES.items():
        if name in config:
            value = config.pop(name)
            if config.get(spec["by"]) in spec["ranges"]:
                low, high = spec["ranges"][config[spec["by"]]]
                config[name + UNIT] = ((math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
                                       if spec["log"] else (value - low) / (high - low))
            elif $bayesian:
                config[name + UNIT] = 0.5
    for name, low in ZERO_BELOW.items():
        if config.get(name) == 0:
            config[name] = low / 10
    return config


def points_to_evaluate():
    if BASELINE is None or $gridded:  # a grid lists the baseline as its first configuration
        return None
    return [config_from_hp(BASELINE)]


def make_scheduler(epochs=None):
    epochs = epochs or EPOCHS
    return $scheduler


def make_search_alg():
    return $search_alg


def make_tune_config(epochs=None):
    return tune.TuneConfig(metric=METRIC, mode=MODE, num_samples=NUM_SAMPLES,
                           scheduler=make_scheduler(epochs), search_alg=make_search_alg())


def resources():
    """One GPU per trial when the plan has GPUs and Ray sees them; CPU trials otherwise."""
    gpus = GPUS_PER_TRIAL
    if gpus:
        if not ray.is_initialized():
            ray.init()
        if ray.cluster_resources().get("GPU", 0) < gpus:
            warnings.warn("the plan runs one trial per GPU, but Ray sees no GPU: the trials run on CPU")
            gpus = 0
    return {"cpu": CPUS_PER_TRIAL, "gpu": gpus}


def run(train_fn, epochs=None, storage_path=None, name=None):
    """train_fn(hp, report) -> float; report(value, epoch) after each epoch feeds the scheduler.
    epochs: your training's epochs when they are not EPOCHS (the scheduler stops every trial there).
    The experiment is kept under storage_path/name (default ~/ray_results/<the plan's name>): run
    it again after Ctrl-C or a crash and it resumes there (Tuner.restore; errored trials re-run),
    as advisor search --resume does."""
    import os

    epochs = epochs or EPOCHS
    name = name or PLAN_NAME
    storage_path = os.path.abspath(os.path.expanduser(storage_path or "~/ray_results"))
    where = os.path.join(storage_path, name)

    def trainable(config):
        hp = hp_from_config(config)
        reported = []

        def report(value, step):
            reported.append(step)
            tune.report({METRIC: value, "epoch": step})

        value = train_fn(hp, report)
        if not reported:
            tune.report({METRIC: value})

    resourced = tune.with_resources(trainable, resources())
    if tune.Tuner.can_restore(where):
        tuner = tune.Tuner.restore(where, trainable=resourced, param_space=param_space, resume_errored=True)
    else:
        tuner = tune.Tuner(resourced, param_space=param_space, tune_config=make_tune_config(epochs),
                           run_config=tune.RunConfig(storage_path=storage_path, name=name))
    return tuner.fit()


def best_hp(results):
    """The best trial's hyperparameters, as train_fn received them."""
    return hp_from_config(results.get_best_result(metric=METRIC, mode=MODE).config)
''')
