"""The ground truth of the held-out suite: a constant-LR sweep per task, and range tests.

    nice -n 10 python bench/lr_suite/sweep.py                    # every task (~30 min of one CPU)
    python bench/lr_suite/sweep.py --tasks wine-mlp-adamw --seeds 1
    nice -n 10 python bench/lr_suite/sweep.py --long             # tasks.LONG (bench_tune's): the sweep only,
                                                                 # into results/sweep-long.jsonl (~10 min)

For every task of bench/lr_suite/tasks.py:
* range tests of advisor's default sweep (1e-7 .. 10, 100 steps) with RT_SEEDS, and longer ones
  (300 steps) with LONG_SEEDS, stored whole (LRs and raw losses) in results/curves.jsonl, with
  the time of the same number of plain training steps beside each (the cost reference);
* the sweep: 16 log-spaced constant LRs (3 per decade; 1e-5 .. 1 for the adaptive optimizers,
  1e-4 .. 10 for SGD) x 3 training seeds, each trained for the task's epochs with the validation
  metric after every epoch, in results/sweep.jsonl.

One JSON line per run, appended as soon as it ends: a stopped sweep is usable as far as it went,
and a rerun skips what is already stored.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import tasks as T  # noqa: E402

RESULTS = HERE / "results"
RT_SEEDS = tuple(range(100, 118))   # 18 default range tests: three suggestions of 3 (or 6) repeats
LONG_SEEDS = (200, 201, 202)        # 300-step range tests
TRAIN_SEEDS = (0, 1, 2)


def grid(optimizer: str) -> list[float]:
    low = -4 if optimizer == "sgd" else -5
    return [float(f"{10 ** (low + k / 3):.4g}") for k in range(16)]


def done_keys(path: Path, fields: tuple[str, ...]) -> set:
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            keys.add(tuple(row[f] for f in fields))
    return keys


def append(path: Path, row: dict) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def refine(sweep_file: Path, name: str, seeds: int) -> list[float]:
    """The LRs half a grid step and a grid step and a half either side of the best grid LR (the
    best mean final metric): the band's edges read at 6 per decade where it matters."""
    import statistics

    runs: dict[float, list[float]] = {}
    for line in sweep_file.read_text().splitlines():
        r = json.loads(line)
        if r["task"] == name:
            runs.setdefault(r["lr"], []).append(r["history"][-1])
    spec = T.SPECS[name]
    full = [lr for lr in grid(spec.optimizer) if len(runs.get(lr, ())) >= seeds]
    if len(full) < len(grid(spec.optimizer)):
        return []
    means = {lr: statistics.fmean(runs[lr]) for lr in full}
    best = (max if spec.metric == "accuracy" else min)(means, key=means.get)
    x = math.log10(best)
    return [float(f"{10 ** (x + d):.4g}") for d in (-1 / 2, -1 / 6, 1 / 6, 1 / 2)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", choices=list(T.SPECS),
                        help="default: every task of the suite (with --long: every task of tasks.LONG)")
    parser.add_argument("--long", action="store_true",
                        help="the longer trainings of tasks.LONG: no range tests, the sweep into sweep-long.jsonl")
    parser.add_argument("--seeds", type=int, default=len(TRAIN_SEEDS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-sweep", action="store_true", help="range tests only")
    parser.add_argument("--refine", action="store_true",
                        help="second pass: 4 more LRs at the half-steps around each task's best (6 per decade there)")
    args = parser.parse_args(argv)
    args.tasks = args.tasks or list(T.LONG if args.long else T.TASKS)
    args.no_sweep = args.no_sweep and not args.long
    torch.set_num_threads(1)  # tiny models: one thread each, on a shared machine
    args.out.mkdir(parents=True, exist_ok=True)
    curves_file = args.out / "curves.jsonl"
    sweep_file = args.out / ("sweep-long.jsonl" if args.long else "sweep.jsonl")
    have_curves = done_keys(curves_file, ("task", "seed", "iters"))
    have_runs = done_keys(sweep_file, ("task", "lr", "seed"))
    for name in args.tasks:
        spec = T.SPECS[name]
        began = time.perf_counter()
        tests = [] if args.long else [(s, 100) for s in RT_SEEDS] + [(s, 300) for s in LONG_SEEDS]
        for seed, iters in tests:
            if (name, seed, iters) in have_curves:
                continue
            curve = T.range_test(name, seed, iters)
            t0 = time.perf_counter()
            T.plain_steps(name, curve.steps, seed)
            plain = time.perf_counter() - t0
            append(curves_file, {"task": name, "seed": seed, "iters": iters, "lrs": curve.lrs,
                                 "losses": [x if x == x and abs(x) != float("inf") else None for x in curve.losses],
                                 "diverged": curve.diverged, "stop_reason": curve.stop_reason,
                                 "seconds": round(curve.seconds, 4), "plain_seconds": round(plain, 4)})
        if args.no_sweep:
            continue
        lrs = refine(sweep_file, name, args.seeds) if args.refine else grid(spec.optimizer)
        for lr in lrs:
            for seed in TRAIN_SEEDS[: args.seeds]:
                if (name, lr, seed) in have_runs:
                    continue
                t0 = time.perf_counter()
                history = T.train(name, lr, seed)
                append(sweep_file, {"task": name, "lr": lr, "seed": seed, "history": history,
                                    "seconds": round(time.perf_counter() - t0, 3)})
        print(f"{time.strftime('%H:%M:%S')} {name}: {time.perf_counter() - began:.0f}s", flush=True)


if __name__ == "__main__":
    main()
