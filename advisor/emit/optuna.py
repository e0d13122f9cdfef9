"""A runnable Optuna script for a plan: sampler, pruner and storage as planned, every argument
spelled out (defaults changed between Optuna 4 and 5), the baseline enqueued first, a global
trial budget with MaxTrialsCallback, and an `objective` for the user to fill in.

The script imports Optuna; advisor does not.
"""

from __future__ import annotations

import pprint
from string import Template

from advisor.advice.plan import Plan, refine_top, tables
from advisor.emit import reason_codes, search_space, summary


def _lit(value: object, indent: int = 0) -> str:
    text = pprint.pformat(value, indent=1, width=96, sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent) if indent else text


def spec_code(module: str, kind: str, args: dict, indent: int = 4) -> str:
    """An Optuna constructor call from a (class name, arguments) spec of advisor.act.search.space
    -- the very definitions `advisor search` builds its sampler and pruner from -- every argument
    spelled out; `seed` as the script's SEED (plus the spec's offset)."""
    pad = " " * (indent + 4)
    parts = []
    for key, value in args.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
            sub = "samplers" if value[0].endswith("Sampler") else "pruners"
            parts.append(f"{key}={spec_code(sub, value[0], value[1], indent + 4)}")
        elif key == "seed":
            parts.append("seed=SEED" + (f" + {int(value)}" if value else ""))
        elif key == "search_space":
            parts.append(f"search_space={_lit(value, indent + 4)}")
        else:
            parts.append(f"{key}={value!r}")
    if not parts:
        return f"optuna.{module}.{kind}()"
    return f"optuna.{module}.{kind}(\n{pad}" + f",\n{pad}".join(parts) + f",\n{' ' * indent})"


def strategy_specs(plan: Plan) -> tuple[tuple[str, dict], tuple[str, dict]]:
    """(sampler spec, pruner spec) of the plan, as `advisor search` makes them (seed 0: offsets)."""
    from advisor.act.search.space import pruner_spec, sampler_spec
    from advisor.emit.space import to_space

    space = to_space(plan)
    epochs = plan.budget.epochs or int(tables()["budget"]["pruner"]["assumed_epochs"])
    return (sampler_spec(space, 0, plan.budget.workers, 0, max(1, plan.n_configs)),
            pruner_spec(space, epochs))


def _sampler_code(plan: Plan) -> str:
    (kind, args), _ = strategy_specs(plan)
    return spec_code("samplers", kind, args)


class _Code(str):
    """Python source written into the script as it is (not as a literal)."""

    def __repr__(self) -> str:
        return str(self)


def _epoch_code(plan: Plan, epochs: int) -> dict[str, _Code]:
    """The pruner arguments the plan derived from the epochs (as advisor.advice.plan._pruner
    does), each as an expression of the script's EPOCHS, so that setting EPOCHS moves the rungs
    with it. A value the plan did not derive (given by the user) stays a number."""
    from advisor.advice.plan import _pruner

    pr, t = plan.pruner, tables()["budget"]["pruner"]
    here, there = _pruner(pr.type, epochs, pr.cost_share), _pruner(pr.type, epochs * 7 + 3, pr.cost_share)
    first_rung = t["successive_halving"] if pr.type == "successive_halving" else t
    shares = {"n_warmup_steps": (t["warmup_share"], 1), "patience": (t["patience_share"], t["min_patience"]),
              "min_resource": (first_rung["min_resource_share"], 1)}
    code = {}
    for key in ("n_warmup_steps", "patience", "min_resource", "max_resource"):
        derived = getattr(here, key) != getattr(there, key) and getattr(pr, key) == getattr(here, key)
        if derived:
            share, floor = shares.get(key, (None, None))
            code[key] = _Code("EPOCHS" if key == "max_resource" else f"max({int(floor)}, round({share:g} * EPOCHS))")
    return code


def _with_code(args: dict, code: dict[str, _Code]) -> dict:
    out = {}
    for key, value in args.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
            out[key] = (value[0], _with_code(value[1], code))
        else:
            out[key] = code.get(key, value)
    return out


def _pruner_code(plan: Plan) -> str:
    _, (kind, args) = strategy_specs(plan)
    epochs = plan.budget.epochs or int(tables()["budget"]["pruner"]["assumed_epochs"])
    return spec_code("pruners", kind, _with_code(args, _epoch_code(plan, epochs)))


def whole_baseline(plan: Plan) -> dict:
    """The baseline with every searched parameter set: one --current does not name takes the
    middle of its range (emit/space.py `middle`), not a random draw (emitters report 1.6)."""
    from advisor.emit.space import middle

    baseline = dict(plan.baseline or {})
    if plan.strategy not in ("grid", "manual"):
        for p in plan.params:
            if p.name not in baseline and middle(p) is not None:
                baseline[p.name] = middle(p)
    return baseline


def render(plan: Plan, filename: str = "search.py") -> str:
    bt = tables()["budget"]
    phases = {ph.name: ph for ph in plan.phases}
    if plan.strategy in ("grid", "manual"):
        n_explore, n_refine = len(plan.grid or []), 0
    else:
        n_explore = phases["explore"].configs
        n_refine = phases["refine"].configs if "refine" in phases else 0
    final_hours = (phases["final"].gpu_hours / plan.budget.workers) if "final" in phases else 0.0
    epochs = plan.budget.epochs or int(bt["pruner"]["assumed_epochs"])
    if plan.storage == "journal":
        storage_line = (f'STORAGE = "{plan.name}.journal"  # one journal file for the workers on this machine; '
                        'several machines: "postgresql://user:pass@host/db" (RDBStorage, with a heartbeat)')
    else:
        storage_line = (f'STORAGE = "sqlite:///{plan.name}.db"  # one worker; several on one machine: '
                        f'"{plan.name}.journal"; several machines: PostgreSQL/MySQL')
    stop = bt["stop"]
    text = _TEMPLATE.substitute(
        filename=filename,
        module=filename.rsplit('/', 1)[-1].removesuffix('.py').replace('-', '_') or 'search',
        summary=summary(plan),
        reasons=reason_codes(plan),
        study_name=repr(plan.name),
        storage_line=storage_line,
        direction=repr(plan.direction),
        metric=repr(plan.metric),
        epochs=epochs,
        epochs_note="" if plan.budget.epochs else "  # assumed: set your epochs",
        budget_hours=round(plan.budget.budget_hours, 6),
        final_hours=round(final_hours, 6),
        n_explore=n_explore,
        n_refine=n_refine,
        top_k=plan.top_k,
        seeds_final=plan.seeds_final if plan.top_k else 0,
        refine_top=refine_top(n_explore),
        refine_widen=float(bt["phases"]["refine_widen"]),
        stop_min_gain=stop["min_gain_per_trial"],
        stop_stale=stop["stale_trials"] if plan.strategy in ("random", "bayesian") else 0,
        space=_lit(search_space(plan)),
        grid=_lit(plan.grid) if plan.grid else "None",
        baseline=_lit(whole_baseline(plan)) if plan.baseline else "None",
        fixed=_lit(plan.fixed),
        sampler=_sampler_code(plan),
        pruner=_pruner_code(plan),
        metric_name=plan.metric,
    )
    return text


_TEMPLATE = Template('''#!/usr/bin/env python
"""Hyperparameter search planned by `advisor plan`.

$summary.
Decisions: $reasons (`advisor explain CODE` says why).

    python $filename                  # explore, refine, then re-run the finalists with seeds
    python $filename --phase final    # only the final validation of the best configurations

Fill in `objective` below, or import this file and pass your own:

    from $module import run           # this file, importable as a module
    run(my_objective)                 # my_objective(hp: dict, report) -> float

Several workers: start the same command once per GPU with a shared storage (see STORAGE); the
trial budget (MaxTrialsCallback) is global across workers and resumes.
Needs Optuna 4 or newer. Sampler and pruner arguments are spelled out: their defaults changed
between Optuna 4 and 5.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings

import optuna

if int(optuna.__version__.split(".")[0]) < 4:
    raise ImportError(f"this search needs Optuna 4 or newer (tested with 4.0 and 5.0); found {optuna.__version__}: "
                      "pip install 'optuna>=4'")

STUDY_NAME = $study_name
$storage_line
DIRECTION = $direction
METRIC = $metric
SEED = 0
EPOCHS = $epochs$epochs_note
BUDGET_HOURS = $budget_hours  # wall clock for the whole search
FINAL_HOURS = $final_hours  # of which the final validation needs this much
N_EXPLORE = $n_explore  # configurations, pruned ones included (the baseline is one of them)
N_REFINE = $n_refine
TOP_K = $top_k  # finalists ...
SEEDS_FINAL = $seeds_final  # ... each re-run with this many seeds, full length
REFINE_TOP = $refine_top  # the refine phase narrows the ranges around the best REFINE_TOP ...
REFINE_WIDEN = $refine_widen  # ... widened by this factor on log scales
STOP_MIN_GAIN = $stop_min_gain  # stop when the best improves less than this (relative) per trial ...
STOP_STALE = $stop_stale  # ... over the last STOP_STALE trials (0: run every configuration)

# The search space. float / int: [low, high], log scale where `log`. zero: exactly 0 is a choice
# besides the log range -- the sampler draws down to low/10 and values below `low` mean 0.
# by: a range per value of another parameter (`ranges`).
SPACE = $space

# Grid or manual sweep: every configuration, in order (None: the sampler chooses).
GRID = $grid

# Your current configuration: trial 0, the baseline the search has to beat (a searched parameter
# your --current did not name takes the middle of its range).
BASELINE = $baseline

# Not searched: passed to the objective as they are.
FIXED = $fixed


def objective(hp, report):
    """Train one configuration and return its validation $metric_name.

    hp: the hyperparameters of this trial -- the searched ones, FIXED, and "seed".
    report(value, epoch): call after every epoch with the validation metric so far; it raises
    optuna.TrialPruned when the pruner stops the trial (let that exception propagate).
    """
    raise NotImplementedError(
        "fill in objective(hp, report) in this file: build and train the model with hp for EPOCHS "
        "epochs, call report(val_metric, epoch) after each epoch and return the final val metric "
        "-- or import this file and call run(your_objective)")


objective.placeholder = True


def make_sampler():
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return $sampler


def make_pruner():
    return $pruner


def make_storage(url):
    if url is None or url == ":memory:":
        return optuna.storages.InMemoryStorage()
    if not isinstance(url, str):
        return url  # already a storage object
    if url.endswith(".journal"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    if url.startswith(("postgresql", "mysql")):
        # workers on several machines: a killed worker's RUNNING trial is failed by the others
        # once it misses its heartbeat, and retried once
        from optuna.storages import RetryFailedTrialCallback

        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180,
                                          failed_trial_callback=RetryFailedTrialCallback(max_retry=1))
    return url


def suggest(trial, space):
    """The trial's hyperparameters, sampled from `space` (conditional ranges after their key)."""
    hp = {}
    for name, spec in space.items():
        if not spec.get("by"):
            hp[name] = _suggest_one(trial, name, spec)
    for name, spec in space.items():
        if spec.get("by"):
            key = hp[spec["by"]]
            low, high = spec["ranges"][key]
            hp[name] = _suggest_one(trial, f"{name}_{key}", {**spec, "low": low, "high": high})
    return hp


def _suggest_one(trial, name, spec):
    if spec["type"] == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=spec.get("log", False))
    if spec.get("zero"):
        raw = trial.suggest_float(name, spec["low"] / 10, spec["high"], log=True)
        return 0.0 if raw < spec["low"] else raw
    return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))


def to_params(hp, space):
    """Hyperparameters -> the study's parameter names and values (for enqueue_trial)."""
    params = {}
    for name, value in hp.items():
        spec = space.get(name)
        if spec is None:
            continue
        if spec.get("by"):
            if spec["by"] in hp:
                params[f"{name}_{hp[spec['by']]}"] = value
        elif spec.get("zero") and value == 0:
            params[name] = spec["low"] / 10
        else:
            params[name] = value
    return params


def trial_function(user_objective, space, seed=SEED):
    def run_trial(trial):
        hp = {**FIXED, **suggest(trial, space), "seed": seed}
        trial.set_user_attr("hp", hp)

        def report(value, step):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            return user_objective(hp, report)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:  # Ctrl-C: this trial does not count against the budget
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as exc:  # an out-of-memory configuration is infeasible, not a crash
            if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
                raise optuna.TrialPruned(f"out of memory: {exc}") from None
            raise

    return run_trial


class StopWhenStale:
    """Stop when the best value improved by less than STOP_MIN_GAIN (relative) per trial over the
    last STOP_STALE finished trials -- the same best for STOP_STALE trials is the case of no gain."""

    def __init__(self, window=STOP_STALE, min_gain=STOP_MIN_GAIN):
        self.window, self.min_gain = window, min_gain

    def __call__(self, study, trial):
        # pruned trials count: each is a trial that did not improve on the best
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED))
        if not self.window or len(done) <= self.window:
            return
        sign = 1.0 if DIRECTION == "maximize" else -1.0
        values = [sign * t.value if t.state == optuna.trial.TrialState.COMPLETE else -math.inf
                  for t in sorted(done, key=lambda t: t.number)]
        now, before = max(values), max(values[:-self.window])
        if not math.isfinite(before):
            return
        gain = now - before
        if gain / max(abs(before), 1e-12) / self.window < self.min_gain:
            study.set_user_attr("stopped", "stale")  # kept: running the script again adds nothing
            study.stop()


COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
           optuna.trial.TrialState.FAIL)


def _counted(study):
    """Trials that count against the budget: finished, a trial cut by Ctrl-C or a kill left out."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=COUNTED) if not t.user_attrs.get("interrupted"))


def _study(name, storage):
    study = optuna.create_study(study_name=name, storage=storage, sampler=make_sampler(),
                                pruner=make_pruner(), direction=DIRECTION, load_if_exists=True)
    if isinstance(storage, str) and storage.startswith("sqlite"):
        # one process: a trial still RUNNING was left by a killed run; failed, marked, not counted
        # (a server's heartbeat does this for several workers, see make_storage; a journal file's
        # workers share one machine: start them together)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)
    return study


class _Budget:
    """Stop once `n_total` trials count (_counted): Optuna's MaxTrialsCallback counts by state only."""

    def __init__(self, n_total):
        self.n_total = n_total

    def __call__(self, study, trial):
        if _counted(study) >= self.n_total:
            study.stop()


def _optimize(study, function, n_total, deadline, stale=True):
    done = _counted(study)
    timeout = None if deadline is None else deadline - time.monotonic()
    if done >= n_total or study.user_attrs.get("stopped") or (timeout is not None and timeout <= 0):
        return
    callbacks = [_Budget(n_total)]
    if stale and STOP_STALE:
        callbacks.append(StopWhenStale())
    study.optimize(function, n_trials=n_total - done, timeout=timeout, callbacks=callbacks,
                   catch=(), gc_after_trial=False, show_progress_bar=False)


def _best_trials(studies, k):
    trials = [t for s in studies for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    return sorted(trials, key=lambda t: t.value, reverse=DIRECTION == "maximize")[:k]


def _narrow(values, low, high, log, widen):
    a, b = min(values), max(values)
    if log:
        a, b = a / widen, b * widen
    else:
        pad = max(b - a, (high - low) * 0.1) * (widen - 1) / 2
        a, b = a - pad, b + pad
    return max(low, a), min(high, b)


def narrowed(study, space, top=REFINE_TOP, widen=REFINE_WIDEN):
    """The space narrowed around the best `top` configurations of `study`."""
    trials = _best_trials([study], top)
    if not trials:
        return space
    new = {}
    for name, spec in space.items():
        if spec.get("by"):
            ranges = {}
            for key, (low, high) in spec["ranges"].items():
                vals = [t.params[f"{name}_{key}"] for t in trials if f"{name}_{key}" in t.params]
                ranges[key] = list(_narrow(vals, low, high, spec.get("log"), widen)) if vals else [low, high]
            new[name] = {**spec, "ranges": ranges}
            continue
        vals = [t.params[name] for t in trials if name in t.params]
        if not vals:
            new[name] = spec
        elif spec["type"] == "categorical":
            new[name] = {**spec, "choices": [c for c in spec["choices"] if c in vals] or spec["choices"]}
        elif spec.get("zero"):
            positive = [v for v in vals if v >= spec["low"]]
            low, high = (_narrow(positive, spec["low"], spec["high"], True, widen) if positive
                         else (spec["low"], spec["high"]))
            new[name] = {**spec, "low": low, "high": high, "zero": len(positive) < len(vals)}
        else:
            low, high = _narrow(vals, spec["low"], spec["high"], spec.get("log"), widen)
            if spec["type"] == "int":
                low, high = int(round(low)), max(int(round(high)), int(round(low)))
            new[name] = {**spec, "low": low, "high": high}
    return new


def _grid_run(study, user_objective, points, deadline):
    """A grid runs exactly its points: each one queued until a trial of it completed or was pruned
    -- a point whose trial failed (Ctrl-C) or was left RUNNING by a killed worker is queued again
    when the search is started again -- and never more trials than queued points, so the sampler
    never draws an off-grid configuration. (A worker that joins while another runs a point queues
    that point too: start the workers together.)"""
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    key = lambda params: json.dumps(params, sort_keys=True, default=str)  # noqa: E731
    trials = study.get_trials(deepcopy=False)
    finished = {key(t.params) for t in trials if t.state in done}
    waiting = {key(t.system_attrs.get("fixed_params") or t.params) for t in trials
               if t.state == optuna.trial.TrialState.WAITING}
    for hp in points:
        params = to_params(hp, SPACE)
        if key(params) not in finished | waiting:
            # the baseline marked as such, grid points as planned points (audit tells them apart)
            study.enqueue_trial(params, user_attrs={"baseline": True} if hp is BASELINE else {"planned": "grid"})
            waiting.add(key(params))
    function = trial_function(user_objective, SPACE)
    while True:
        queued = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        timeout = None if deadline is None else deadline - time.monotonic()
        if not queued or (timeout is not None and timeout <= 0):
            return
        study.optimize(function, n_trials=queued, timeout=timeout, catch=(), gc_after_trial=False,
                       show_progress_bar=False)


def explore(user_objective, storage, n=N_EXPLORE, deadline=None):
    study = _study(STUDY_NAME, storage)
    first = [] if BASELINE is None else [BASELINE]
    if GRID is not None:
        points = first + [hp for hp in GRID if hp != BASELINE]
        _grid_run(study, user_objective, points, deadline)
        return study
    for hp in first:  # the baseline, marked as such (audit tells it from the search's trials)
        study.enqueue_trial(to_params(hp, SPACE), skip_if_exists=True, user_attrs={"baseline": True})
    _optimize(study, trial_function(user_objective, SPACE), n, deadline, stale=True)
    return study


def refine(user_objective, storage, n=N_REFINE, deadline=None):
    source = _study(STUDY_NAME, storage)
    study = _study(STUDY_NAME + "-refine", storage)
    if "space" not in study.user_attrs:  # the first worker decides the narrowed space for all
        space = narrowed(source, SPACE)
        study.set_user_attr("space", space)
        best = _best_trials([source], 1)
        if best:  # the best configuration so far starts the refinement
            # marked as carried over, so that `advisor audit` does not take it for the user's baseline
            study.enqueue_trial(to_params(best[0].user_attrs.get("hp", {}), space), skip_if_exists=True,
                                user_attrs={"seeded_from": STUDY_NAME})
    space = study.user_attrs["space"]
    _optimize(study, trial_function(user_objective, space), n, deadline)
    return study


def final(user_objective, storage, top_k=TOP_K, seeds=SEEDS_FINAL):
    """Re-run the best `top_k` configurations with `seeds` seeds each; mean and std per finalist."""
    studies = [_study(STUDY_NAME, storage)]
    if N_REFINE:
        studies.append(_study(STUDY_NAME + "-refine", storage))
    study = optuna.create_study(study_name=STUDY_NAME + "-final", storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=SEED),
                                pruner=optuna.pruners.NopPruner(), direction=DIRECTION,
                                load_if_exists=True)
    if "finalists" not in study.user_attrs:
        finalists, seen = [], set()
        for t in _best_trials(studies, len(studies) * 10 * max(top_k, 1)):
            hp = {k: v for k, v in t.user_attrs.get("hp", {}).items() if k != "seed"}
            key = json.dumps(hp, sort_keys=True)
            if hp and key not in seen:
                seen.add(key)
                finalists.append(hp)
            if len(finalists) == top_k:
                break
        study.set_user_attr("finalists", finalists)
        for i in range(len(finalists)):
            for s in range(seeds):
                study.enqueue_trial({"config": i, "seed": s}, skip_if_exists=True)
    finalists = study.user_attrs["finalists"]
    if not finalists:
        return []

    def run_final(trial):
        i = trial.suggest_int("config", 0, len(finalists) - 1)
        s = trial.suggest_int("seed", 0, max(seeds - 1, 0))
        hp = {**finalists[i], "seed": SEED + 1 + s}
        trial.set_user_attr("hp", hp)
        return user_objective(hp, lambda value, step: None)

    _optimize(study, run_final, len(finalists) * seeds, None, stale=False)
    results = []
    for i, hp in enumerate(finalists):
        values = [t.value for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                  if t.params.get("config") == i]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            results.append({"hp": hp, "mean": statistics.fmean(values), "std": std, "runs": len(values)})
    results.sort(key=lambda r: r["mean"], reverse=DIRECTION == "maximize")
    for r in results:
        print(f"{METRIC} {r['mean']:.6g} +- {r['std']:.2g} ({r['runs']} seeds): {r['hp']}")
    return results


def run(user_objective=None, storage=STORAGE, phases=("explore", "refine", "final"),
        n_explore=N_EXPLORE, n_refine=N_REFINE, top_k=TOP_K, seeds=SEEDS_FINAL):
    """The whole search; returns the final results (best first) when the final phase ran."""
    user_objective = user_objective or objective
    if getattr(user_objective, "placeholder", False):
        user_objective({}, None)  # raises: the objective is still to be written
    storage = make_storage(storage)
    # the wall-clock budget runs from the search's first start, kept in the study: a resumed run
    # gets what is left of it, not a new one
    first = _study(STUDY_NAME, storage)
    if "started" not in first.user_attrs:
        first.set_user_attr("started", time.time())
    left = first.user_attrs["started"] + max(BUDGET_HOURS - FINAL_HOURS, 0.0) * 3600 - time.time()
    deadline = time.monotonic() + left
    if "explore" in phases:
        explore(user_objective, storage, n_explore, deadline)
    if "refine" in phases and n_refine > 0:
        refine(user_objective, storage, n_refine, deadline)
    if "final" in phases and top_k > 0 and seeds > 0:
        return final(user_objective, storage, top_k, seeds)
    return []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=("all", "explore", "refine", "final"), default="all")
    parser.add_argument("--storage", default=STORAGE, help="storage URL or .journal file")
    args = parser.parse_args(argv)
    phases = ("explore", "refine", "final") if args.phase == "all" else (args.phase,)
    run(objective, storage=args.storage, phases=phases)


if __name__ == "__main__":
    main()
''')
