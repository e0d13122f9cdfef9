"""Which search strategy for how many parameters at which budget, measured at equal epochs.

    python bench/bench_strategies.py --quick                  # a smoke run: 2 tasks, 1 seed, N=12
    python bench/bench_strategies.py                          # 6 tasks x 5 seeds x N = 12, 24, 60, 150
    python bench/bench_strategies.py --budgets 12 24 --seeds 3 --jobs 2 --save out/strategies.json
    python bench/bench_strategies.py --real --budgets 24      # the two torch tasks of bench_search.py

Every method runs through advisor's own search (advisor.act.search: the Search class, its
samplers, pruners, phases and epoch budget), on one of:

- six learning-curve tasks (`curve-*`, the default): a validation loss per epoch from the
  hyperparameters, with what makes strategies differ in practice -- a log-scale optimum for the
  learning rate that moves with the batch size (square root) and the warmup, a divergence above a
  learning rate that warmup pushes up, an interaction of learning rate and dropout, parameters that
  barely matter, curves whose speed depends on the learning rate (slow starters that end well, so
  that pruning can be wrong), epoch noise and seed noise. They cost microseconds, so the whole matrix
  (6 tasks x 5 seeds x 4 budgets x every method) runs on two CPU cores. 1, 2, 3, 4, 6 and 8
  parameters; each seed places the task's optimum differently;
- `--real`: the two torch tasks of bench/bench_search.py (digits accuracy, Friedman MSE), far
  slower: to check on real training what the curve tasks show.

Methods: a sampler x a pruner, at a budget of N full trials of E epochs (B = N x E epochs):

  samplers   random, qmc (scrambled Sobol), tpe (advisor's: multivariate, grouped, startup 10% of
             the trials, 10 to 50), tpe-default (Optuna's TPESampler(seed)), cmaes (needs the
             `cmaes` package; skipped without it), gp (GPSampler; up to --gp-max trials)
  pruners    none (N trials), median (advisor's MedianPruner settings), hyperband, sha (successive
             halving): run until B epochs are spent, at most 10 N trials
  phased     qmc+refine, tpe+refine: the planned search, explore then refine (advisor's phases),
             with the plan's pruner (median) or none

Reported per method (mean over seeds, per task): `best` the best value the search saw (noisy, what
a user reads off the study), `chosen` the true final loss of the configuration the search chose
(curve tasks: noise-free; real tasks: re-trained with 3 new seeds), `epochs` spent, `trials`.
The summary ranks methods by their chosen value within each (task, seed, budget), averaged, per
number of parameters and budget; the winner of each cell is what rules/plan/strategy.yaml should say.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from advisor.act import search as S  # noqa: E402
from advisor.act.search.phases import split_trials  # noqa: E402
from advisor.act.search.run import _searched  # noqa: E402
from advisor.space import Space  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore")

EPOCHS = 12
SAMPLERS = ("random", "qmc", "tpe", "tpe-default", "cmaes", "gp", "grid")
PRUNERS = ("none", "median", "hyperband", "sha")
PHASED = ("qmc+refine", "tpe+refine")


# --------------------------------------------------------------------------- the curve tasks

PARAMS = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True, "zero": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256, 512]},
    "momentum": {"type": "float", "low": 0.8, "high": 0.99},
    "warmup": {"type": "float", "low": 0.0, "high": 0.1},
    "lr_schedule": {"type": "categorical", "choices": ["cosine", "step", "onecycle", "constant"]},
    "width": {"type": "int", "low": 32, "high": 1024, "log": True},
}
TASKS = {  # name: (parameters, epoch noise, seed noise)
    "curve-1": (["learning_rate"], 0.010, 0.005),
    "curve-2": (["learning_rate", "weight_decay"], 0.010, 0.005),
    "curve-3": (["learning_rate", "weight_decay", "dropout"], 0.015, 0.008),
    "curve-4": (["learning_rate", "weight_decay", "dropout", "batch_size"], 0.015, 0.008),
    "curve-6": (["learning_rate", "weight_decay", "dropout", "batch_size", "momentum", "warmup"], 0.02, 0.01),
    "curve-8": (["learning_rate", "weight_decay", "dropout", "batch_size", "momentum", "warmup", "lr_schedule",
                 "width"], 0.02, 0.01),
}


def _unit(*key) -> float:
    """A deterministic number in [0, 1) from the key (no global random state)."""
    h = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2 ** 64


def _gauss(*key) -> float:
    u1, u2 = max(_unit(*key, 1), 1e-12), _unit(*key, 2)
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


class CurveTask:
    """A validation loss per epoch from the hyperparameters (see the module's docstring)."""

    def __init__(self, name: str, instance: int):
        self.name, self.instance = name, instance
        self.params, self.sigma, self.seed_sigma = TASKS[name]
        u = lambda i: _unit(name, instance, i)  # noqa: E731
        self.lr_opt = 10 ** (-3.5 + 1.5 * u(0))          # 3e-4 .. 1e-2 at batch 64
        self.wd_opt = 10 ** (-5 + 2.5 * u(1))
        self.drop_opt = 0.05 + 0.35 * u(2)
        self.bs_opt = [32, 64, 128][int(3 * u(3))]
        self.mom_opt = 0.85 + 0.12 * u(4)
        self.width_opt = 2 ** (6 + 3 * u(5))
        self.sched_cost = {"cosine": 0.0, "onecycle": 0.01 + 0.02 * u(6), "step": 0.03, "constant": 0.08}
        self.tau0 = 1.5 + 2.5 * u(7)                     # epochs for the loss to fall by e at lr_opt
        self.floor, self.span, self.start = 0.2 + 0.2 * u(8), 1.0, 2.3

    def lr_best(self, hp: dict) -> float:
        bs = hp.get("batch_size", self.bs_opt)
        warm = hp.get("warmup", 0.05)
        return self.lr_opt * math.sqrt(bs / 64) * (1 + 4 * warm)

    def final(self, hp: dict) -> float:
        """The noise-free loss at the end of training (what the search should minimize)."""
        x = math.log10(hp["learning_rate"] / self.lr_best(hp))
        drop = hp.get("dropout", self.drop_opt)
        q = 0.9 * x * x
        if "weight_decay" in hp:
            wd = max(hp["weight_decay"], 1e-7)
            q += 0.06 * (math.log10(wd) - math.log10(self.wd_opt)) ** 2
        if "dropout" in hp:
            q += 2.0 * (drop - self.drop_opt) ** 2 + 0.6 * x * (drop - self.drop_opt)
        if "batch_size" in hp:
            q += 0.04 * math.log2(hp["batch_size"] / self.bs_opt) ** 2
        if "momentum" in hp:
            q += 8.0 * (hp["momentum"] - self.mom_opt) ** 2
        if "warmup" in hp:
            q += 3.0 * (hp["warmup"] - 0.05) ** 2
        if "lr_schedule" in hp:
            q += self.sched_cost[hp["lr_schedule"]]
        if "width" in hp:
            q += 0.03 * math.log2(hp["width"] / self.width_opt) ** 2
        return self.floor + self.span * (1 - math.exp(-q))

    def diverges(self, hp: dict) -> bool:
        return hp["learning_rate"] > self.lr_best(hp) * 12 * (1 + 10 * hp.get("warmup", 0.0))

    def curve(self, hp: dict, seed: int, epochs: int) -> list[float]:
        final = self.final(hp)
        ratio = hp["learning_rate"] / self.lr_best(hp)
        tau = min(40.0, max(0.6, self.tau0 * ratio ** -0.6))   # slow starters at low learning rates
        key = (self.name, self.instance, seed, tuple(sorted((k, str(v)) for k, v in hp.items())))
        offset = self.seed_sigma * _gauss(*key, "seed")
        out = []
        for e in range(epochs):
            if self.diverges(hp) and e >= 1:
                out.append(float("nan"))
                break
            v = final + (self.start - final) * math.exp(-(e + 1) / tau) + offset + self.sigma * _gauss(*key, e)
            out.append(v)
        return out


def curve_objective(task: CurveTask):
    def objective(hp: dict, report) -> float:
        searched = {k: hp[k] for k in task.params if k in hp}
        values = task.curve(searched, int(hp.get("seed", 0)), int(hp["epochs"]))
        for e, v in enumerate(values):
            report(v, e)
        return values[-1]

    objective.direction = "minimize"
    return objective


class ObjectiveRunner(S.Runner):
    """advisor's runner over an objective(hp, report) defined here (no task file)."""

    def __init__(self, fn, label: str):
        from advisor.act.train import load_settings

        self.task, self.settings, self.device = label, load_settings(), None
        self.fn, self.label, self.source, self.kind = fn, label, None, "objective"


# --------------------------------------------------------------------------- the methods

def grid_params(params: list[str], n: int) -> dict:
    """A grid of about n points over the parameters: every categorical choice (evenly thinned when
    they alone exceed n), cell centres on each numeric parameter's own scale."""
    cats = [p for p in params if PARAMS[p]["type"] == "categorical"]
    nums = [p for p in params if p not in cats]
    out, size = {}, 1
    for p in cats:
        choices = list(PARAMS[p]["choices"])
        keep = max(1, min(len(choices), n // max(1, size)))
        out[p] = {"type": "categorical", "choices": [choices[round((i + 0.5) * len(choices) / keep - 0.5)]
                                                     for i in range(keep)]}
        size *= keep
    k = max(1, int((n / size) ** (1 / len(nums)) + 1e-9)) if nums else 1
    for p in nums:
        spec = PARAMS[p]
        lo, hi = float(spec["low"]), float(spec["high"])
        qs = [(i + 0.5) / k for i in range(k)]
        pts = [lo * (hi / lo) ** q for q in qs] if spec.get("log") else [lo + (hi - lo) * q for q in qs]
        if spec["type"] == "int":
            pts = sorted({int(round(v)) for v in pts})
        out[p] = {**{key: v for key, v in spec.items() if key != "zero"}, "choices": [float(f"{v:.3g}") for v in pts]
                  if spec["type"] == "float" else pts}
    return out


def method_space(params: list[str], method: str, n: int = 24) -> tuple[Space, str, str]:
    """(space, sampler, pruner) of a method name: 'tpe/median', 'qmc+refine/none', 'grid/none' ..."""
    sampler, _, pruner = method.partition("/")
    pruner = pruner or "none"
    base = sampler.split("+")[0]
    if base == "grid":
        return Space.model_validate({"strategy": "grid", "direction": "minimize", "params": grid_params(params, n),
                                     "pruner": {"type": "none"}}), base, "none"
    strategy = "random" if base in ("random", "qmc") else "bayesian"
    kind = {"random": "RandomSampler", "qmc": "QMCSampler", "tpe": "TPESampler"}.get(base)
    kind_of_pruner = {"sha": "successive_halving"}.get(pruner, pruner)
    space = {"strategy": strategy, "direction": "minimize", "params": {p: PARAMS[p] for p in params},
             "pruner": {"type": kind_of_pruner}}
    if kind:
        space["sampler"] = {"type": kind}
    return Space.model_validate(space), base, pruner


def _sampler_for(base: str, space: Space, seed: int, trials: int):
    if base == "tpe-default":
        return optuna.samplers.TPESampler(seed=seed)
    if base == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False,
                                            independent_sampler=optuna.samplers.RandomSampler(seed=seed))
    if base == "gp":
        return optuna.samplers.GPSampler(seed=seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed))
    return None  # advisor's own, from the space


def run_method(task_name: str, instance: int, method: str, n: int, epochs: int = EPOCHS,
               real: bool = False) -> dict:
    """One search: the method at a budget of n full trials of `epochs` epochs."""
    params = TASKS[task_name][0] if not real else None
    if real:
        runner, space_params, direction = _real_runner(task_name)
        space, base, pruner = method_space(["learning_rate"], method)
        space = Space.model_validate({**space.to_yaml_dict(), "params": space_params, "direction": direction})
    else:
        task = CurveTask(task_name, instance)
        runner = ObjectiveRunner(curve_objective(task), task_name)
        space, base, pruner = method_space(params, method, n)
        direction = "minimize"
    budget = n * epochs
    phased = "+refine" in method
    if pruner == "none":
        trials, cap = n, None
    else:
        from advisor.advice.plan import tables

        share = float(tables()["budget"]["pruning_cost_share"].get(pruner, 0.4))
        trials = max(n, round(n / share)) if phased else 10 * n
        cap = budget
    phases = split_trials(trials, None, None) if phased else [{"name": "explore", "trials": trials}]
    spec = S.SearchSpec(task=task_name, space=space.to_yaml_dict(), trials=trials, epochs=epochs, seed=instance,
                        top_k=0, direction=direction, phases=phases)
    search = S.Search(spec, "memory", f"{task_name}-{method}-{instance}", optuna.storages.InMemoryStorage(),
                      runner=runner, epoch_budget=cap)
    own = _sampler_for(base, space, instance, trials)
    if own is None and base == "tpe" and pruner != "none" and not phased:
        # advisor's TPE starts with 10% of the planned configurations (n / the pruner's cost share),
        # not of the 10 N cap that only bounds this run
        own = S.make_sampler(space, instance, 1, 0, max(n, round(n / share)))
    if own is not None:
        search._sampler = lambda: own  # noqa: SLF001 -- a sampler advisor does not plan, same search
    t0 = time.perf_counter()
    study = search.create()
    search.run_search(study)
    seconds = time.perf_counter() - t0
    TS = optuna.trial.TrialState
    trials_ = study.get_trials(deepcopy=False)
    done = [t for t in trials_ if t.state == TS.COMPLETE and t.value is not None and math.isfinite(t.value)]
    sign = 1.0 if direction == "maximize" else -1.0
    if not done:
        return {"best": None, "chosen": None, "epochs": sum(S.trial_epochs(t) for t in trials_),
                "trials": len(trials_), "seconds": seconds}
    best = max(done, key=lambda t: sign * t.value)
    hp = _searched(best, space)
    chosen = _real_confirm(task_name, hp, epochs) if real else task.final({k: hp[k] for k in params})
    return {"best": best.value, "chosen": chosen, "epochs": sum(S.trial_epochs(t) for t in trials_),
            "trials": len(trials_), "seconds": seconds, "phases": search.phases() if phased else None}


# --------------------------------------------------------------------------- what pruning saves

PRUNER_VARIANTS = {  # name: the space's pruner (advisor's pruner_spec reads these fields)
    "median-5/1": {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 1},
    "median-3/1": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
    "median-3/2": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 2},
    "sha-1/3": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 3},
    "sha-2/3": {"type": "successive_halving", "min_resource": 2, "reduction_factor": 3},
    "sha-1/2": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 2},
    "hyperband-1/3": {"type": "hyperband", "min_resource": 1, "reduction_factor": 3},
}


def run_savings(task_name: str, instance: int, variant: str, n: int, sampler: str, epochs: int = EPOCHS) -> dict:
    """The same planned search (explore + refine, n trials) with the pruner `variant` or none."""
    task = CurveTask(task_name, instance)
    space, base, _ = method_space(TASKS[task_name][0], f"{sampler}/none")
    if variant != "none":
        space = Space.model_validate({**space.to_yaml_dict(), "pruner": PRUNER_VARIANTS[variant]})
    spec = S.SearchSpec(task=task_name, space=space.to_yaml_dict(), trials=n, epochs=epochs, seed=instance, top_k=0,
                        direction="minimize", phases=split_trials(n, None, None))
    search = S.Search(spec, "memory", f"{task_name}-{variant}-{instance}", optuna.storages.InMemoryStorage(),
                      runner=ObjectiveRunner(curve_objective(task), task_name))
    study = search.create()
    search.run_search(study)
    TS = optuna.trial.TrialState
    done = [t for t in study.trials if t.state == TS.COMPLETE and t.value is not None and math.isfinite(t.value)]
    best = min(done, key=lambda t: t.value)
    hp = _searched(best, space)
    return {"epochs": sum(S.trial_epochs(t) for t in study.trials), "best": best.value,
            "chosen": task.final({k: hp[k] for k in TASKS[task_name][0]})}


def _savings_job(args) -> tuple:
    return (*args, run_savings(*args))


def savings(tasks, seeds: int, budgets, samplers, variants, jobs: int) -> str:
    work = [(t, i, v, n, s) for t in tasks for i in range(seeds) for n in budgets for s in samplers
            for v in ["none", *variants]]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            done = list(pool.map(_savings_job, work, chunksize=4))
    else:
        done = [_savings_job(w) for w in work]
    by = {(t, i, v, n, s): r for t, i, v, n, s, r in done}
    lines = ["What pruning saves: the same planned search (explore + refine, N trials), pruned or not.",
             f"{'sampler':8} {'N':>4} {'pruner':14} {'saved':>7} {'chosen - unpruned (mean)':>25} {'worse by > 0.01':>16}"]
    for s in samplers:
        for n in budgets:
            for v in variants:
                saved, diff, worse = [], [], 0
                for t in tasks:
                    for i in range(seeds):
                        a, b = by[(t, i, v, n, s)], by[(t, i, "none", n, s)]
                        saved.append(1 - a["epochs"] / b["epochs"])
                        diff.append(a["chosen"] - b["chosen"])
                        worse += a["chosen"] - b["chosen"] > 0.01
                lines.append(f"{s:8} {n:4} {v:14} {statistics.fmean(saved):7.0%} {statistics.fmean(diff):25.4f} "
                             f"{worse:>7}/{len(diff)}")
    return "\n".join(lines)


def _real_runner(task: str):
    from bench.bench_search import TASKS as REAL, make_runner, planned_space

    space = planned_space(REAL[task], EPOCHS)
    return make_runner(task), {k: v.model_dump(exclude_none=True) for k, v in space.params.items()}, REAL[task]


def _real_confirm(task: str, hp: dict, epochs: int) -> float:
    from bench.bench_search import confirm

    return confirm(task, hp, epochs)


def methods(samplers, pruners, with_phased: bool) -> list[str]:
    out = [f"{s}/{p}" for s in samplers for p in pruners if s != "grid" or p == "none"]
    if with_phased:
        out += [f"{m}/{p}" for m in PHASED for p in ("none", "median")]
    return out


def _job(args) -> tuple:
    task, instance, method, n, real = args
    try:
        return (task, instance, method, n, run_method(task, instance, method, n, real=real))
    except Exception as exc:  # one broken method must not lose the rest of the matrix
        return (task, instance, method, n, {"error": f"{type(exc).__name__}: {exc}"})


# --------------------------------------------------------------------------- report

def summarize(results: list[tuple], budgets: list[int]) -> dict:
    """Mean rank of each method by its chosen value, per (number of parameters, budget)."""
    from collections import defaultdict

    cells = defaultdict(dict)  # (task, instance, n) -> method -> chosen
    for task, inst, method, n, r in results:
        if r.get("chosen") is not None:
            cells[(task, inst, n)][method] = r["chosen"]
    ranks = defaultdict(list)
    for (task, inst, n), by in cells.items():
        order = sorted(by, key=lambda m: by[m])
        for i, m in enumerate(order):
            ranks[(len(TASKS[task][0]) if task in TASKS else task, n, m)].append(i + 1)
    table = {}
    for (dim, n, m), rs in ranks.items():
        table.setdefault(f"{dim} params, N={n}", {})[m] = round(statistics.fmean(rs), 2)
    return table


GROUPS = (("1-2", (1, 2)), ("3-4", (3, 4)), ("5+", (6, 8)))


def matrix(results: list[tuple]) -> str:
    """The strategy matrix the measurements give: within each (task, seed, N), methods ranked by
    the chosen configuration's true value (1 = best; ties share a rank), averaged over the tasks of
    a parameter-count group and the seeds. Two views: the samplers with no pruning (the strategy),
    and the pruners (for each sampler, at equal epochs)."""
    from collections import defaultdict

    cells = defaultdict(dict)
    for task, inst, method, n, r in results:
        if r.get("chosen") is not None and task in TASKS:
            cells[(task, inst, n)][method] = r["chosen"]

    def ranks(by: dict) -> dict:
        values = sorted(by.values())
        return {m: 1 + sum(v < by[m] - 1e-12 for v in values) for m in by}

    def view(keep, name) -> list[str]:
        agg = defaultdict(list)
        for (task, inst, n), by in cells.items():
            sub = {m: v for m, v in by.items() if keep(m)}
            if len(sub) < 2:
                continue
            dim = len(TASKS[task][0])
            group = next(g for g, dims in GROUPS if dim in dims)
            for m, r in ranks(sub).items():
                agg[(group, n, m)].append(r)
        out = [name]
        for g, _ in GROUPS:
            for n in sorted({k[1] for k in agg}):
                rows = sorted(((m, statistics.fmean(v)) for (gg, nn, m), v in agg.items() if gg == g and nn == n),
                              key=lambda x: x[1])
                if rows:
                    out.append(f"  {g:4} params  N={n:<4} " + ", ".join(f"{m} {v:.2f}" for m, v in rows))
        return out

    lines = view(lambda m: m.endswith("/none"), "Strategies without pruning: mean rank (1 = best)")
    for sampler in ("qmc", "tpe", "qmc+refine", "tpe+refine"):
        lines += view(lambda m, s=sampler: m.split("/")[0] == s, f"{sampler}: pruners at equal epochs, mean rank")
    lines += view(lambda m: True, "Every method: mean rank")
    return "\n".join(lines)


def report(results: list[tuple], budgets: list[int]) -> str:
    from collections import defaultdict

    lines = []
    agg = defaultdict(lambda: defaultdict(list))
    for task, inst, method, n, r in results:
        if "error" in r:
            lines.append(f"ERROR {task} {inst} {method} N={n}: {r['error']}")
            continue
        for k in ("best", "chosen", "epochs", "trials", "seconds"):
            if r.get(k) is not None:
                agg[(task, n, method)][k].append(r[k])
    tasks = sorted({t for t, *_ in results}, key=lambda t: (len(TASKS[t][0]) if t in TASKS else 0, t))
    for task in tasks:
        for n in budgets:
            rows = [(m, v) for (t, nn, m), v in agg.items() if t == task and nn == n]
            if not rows:
                continue
            lines.append(f"\n{task}  N={n} (budget {n * EPOCHS} epochs); mean over {len(rows[0][1]['chosen'])} seed(s)")
            lines.append(f"  {'method':22} {'chosen':>8} {'best':>8} {'epochs':>7} {'trials':>7} {'s':>6}")
            for m, v in sorted(rows, key=lambda x: statistics.fmean(x[1]["chosen"]) if x[1]["chosen"] else 9e9):
                f = lambda k: statistics.fmean(v[k]) if v[k] else float("nan")  # noqa: E731
                lines.append(f"  {m:22} {f('chosen'):8.4f} {f('best'):8.4f} {f('epochs'):7.0f} {f('trials'):7.1f} "
                             f"{f('seconds'):6.2f}")
    lines.append("")
    lines.append(matrix(results))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=None)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budgets", nargs="+", type=int, default=[12, 24, 60, 150])
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    ap.add_argument("--pruners", nargs="+", default=list(PRUNERS), choices=PRUNERS)
    ap.add_argument("--no-phased", action="store_true", help="leave out the planned explore+refine searches")
    ap.add_argument("--gp-max", type=int, default=60, help="GPSampler only up to this N (it is slow)")
    ap.add_argument("--real", action="store_true", help="the torch tasks of bench_search.py instead")
    ap.add_argument("--quick", action="store_true", help="2 tasks, 1 seed, N=12: a smoke run")
    ap.add_argument("--jobs", type=int, default=1, help="processes")
    ap.add_argument("--savings", nargs="*", default=None, metavar="VARIANT",
                    help=f"what pruning saves, same N trials (variants: {', '.join(PRUNER_VARIANTS)}; none named: all)")
    ap.add_argument("--save", type=Path, default=None)
    ap.add_argument("--matrix", nargs="+", type=Path, default=None, metavar="JSON",
                    help="print the strategy matrix of saved results (several files are merged)")
    args = ap.parse_args(argv)
    if args.matrix:
        merged = [tuple(r) for f in args.matrix for r in json.loads(f.read_text())["results"]]
        print(matrix(merged))
        return 0
    if args.quick:
        args.tasks, args.seeds, args.budgets = ["curve-2", "curve-4"], 1, [12]
    tasks = args.tasks or (["digits", "friedman"] if args.real else list(TASKS))
    if args.savings is not None:
        t0 = time.perf_counter()
        samplers = [s for s in args.samplers if s in ("qmc", "tpe")] or ["qmc"]
        print(savings(tasks, args.seeds, args.budgets, samplers, args.savings or list(PRUNER_VARIANTS), args.jobs))
        print(f"{time.perf_counter() - t0:.0f} s")
        return 0
    samplers = [s for s in args.samplers if s != "cmaes" or _has("cmaes")]
    if len(samplers) < len(args.samplers):
        print("cmaes: the `cmaes` package is not installed; CMA-ES left out", file=sys.stderr)
    jobs = [(t, i, m, n, args.real) for t in tasks for i in range(args.seeds) for n in args.budgets
            for m in methods(samplers, args.pruners, not args.no_phased)
            if not (m.startswith("gp/") and n > args.gp_max)]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(_job, jobs, chunksize=4))
    else:
        results = [_job(j) for j in jobs]
    print(report(results, args.budgets))
    print(f"\n{len(jobs)} searches in {time.perf_counter() - t0:.0f} s")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results, "ranks": summarize(results, args.budgets)},
                                        indent=1, default=str))
    return 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
