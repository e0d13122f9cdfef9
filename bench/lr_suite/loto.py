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
    "yaml": "yaml",
}
OFFSETS = np.round(np.arange(-1.5, 1.0001, 0.05), 3)
SLOPES = np.round(np.arange(0.0, 1.5001, 0.1), 3)
STEP = 0.01  # decades: resolution of the band lookup
SMOOTH = 0.0  # --smooth: width (decades) of the kernel the truth is read through; 0: the raw seed means


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
        if not all((s, 100) in curves[name] for s in RT_SEEDS):  # the first nine
            continue
        out[name] = {"spec": spec, "by_lr": {lr: [h[-1] for h in hs] for lr, hs in by_lr.items()},
                     "histories": dict(by_lr), "curves": curves[name],
                     "planned_steps": spec.epochs * T.steps_per_epoch(name)}
    return out


def smoothed(x: np.ndarray, y: np.ndarray, width: float, acc: bool) -> np.ndarray:
    """The seed means read through a Gaussian kernel of `width` decades in log(LR): the best of
    many noisy means is biased up (the more LRs, the more), the smoothed curve much less. A
    diverged run (infinite loss) counts as 10x the worst finite loss."""
    y = np.asarray(y, dtype=float)
    if not acc:
        finite = y[np.isfinite(y)]
        y = np.where(np.isfinite(y), y, 10 * finite.max() if finite.size else 1.0)
    w = np.exp(-0.5 * ((x[:, None] - x[None, :]) / width) ** 2)
    return (w @ y) / w.sum(1)


class Truth:
    """The sweep of one task: metric against log10(LR), the band, a lookup of any LR."""

    def __init__(self, by_lr: dict, metric: str, smooth: float = 0.0):
        self.lrs = np.array(sorted(by_lr))
        self.mean = np.array([float(np.mean(by_lr[lr])) for lr in self.lrs])
        self.acc = metric == "accuracy"
        self.x = np.log10(self.lrs)
        if smooth:
            self.mean = smoothed(self.x, self.mean, smooth, self.acc)
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

    def hit(self, log_lr):  # no LR (NaN) is a miss
        log_lr = np.asarray(log_lr, dtype=float)
        return np.where(np.isfinite(log_lr), self.inband[self.index(np.nan_to_num(log_lr))], False)

    def dist(self, log_lr):
        log_lr = np.asarray(log_lr, dtype=float)
        return np.where(np.isfinite(log_lr), self.distance[self.index(np.nan_to_num(log_lr))], 9.0)

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
    """Per group of `size` range tests (three groups): the suggestion read off their mean curve."""
    rows = []
    seeds = [100 + k for k in range(3 * size)]
    for i in range(0, len(seeds), size):
        cs = [task["curves"][(seed, 100)] for seed in seeds[i:i + size]]
        curves = [LF.Curve(lrs=c["lrs"], losses=[math.nan if v is None else v for v in c["losses"]], smoothed=[],
                           iters=c["iters"], start=c["lrs"][0], end=10.0, diverged=c["diverged"],
                           stop_reason=c["stop_reason"], seconds=c["seconds"]) for c in cs]
        s = LF.combine_curves(curves, settings).suggestion  # as `advisor lr-find --repeats 3` reads them
        rows.append({"seeds": seeds[i:i + size], "estimators": s.estimators, "verdict": s.verdict,
                     "suggested_lr": s.suggested_lr, "confidence": s.confidence, "notes": s.notes})
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


def centres(rows: list[dict], weights, outlier: float) -> np.ndarray:
    """log10 of the weighted geometric mean of the estimators, one per range test; "yaml": the
    suggestion of rules/lr_find.yaml as it is (its weights, its offset)."""
    if weights == "yaml":
        return np.array([math.log10(r["suggested_lr"]) if r["suggested_lr"] else np.nan for r in rows])
    return np.array([LF.combine_estimators(r["estimators"], weights, outlier) for r in rows])


def horizon(planned: int, reference: int = 100) -> float:
    return math.log10(max(planned, reference) / reference)


MODES = {  # how the default reads its range tests
    "1 test": "one range test",
    "median of 3": "--repeats 3, the median of the three suggestions",
    "mean curve of 3": "--repeats 3, the suggestion read off the mean of the three curves",
    "mean curve of 6": "--repeats 6 (needs 18 stored range tests per task)",
}


def aggregate(logs: np.ndarray, mode: str) -> np.ndarray:
    """The suggestions (log10) of one mode from the per-test (or per-group) centres."""
    if mode == "median of 3":
        return np.array([np.median(logs[i:i + 3]) for i in range(0, len(logs) - 2, 3)])
    return logs


def family(task: dict) -> str:
    return "sgd" if task["spec"].optimizer == "sgd" else "adaptive"


def fit(tasks: dict, names: list[str], pre: dict, mode: str, slopes=None, by_family: bool = False,
        weight_sets=None, offsets=None):
    """The (weights, offset, slope) with the most hits over `names` (each task weighing the
    same), ties broken by the smaller mean distance to the band. by_family: one offset for SGD,
    one for the adaptive optimizers (the sums separate, so each is fitted on its own tasks)."""
    best = None
    groups = sorted({family(tasks[n]) for n in names}) if by_family else ["all"]
    grid_offsets = OFFSETS if offsets is None else np.asarray(offsets, dtype=float)
    for wname in (weight_sets or [w for w in WEIGHT_SETS if w != "yaml"]):
        for slope in (SLOPES if slopes is None else slopes):
            total, offsets = 0.0, {}
            for g in groups:
                hits = np.zeros(len(grid_offsets))
                dist = np.zeros(len(grid_offsets))
                for name in names:
                    if g != "all" and family(tasks[name]) != g:
                        continue
                    base = aggregate(pre[name][wname], mode) - slope * horizon(tasks[name]["planned_steps"])
                    grid = base[None, :] + grid_offsets[:, None]
                    truth = tasks[name]["truth"]
                    hits += truth.hit(grid).mean(1)
                    dist += truth.dist(grid).mean(1)
                score = hits - 0.01 * dist
                k = int(np.argmax(score))
                total += float(score[k])
                offsets[g] = float(grid_offsets[k])
            cand = (total, wname, offsets, float(slope))
            if best is None or cand[0] > best[0] + 1e-12 or (abs(cand[0] - best[0]) <= 1e-12 and
                                                             abs(cand[3]) < abs(best[3])):
                best = cand
    offset = best[2] if by_family else best[2]["all"]
    return {"weights": best[1], "offset": offset, "slope": best[3]}


def predict(task: dict, pre_logs: np.ndarray, params: dict, mode: str) -> np.ndarray:
    offset = params["offset"]
    if isinstance(offset, dict):  # per family; a family no other task had: the mean of the others
        offset = offset.get(family(task), float(np.mean(list(offset.values()))))
    return aggregate(pre_logs, mode) - params["slope"] * horizon(task["planned_steps"]) + offset


def spread(logs) -> float:
    """max/min of the suggestions; infinite when one of them gave no LR."""
    logs = np.asarray(logs, dtype=float)
    return float(10 ** (np.max(logs) - np.min(logs))) if np.all(np.isfinite(logs)) else math.inf


def one_seed_sweep(task: dict) -> dict:
    """The noise ceiling: the sweep's own best LR when read from one training seed, scored
    against the band of the three seeds' mean. No method that picks an LR by one training run
    can expect more."""
    truth, maximize = task["truth"], task["spec"].metric == "accuracy"
    seeds = min(len(v) for v in task["by_lr"].values())
    picks = []
    for k in range(seeds):
        runs = {lr: v[k] for lr, v in task["by_lr"].items()}
        picks.append(LF.halving_pick(runs, 1, maximize)[0])
    return _score(truth, np.log10(picks))


def evaluate(tasks: dict, settings, modes=tuple(MODES)) -> dict:
    outlier = settings.suggest.outlier_decades
    for task in tasks.values():
        task["truth"] = Truth(task["by_lr"], task["spec"].metric, SMOOTH)
        task["rows"] = features(task, settings)
        task["groups"] = group_features(task, settings)
    if all((117, 100) in t["curves"] for t in tasks.values()):
        for task in tasks.values():
            task["groups6"] = group_features(task, settings, 6)
    else:
        modes = tuple(m for m in modes if m != "mean curve of 6")
    source = {"mean curve of 3": "groups", "mean curve of 6": "groups6"}
    pre = {mode: {name: {w: centres(t[source.get(mode, "rows")], WEIGHT_SETS[w], outlier)
                         for w in WEIGHT_SETS} for name, t in tasks.items()} for mode in modes}
    names = sorted(tasks)
    slopes = horizon_evidence(tasks)
    report = {"tasks": {}, "overall": {}, "fits": {}, "horizon_slopes": slopes}

    def within(names_in):  # the horizon slope the other tasks show inside themselves (median)
        vals = [-slopes[n] for n in names_in if slopes.get(n) is not None]
        return [max(0.0, round(float(np.median(vals)), 2))] if vals else [0.0]

    # (aggregation, how): None fits weights, offset and slope; "within" takes the slope from the
    # other tasks' within-task evidence; "family" also one offset per optimizer family; "yaml*"
    # keep rules/lr_find.yaml's estimator (weights and offset) and add only what is named
    variants = [(mode, None) for mode in modes] + [("mean curve of 3", "within"), ("mean curve of 3", "family"),
                                                   ("mean curve of 3", "yaml"), ("mean curve of 3", "yaml+slope"),
                                                   ("1 test", "yaml+slope")]
    labels = {None: "", "within": ", within-task slope", "family": ", within-task slope, offset per optimizer family",
              "yaml": ", yaml estimator", "yaml+slope": ", yaml estimator, within-task slope"}
    repeats = settings.sweep.repeats
    default = f"mean curve of {repeats}" if repeats > 1 and f"mean curve of {repeats}" in modes else "1 test"
    report["default"] = default
    for mode, how in variants:
        key = f"advisor LOTO ({mode}{labels[how]})"
        report["fits"][key] = {}
        for name in names:
            others = [n for n in names if n != name]
            slope = within(others) if how in ("within", "family", "yaml+slope") else ([0.0] if how == "yaml" else None)
            params = fit(tasks, others, pre[mode], mode, slope, how == "family",
                         ["yaml"] if how and how.startswith("yaml") else None,
                         [0.0] if how and how.startswith("yaml") else None)
            logs = predict(tasks[name], pre[mode][name][params["weights"]], params, mode)
            truth = tasks[name]["truth"]
            row = report["tasks"].setdefault(name, {})
            row[key] = {"hits": int(truth.hit(logs).sum()), "n": len(logs),
                        "lrs": [float(f"{10 ** v:.3g}") for v in logs], "params": params}
            if how is None and mode == default:  # --method sweep centres on the default's answer
                row["advisor --method sweep (LOTO)"] = halving(tasks[name], logs)
            report["fits"][key][name] = params
        slope = within(names) if how in ("within", "family", "yaml+slope") else ([0.0] if how == "yaml" else None)
        report["fits"][key]["(all tasks)"] = fit(tasks, names, pre[mode], mode, slope, how == "family",
                                                 ["yaml"] if how and how.startswith("yaml") else None,
                                                 [0.0] if how and how.startswith("yaml") else None)
    # advisor as rules/lr_find.yaml has it now, and the peers, one range test each
    for name in names:
        t, truth, row = tasks[name], tasks[name]["truth"], report["tasks"][name]
        current = np.array([math.log10(r["suggested_lr"]) if r["suggested_lr"] else np.nan for r in t["rows"]])
        row["advisor (rules/lr_find.yaml)"] = _score(truth, current)
        for p in PEERS:
            row[p] = _score(truth, np.array([math.log10(r["peers"][p]) if r["peers"][p] else np.nan
                                             for r in t["rows"]]))
        row["sweep with one training seed (ceiling)"] = one_seed_sweep(t)
        row["truth"] = {"best_lr": truth.best_lr, "best": truth.best, "band": truth.band,
                        "metric": t["spec"].metric, "planned_steps": t["planned_steps"]}
        row["spread"] = {"rules/lr_find.yaml, 1 test": spread(current[:3])}
        for key in [k for k in row if k.startswith("advisor LOTO")]:
            row["spread"][key[len("advisor LOTO ("):-1]] = spread(np.log10(row[key]["lrs"][:3]))
        # cost: the range test against the same number of plain steps (stored beside each curve)
        ratios = [c["seconds"] / c["plain_seconds"] for k, c in t["curves"].items()
                  if k[1] == 100 and c["plain_seconds"]]
        row["cost_ratio"] = float(np.median(ratios)) if ratios else None
    rules = [k for k in report["tasks"][names[0]] if k not in ("truth", "spread", "cost_ratio")]
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
    print("columns: " + "; ".join(f"[{i}] {r}" for i, r in enumerate(rules)))
    heads = " ".join(f"{'[' + str(i) + ']':>17}" for i in range(len(rules)))
    print(f"{'task':<25} {'best LR':>7} {'band':>17} {heads}")
    for n in names:
        t = report["tasks"][n]
        band = f"{t['truth']['band'][0]:.1e}..{t['truth']['band'][1]:.1e}"
        cells = " ".join(f"{str(t[r]['hits']) + '/' + str(t[r]['n']):>17}" for r in rules)
        print(f"{n:<25} {t['truth']['best_lr']:>7.1e} {band:>17} {cells}")
    print()
    for r in rules:
        o = report["overall"][r]
        print(f"{r:<36} hit rate {o['mean_task_hit_rate']:.1%} (mean over tasks; {o['hits']}/{o['n']} task-seeds)")
    print()
    for k in spreads:
        values = [report["tasks"][n]["spread"][k] for n in names]
        within = sum(v <= 2.0 for v in values)
        print(f"seed spread (max/min of 3 suggestions), {k:<60} median {np.median(values):.1f}x, worst "
              f"{max(values):.1f}x; within 2x on {within}/{len(names)} tasks")
    print()
    ratios = [report["tasks"][n]["cost_ratio"] for n in names if report["tasks"][n]["cost_ratio"]]
    if ratios:
        print(f"cost: range test / the same number of plain training steps, median per task: "
              f"{np.median(ratios):.2f} (worst {max(ratios):.2f}); --repeats 3 runs 3 x 100 steps")
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
    parser.add_argument("--smooth", type=float, default=0.0,
                        help="read the truth through a Gaussian kernel this wide in decades of LR (e.g. 0.2)")
    args = parser.parse_args(argv)
    global SMOOTH
    SMOOTH = args.smooth
    tasks = load(args.results, set(args.tasks) if args.tasks else None)
    if len(tasks) < 2:
        raise SystemExit(f"{args.results}: need at least 2 tasks with a whole sweep, found {len(tasks)}")
    report = evaluate(tasks, LF.load_settings())
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
