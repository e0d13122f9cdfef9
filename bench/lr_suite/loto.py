"""Leave-one-task-out: how often `advisor lr-find` lands in the good band on a task it was not fitted on.

    python bench/lr_suite/loto.py                     # the table, from results/ (seconds, no training)
    python bench/lr_suite/loto.py --tasks wine-mlp-adamw cancer-mlp-sgd --json out.json

Reads the stored ground truth of bench/lr_suite/sweep.py (results/sweep.jsonl, results/curves.jsonl).

* Truth per task: the mean over the training seeds of the validation metric at the end of the
  task's epochs, for each LR of the sweep; read between grid points by linear interpolation in
  log(LR). Good band: within 1 accuracy point of the sweep's best, or 2% relative loss.
* What advisor fits: the weights of its estimators (one of a few candidate sets), an offset in
  decades, and a horizon slope (decades per decade of planned training steps beyond the range
  test's). For each task they are fitted on the other tasks only (most task-seeds in the band,
  ties broken by the mean distance to the band), then scored on the task left out.
* Peers, on the same curves, as published: fastai valley, fastai minimum/10, torch-lr-finder
  steepest gradient. Nothing of theirs is fitted.
* A task-seed is one range test (seeds 100..108); `--repeats 3` groups them in threes (the
  median of three suggestions). Seed spread: max/min of the three suggestions of seeds 100..102
  (one test each) and of the three groups (three tests each).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from advisor.act import lr_find as LF  # noqa: E402

RESULTS = HERE / "results"
RT_SEEDS = tuple(range(100, 109))
PEERS = ("fastai_valley", "torch_lr_finder_steepest", "fastai_minimum")
WEIGHT_SETS = {  # the candidate combinations of advisor's estimators (geometric mean, these weights)
    "valley": {"valley": 1.0},
    "minimum": {"minimum": 1.0},
    "converging": {"converging": 1.0},
    "steepest": {"steepest": 1.0},
    "valley+converging": {"valley": 1.0, "converging": 1.0},
    "minimum+converging": {"minimum": 1.0, "converging": 1.0},
    "valley+minimum+converging": {"valley": 1.0, "minimum": 1.0, "converging": 1.0},
    "all": {"valley": 1.0, "steepest": 1.0, "minimum": 1.0, "converging": 1.0},
}
OFFSETS = np.round(np.arange(-1.5, 1.0001, 0.05), 3)
SLOPES = np.round(np.arange(0.0, 1.5001, 0.1), 3)
STEP = 0.01  # decades: resolution of the band lookup


def load(results: Path, only=None):
    sys.path.insert(0, str(HERE))
    import tasks as T

    runs = collections.defaultdict(lambda: collections.defaultdict(list))
    for line in (results / "sweep.jsonl").read_text().splitlines():
        r = json.loads(line)
        runs[r["task"]][r["lr"]].append(r["history"])
    curves = collections.defaultdict(dict)
    for line in (results / "curves.jsonl").read_text().splitlines():
        r = json.loads(line)
        curves[r["task"]][(r["seed"], r["iters"])] = r
    out = {}
    for name, by_lr in runs.items():
        if only and name not in only:
            continue
        spec = T.TASKS[name]
        seeds = max(len(v) for v in by_lr.values())
        if len(by_lr) < 15 or any(len(v) < seeds for v in by_lr.values()):
            continue  # a task whose sweep is not complete yet
        if not all((s, 100) in curves[name] for s in RT_SEEDS):
            continue
        out[name] = {"spec": spec, "by_lr": {lr: [h[-1] for h in hs] for lr, hs in by_lr.items()},
                     "histories": dict(by_lr), "curves": curves[name],
                     "planned_steps": spec.epochs * T.steps_per_epoch(name)}
    return out


class Truth:
    """The sweep of one task: metric against log10(LR), the band, a lookup of any LR."""

    def __init__(self, by_lr: dict, metric: str):
        self.lrs = np.array(sorted(by_lr))
        self.mean = np.array([float(np.mean(by_lr[lr])) for lr in self.lrs])
        self.acc = metric == "accuracy"
        self.x = np.log10(self.lrs)
        i = int(np.argmax(self.mean) if self.acc else np.argmin(self.mean))
        self.best_lr, self.best = float(self.lrs[i]), float(self.mean[i])
        self.fine = np.arange(self.x[0] - 3, self.x[-1] + 3 + STEP / 2, STEP)
        values = np.interp(self.fine, self.x, self.mean)  # clamped to the edge values outside the grid
        self.inband = self.good(values)
        good_x = self.fine[self.inband]
        self.distance = np.array([np.min(np.abs(good_x - f)) for f in self.fine]) if good_x.size else \
            np.full(self.fine.shape, 9.0)
        band = self.lrs[self.good(self.mean)]
        self.band = (float(band.min()), float(band.max()))

    def good(self, values):
        values = np.asarray(values, dtype=float)
        return values >= self.best - 0.01 if self.acc else values <= self.best * 1.02

    def index(self, log_lr):
        return np.clip(np.round((np.asarray(log_lr) - self.fine[0]) / STEP).astype(int), 0, len(self.fine) - 1)

    def hit(self, log_lr):
        return self.inband[self.index(log_lr)]

    def dist(self, log_lr):
        return self.distance[self.index(log_lr)]

    def value(self, lr: float) -> float:
        return float(np.interp(math.log10(lr), self.x, self.mean))


def features(task: dict, settings) -> dict:
    """Per range test (seeds 100..108): advisor's estimators, the peers, the verdict."""
    rows = []
    for seed in RT_SEEDS:
        c = task["curves"][(seed, 100)]
        losses = [float("nan") if v is None else v for v in c["losses"]]
        s = LF.suggest(c["lrs"], losses, c["iters"], c["diverged"], settings)
        rows.append({"seed": seed, "estimators": s.estimators, "peers": s.peers, "verdict": s.verdict,
                     "suggested_lr": s.suggested_lr, "confidence": s.confidence})
    return rows


def group_features(task: dict, settings, size: int = 3) -> list[dict]:
    """Per group of `size` range tests: the estimators read off their mean curve."""
    rows = []
    for i in range(0, len(RT_SEEDS) - size + 1, size):
        cs = [task["curves"][(seed, 100)] for seed in RT_SEEDS[i:i + size]]
        x, y = LF.mean_curve([(c["lrs"], [float("nan") if v is None else v for v in c["losses"]]) for c in cs])
        s = LF.suggest(x, y, cs[0]["iters"], any(c["diverged"] for c in cs), settings)
        rows.append({"seeds": RT_SEEDS[i:i + size], "estimators": s.estimators, "verdict": s.verdict,
                     "suggested_lr": s.suggested_lr, "confidence": s.confidence})
    return rows


def horizon_evidence(tasks: dict) -> dict:
    """Within each task: the centre of the good band (geometric, log10) after each epoch from a
    quarter of the training on, against log10 of the steps trained; the slope of that line."""
    sys.path.insert(0, str(HERE))
    import tasks as T

    out = {}
    for name, t in tasks.items():
        spec = t["spec"]
        steps = T.steps_per_epoch(name)
        xs, ys = [], []
        for e in range(max(1, spec.epochs // 4), spec.epochs + 1):
            by_lr = {lr: [h[e - 1] for h in hs] for lr, hs in t["histories"].items()}
            truth = Truth(by_lr, spec.metric)
            good = np.log10(truth.lrs[truth.good(truth.mean)])
            xs.append(math.log10(e * steps))
            ys.append(float(good.mean()))
        out[name] = float(np.polyfit(xs, ys, 1)[0]) if len(xs) >= 3 else None
    return out


def centres(rows: list[dict], weights: dict, outlier: float) -> np.ndarray:
    """log10 of the weighted geometric mean of the estimators, one per range test."""
    return np.array([LF.combine_estimators(r["estimators"], weights, outlier) for r in rows])


def horizon(planned: int, reference: int = 100) -> float:
    return math.log10(max(planned, reference) / reference)


MODES = {  # how the default reads its range tests
    "1 test": "one range test",
    "median of 3": "--repeats 3, the median of the three suggestions",
    "mean curve of 3": "--repeats 3, the suggestion read off the mean of the three curves",
}


def aggregate(logs: np.ndarray, mode: str) -> np.ndarray:
    """The suggestions (log10) of one mode from the per-test (or per-group) centres."""
    if mode == "median of 3":
        return np.array([np.median(logs[i:i + 3]) for i in range(0, len(logs) - 2, 3)])
    return logs


def fit(tasks: dict, names: list[str], pre: dict, mode: str, slopes=None):
    """The (weights, offset, slope) with the most hits over `names` (each task weighing the
    same), ties broken by the smaller mean distance to the band."""
    best = None
    for wname in WEIGHT_SETS:
        for slope in (SLOPES if slopes is None else slopes):
            hits = np.zeros(len(OFFSETS))
            dist = np.zeros(len(OFFSETS))
            for name in names:
                base = aggregate(pre[name][wname], mode) - slope * horizon(tasks[name]["planned_steps"])
                grid = base[None, :] + OFFSETS[:, None]
                truth = tasks[name]["truth"]
                hits += truth.hit(grid).mean(1)
                dist += truth.dist(grid).mean(1)
            score = hits - 0.01 * dist
            k = int(np.argmax(score))
            cand = (float(score[k]), wname, float(OFFSETS[k]), float(slope))
            if best is None or cand[0] > best[0] + 1e-12 or (abs(cand[0] - best[0]) <= 1e-12 and
                                                             abs(cand[3]) < abs(best[3])):
                best = cand
    return {"weights": best[1], "offset": best[2], "slope": best[3]}


def predict(task: dict, pre_logs: np.ndarray, params: dict, mode: str) -> np.ndarray:
    return aggregate(pre_logs, mode) - params["slope"] * horizon(task["planned_steps"]) + params["offset"]


def spread(logs: np.ndarray) -> float:
    return float(10 ** (np.max(logs) - np.min(logs)))


def evaluate(tasks: dict, settings, modes=tuple(MODES)) -> dict:
    outlier = settings.suggest.outlier_decades
    for task in tasks.values():
        task["truth"] = Truth(task["by_lr"], task["spec"].metric)
        task["rows"] = features(task, settings)
        task["groups"] = group_features(task, settings)
    pre = {mode: {name: {w: centres(t["groups" if mode == "mean curve of 3" else "rows"], WEIGHT_SETS[w], outlier)
                         for w in WEIGHT_SETS} for name, t in tasks.items()} for mode in modes}
    names = sorted(tasks)
    slopes = horizon_evidence(tasks)
    report = {"tasks": {}, "overall": {}, "fits": {}, "horizon_slopes": slopes}

    def within(names_in):  # the horizon slope the other tasks show inside themselves (median)
        vals = [-slopes[n] for n in names_in if slopes.get(n) is not None]
        return [max(0.0, round(float(np.median(vals)), 2))] if vals else [0.0]

    variants = [(mode, None) for mode in modes] + [("mean curve of 3", "within")]
    for mode, how in variants:
        key = f"advisor LOTO ({mode}{', within-task slope' if how else ''})"
        report["fits"][key] = {}
        for name in names:
            others = [n for n in names if n != name]
            params = fit(tasks, others, pre[mode], mode, within(others) if how else None)
            logs = predict(tasks[name], pre[mode][name][params["weights"]], params, mode)
            truth = tasks[name]["truth"]
            row = report["tasks"].setdefault(name, {})
            row[key] = {"hits": int(truth.hit(logs).sum()), "n": len(logs),
                        "lrs": [float(f"{10 ** v:.3g}") for v in logs], "params": params}
            if how:
                row["advisor --method sweep (LOTO)"] = halving(tasks[name], logs)
            report["fits"][key][name] = params
        report["fits"][key]["(all tasks)"] = fit(tasks, names, pre[mode], mode, within(names) if how else None)
    # advisor as rules/lr_find.yaml has it now, and the peers, one range test each
    for name in names:
        t, truth, row = tasks[name], tasks[name]["truth"], report["tasks"][name]
        current = np.array([math.log10(r["suggested_lr"]) if r["suggested_lr"] else np.nan for r in t["rows"]])
        row["advisor (rules/lr_find.yaml)"] = _score(truth, current)
        for p in PEERS:
            row[p] = _score(truth, np.array([math.log10(r["peers"][p]) if r["peers"][p] else np.nan
                                             for r in t["rows"]]))
        row["truth"] = {"best_lr": truth.best_lr, "best": truth.best, "band": truth.band,
                        "metric": t["spec"].metric, "planned_steps": t["planned_steps"]}
        row["spread"] = {"rules/lr_find.yaml, 1 test": spread(current[:3])}
        for mode in modes:
            lrs = row[f"advisor LOTO ({mode})"]["lrs"]
            row["spread"][mode] = spread(np.log10(lrs[:3]))
    rules = [k for k in report["tasks"][names[0]] if k not in ("truth", "spread")]
    for rule in rules:
        rates = [report["tasks"][n][rule]["hits"] / report["tasks"][n][rule]["n"] for n in names]
        report["overall"][rule] = {"mean_task_hit_rate": float(np.mean(rates)),
                                   "hits": sum(report["tasks"][n][rule]["hits"] for n in names),
                                   "n": sum(report["tasks"][n][rule]["n"] for n in names)}
    return report


def halving(task: dict, logs: np.ndarray) -> dict:
    """--method sweep replayed on the stored sweep: the candidates (rules/lr_find.yaml `halving`)
    around each suggestion, snapped to the sweep's 3-per-decade grid; the first rung read from
    training seed 0's metric after the rung's epochs, the kept half from its final metric (a run
    continued is the same run: CPU training is deterministic per seed); scored on the 3-seed mean."""
    hv = LF.load_settings().halving
    spec, truth = task["spec"], task["truth"]
    sys.path.insert(0, str(HERE))
    from sweep import grid

    base = np.log10(grid(spec.optimizer))
    hist = {round(math.log10(lr), 3): hs[0] for lr, hs in task["histories"].items()}
    plan = LF.halving_plan(1.0, spec.epochs)
    maximize = spec.metric == "accuracy"
    hits, picks = 0, []
    for centre in logs:
        i0 = int(np.argmin(np.abs(base - centre)))
        idx = sorted({int(np.clip(i0 + round(d * 3), 0, len(base) - 1)) for d in hv.offsets_decades})
        cands = [base[i] for i in idx]
        first = {10 ** c: hist[round(c, 3)][plan["first_epochs"] - 1] for c in cands}
        keep = LF.halving_pick(first, plan["keep"], maximize) if plan["first_epochs"] < spec.epochs else list(first)
        final = {lr: hist[round(math.log10(lr), 3)][-1] for lr in keep}
        best = LF.halving_pick(final, 1, maximize)[0]
        picks.append(float(f"{best:.3g}"))
        hits += bool(truth.hit(math.log10(best)))
    return {"hits": hits, "n": len(logs), "lrs": picks, "cost_full_runs": plan["cost_full_runs"]}


def _score(truth: Truth, logs: np.ndarray) -> dict:
    ok = np.isfinite(logs)
    hits = int(truth.hit(logs[ok]).sum()) if ok.any() else 0
    return {"hits": hits, "n": len(logs), "lrs": [float(f"{10 ** v:.3g}") if np.isfinite(v) else None for v in logs]}


def print_report(report: dict) -> None:
    names = sorted(report["tasks"])
    rules = list(report["overall"])
    short = {r: r.replace("advisor LOTO ", "").replace("advisor (rules/lr_find.yaml)", "yaml today")
             .replace("torch_lr_finder_steepest", "tlf steepest").replace("fastai_", "fastai ") for r in rules}
    spreads = list(report["tasks"][names[0]]["spread"])
    print(f"{'task':<25} {'best LR':>7} {'band':>17} " + " ".join(f"{short[r]:>17}" for r in rules)
          + "   seed spread (max/min of 3): " + " / ".join(spreads))
    for n in names:
        t = report["tasks"][n]
        band = f"{t['truth']['band'][0]:.1e}..{t['truth']['band'][1]:.1e}"
        cells = " ".join(f"{t[r]['hits']:>9}/{t[r]['n']:<7}" for r in rules)
        sp = " / ".join(f"{t['spread'][k]:.1f}x" for k in spreads)
        print(f"{n:<25} {t['truth']['best_lr']:>7.1e} {band:>17} {cells}   {sp}")
    print()
    for r in rules:
        o = report["overall"][r]
        print(f"{r:<36} hit rate {o['mean_task_hit_rate']:.1%} (mean over tasks; {o['hits']}/{o['n']} task-seeds)")
    for k in spreads:
        worst = max(report["tasks"][n]["spread"][k] for n in names)
        within = sum(report["tasks"][n]["spread"][k] <= 2.0 for n in names)
        print(f"seed spread, {k:<28} worst {worst:.1f}x; within 2x on {within}/{len(names)} tasks")
    print()
    hs = {k: v for k, v in report["horizon_slopes"].items() if v is not None}
    if hs:
        print(f"within-task horizon slope (decades of the band centre per decade of steps): median "
              f"{np.median(list(hs.values())):+.2f}; " + ", ".join(f"{k} {v:+.2f}" for k, v in sorted(hs.items())))
    for key, fits in report["fits"].items():
        print(f"{key}: fitted on all tasks {fits['(all tasks)']}")
        folds = collections.Counter(json.dumps(v, sort_keys=True) for k, v in fits.items() if k != "(all tasks)")
        for params, count in folds.most_common():
            print(f"   {count:>2} folds: {params}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--tasks", nargs="*", help="only these tasks (default: every task with a whole sweep)")
    parser.add_argument("--json", type=Path, help="also write the whole report as JSON")
    args = parser.parse_args(argv)
    tasks = load(args.results, set(args.tasks) if args.tasks else None)
    if len(tasks) < 2:
        raise SystemExit(f"{args.results}: need at least 2 tasks with a whole sweep, found {len(tasks)}")
    report = evaluate(tasks, LF.load_settings())
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
