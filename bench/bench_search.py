"""Is advisor's planned search worth it? Against Optuna's default TPE and a grid, at an equal epoch budget.

    python bench/bench_search.py                        # both tasks, 3 seeds: ~3 minutes on 2 CPU cores
    python bench/bench_search.py --seeds 5              # the figures of the closing note: ~5.5 minutes
    python bench/bench_search.py --tasks digits --seeds 1 --save out/search-bench.json

For each task and seed (the same trainer, space and training seeds for every method):

  advisor      the planned search (advisor.act.search, the plan of `advisor search --demo`:
               learning rate, weight decay, dropout, batch size; the plan's sampler and pruner,
               the baseline first, explore then refine): the configurations the plan buys with B
               epochs (N / the pruner's cost share), and never more than B epochs
  tpe          Optuna's default TPESampler(seed) without pruning: B / E full trials
  grid         a grid of the same trial count (cell centres on each parameter's own scale:
               3 learning rates x 2 x 2 x 2 = 24), without pruning
  unpruned     advisor's planned search (explore + refine) with pruning switched off, B / E trials
  pruned@N     advisor's planned search with pruning, the same B / E trials: the epochs it
               spends against `unpruned` is what pruning saves (goal: at least half)
  tpe+prune    for reference, not a plan advisor makes for this budget: the same space and median
               pruner with the sampler of a `strategy: bayesian` plan (TPE, multivariate, grouped,
               10 random startup trials), run until it has spent B

B = N x E epochs (N = 24 trials of E = 12 epochs by default). Reported per method: the best
validation metric of the search, the epochs spent, the trials run, and the chosen configuration
re-trained with 3 new seeds (what the user would get: it discounts a lucky single run).
Single-threaded torch (the models are tiny). In-memory Optuna storage.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from advisor.act import search as S  # noqa: E402
from advisor.act.search.objective import _TrialFailed  # noqa: E402
from advisor.act.search.run import _searched  # noqa: E402
from advisor.act.demo import TensorLoader  # noqa: E402
from advisor.act.task import Task  # noqa: E402
from advisor.act.train import load_settings  # noqa: E402
from advisor.advice.plan import parse_current  # noqa: E402
from advisor.space import Space  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)


# --------------------------------------------------------------------------- tasks

def friedman_tensors():
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=1000, n_features=10, noise=1.0, random_state=0)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)[:, None]
    t = torch.from_numpy
    return t(x[:800]), t(y[:800]), t(x[800:]), t(y[800:])


_FRIEDMAN = None


def friedman_build(hp: dict) -> Task:
    """An MLP on Friedman #1 (regression, standardised): validation MSE, minimised."""
    global _FRIEDMAN
    if _FRIEDMAN is None:
        _FRIEDMAN = friedman_tensors()
    x, y, xv, yv = _FRIEDMAN
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Dropout(float(hp.get("dropout", 0.0))),
                          nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    return Task(model, TensorLoader(x, y, int(hp.get("batch_size") or 64)), TensorLoader(xv, yv, 512, False),
                nn.MSELoss(), "loss")


class FnRunner(S.Runner):
    """advisor's runner over a build function defined here."""

    def __init__(self, fn, label: str):
        self.task, self.settings, self.device = label, load_settings(), torch.device("cpu")
        self.fn, self.label, self.source, self.kind = fn, label, None, "build"


def make_runner(task: str) -> S.Runner:
    if task == "digits":
        from advisor.act import demo

        return FnRunner(demo.build, "digits")
    return FnRunner(friedman_build, "friedman")


TASKS = {"digits": "maximize", "friedman": "minimize"}


# --------------------------------------------------------------------------- the searches

def planned_space(direction: str, epochs: int) -> Space:
    """The plan advisor makes for the demo (rules/search.yaml `demo`), for this task's direction."""
    d = load_settings().demo
    space, _ = S.plan_space(budget_hours=d.budget_hours, trial_hours=d.trial_hours, epochs=epochs,
                            params=list(d.params), optimizer=d.optimizer,
                            current=parse_current({k: str(v) for k, v in d.current.items()}, d.optimizer),
                            workers=1, metric="val", direction=direction, name="bench")
    return space


def grid_space(space: Space, levels: dict[str, int]) -> Space:
    """A grid over the same ranges: cell centres on each parameter's own scale."""
    params = {}
    for name, p in space.params.items():
        k = levels.get(name, 2)
        if p.type == "categorical":
            choices = list(p.choices)
            idx = [int(round((i + 0.5) / k * len(choices) - 0.5)) for i in range(k)]
            params[name] = {"type": "categorical", "choices": [choices[i] for i in idx]}
            continue
        lo, hi = float(p.low), float(p.high)
        qs = [(i + 0.5) / k for i in range(k)]
        pts = [lo * (hi / lo) ** q for q in qs] if p.log else [lo + (hi - lo) * q for q in qs]
        params[name] = {"type": p.type, "low": lo, "high": hi, "log": p.log, "choices": [float(f"{v:.3g}") for v in pts]}
    return Space.model_validate({**space.to_yaml_dict(), "strategy": "grid", "params": params, "pruner": {"type": "none"}})


def spec_for(task: str, space: Space, trials: int, epochs: int, seed: int, baseline: bool = True,
             phased: bool = False) -> S.SearchSpec:
    """The search's spec; `phased`: explore then refine, split as the plan splits its configurations."""
    from advisor.act.search.phases import split_trials

    planned = (getattr(space, "model_extra", None) or {}).get("phases") or {}
    phases = split_trials(trials, planned.get("explore"), planned.get("refine")) if phased else []
    return S.SearchSpec(task=task, space=space.to_yaml_dict(), trials=trials, epochs=epochs, seed=seed, top_k=0,
                        direction=TASKS[task], baseline=space.baseline if baseline else None,
                        fixed={k: v for k, v in space.fixed.items() if k != "epochs"}, phases=phases)


def planned_trials(space: Space, n: int) -> int:
    """The configurations the plan buys with the epochs of n full trials under its pruner."""
    from advisor.advice.plan import tables

    share = float(tables()["budget"]["pruning_cost_share"][space.pruner.type])
    return max(n, round(n / share))


def run_advisor(task: str, space: Space, trials: int, epochs: int, seed: int, epoch_budget=None,
                baseline: bool = True, phased: bool = False) -> dict:
    spec = spec_for(task, space, trials, epochs, seed, baseline, phased)
    search = S.Search(spec, "memory", f"{task}-{seed}", optuna.storages.InMemoryStorage(),
                      runner=make_runner(task), epoch_budget=epoch_budget)
    study = search.create()
    search.run_search(study)
    return summary(study, spec)


def run_plain(task: str, space: Space, sampler, trials: int, epochs: int, seed: int) -> dict:
    """Optuna with the given sampler and no pruning, on advisor's objective (same trainer)."""
    spec = spec_for(task, space, trials, epochs, seed)
    study = optuna.create_study(direction=TASKS[task], sampler=sampler, pruner=optuna.pruners.NopPruner())
    objective = S.make_objective(make_runner(task), spec, space)
    study.optimize(objective, n_trials=trials, catch=(_TrialFailed,))
    return summary(study, spec)


def summary(study, spec: S.SearchSpec) -> dict:
    TS = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TS.COMPLETE]
    sign = 1.0 if spec.direction == "maximize" else -1.0
    best = max(done, key=lambda t: sign * t.value)
    space = spec.get_space()
    return {"best": best.value, "epochs": sum(S.trial_epochs(t) for t in trials), "trials": len(trials),
            "pruned": sum(t.state == TS.PRUNED for t in trials), "params": _searched(best, space)}


def confirm(task: str, hp: dict, epochs: int, seeds=(101, 102, 103)) -> float:
    """The chosen configuration re-trained with new seeds: its mean validation metric."""
    from advisor.act.lr_find import seed_everything
    from advisor.act.train import config_from_hp, train

    runner = make_runner(task)
    values = []
    for s in seeds:
        full = {"optimizer": "adamw", **hp}
        seed_everything(s)
        built = runner.fn(dict(full))
        values.append(train(built, config_from_hp(full, epochs=epochs), hp=full).value)
    return statistics.fmean(values)


# --------------------------------------------------------------------------- main

def bench(task: str, seed: int, n: int, epochs: int) -> dict[str, dict]:
    direction = TASKS[task]
    space = planned_space(direction, epochs)
    budget = n * epochs
    unpruned_space = Space.model_validate({**space.to_yaml_dict(), "pruner": {"type": "none"}})
    grid = grid_space(space, {"learning_rate": 3, "weight_decay": 2, "dropout": 2, "batch_size": 2})
    out = {}
    t0 = time.perf_counter()
    # the planned search: explore then refine over the configurations the plan buys, within B epochs
    out["advisor"] = run_advisor(task, space, planned_trials(space, n), epochs, seed, epoch_budget=budget,
                                 phased=True)
    out["tpe"] = run_plain(task, space, optuna.samplers.TPESampler(seed=seed), n, epochs, seed)
    out["grid"] = run_advisor(task, grid, n, epochs, seed, baseline=False)  # exactly N grid points
    out["unpruned"] = run_advisor(task, unpruned_space, n, epochs, seed, phased=True)
    out["pruned@N"] = run_advisor(task, space, n, epochs, seed, phased=True)
    bayes = Space.model_validate({**space.to_yaml_dict(), "strategy": "bayesian",
                                  "sampler": {"type": "TPESampler", "n_startup_trials": 10}})
    out["tpe+prune"] = run_advisor(task, bayes, 10 * n, epochs, seed, epoch_budget=budget)
    for r in out.values():
        r["confirmed"] = confirm(task, r["params"], epochs)
    out["_seconds"] = time.perf_counter() - t0
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=24, help="N: full trials of the unpruned methods")
    ap.add_argument("--epochs", type=int, default=12, help="E: epochs per full trial")
    ap.add_argument("--save", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for task in args.tasks:
        results[task] = [bench(task, s, args.trials, args.epochs) for s in range(args.seeds)]
        report(task, results[task], args.trials * args.epochs)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(results, indent=2, default=str))
    return 0


def report(task: str, runs: list[dict], budget: int) -> None:
    direction = TASKS[task]
    metric = "val accuracy (higher is better)" if direction == "maximize" else "val MSE (lower is better)"
    print(f"\n{task}: {metric}; epoch budget {budget}; {len(runs)} seed(s); "
          f"{sum(r['_seconds'] for r in runs):.0f} s")
    print(f"{'method':10} {'best (search)':>18} {'chosen, 3 new seeds':>22} {'epochs':>8} {'trials':>7} {'pruned':>7}")
    for m in ("advisor", "tpe", "grid", "unpruned", "pruned@N", "tpe+prune"):
        best = [r[m]["best"] for r in runs]
        conf = [r[m]["confirmed"] for r in runs]
        print(f"{m:10} {_ms(best):>18} {_ms(conf):>22} {statistics.fmean(r[m]['epochs'] for r in runs):8.0f} "
              f"{statistics.fmean(r[m]['trials'] for r in runs):7.1f} {statistics.fmean(r[m]['pruned'] for r in runs):7.1f}")
    saved = [1 - r["pruned@N"]["epochs"] / r["unpruned"]["epochs"] for r in runs]
    print(f"pruning saves {statistics.fmean(saved):.0%} of the epochs of the same search unpruned "
          f"(per seed: {', '.join(f'{s:.0%}' for s in saved)}; goal >= 50%)")
    sign = 1 if direction == "maximize" else -1
    for other in ("tpe", "grid", "tpe+prune"):
        wins = sum(sign * (r["advisor"]["confirmed"] - r[other]["confirmed"]) >= 0 for r in runs)
        print(f"advisor >= {other} (chosen config, 3 new seeds) in {wins}/{len(runs)} seeds")


def _ms(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


if __name__ == "__main__":
    sys.exit(main())
