"""What pruning saves on the torch tasks of bench_search.py: the planned search (explore + refine)
pruned by each variant against the same search unpruned, N trials of 12 epochs.

    python bench/bench_pruning.py 24 3                 # N=24, 3 seeds, every variant: bench/results/pruning-real-24.txt
    python bench/bench_pruning.py 60 3 none,sha-1/3    # bench/results/pruning-real-60.txt
    python bench/bench_pruning.py 60 3 none,sha-1/4,sha-1/5,sha-1/6   # bench/results/pruning-real-tpe-60-3seeds.txt
    python bench/bench_pruning.py 60 5 none,sha-1/4,sha-1/4-b1,sha-1/4-b3  # bench/results/pruning-real-tpe-60-5seeds.txt

-bN: Optuna's bootstrap_count=N (the first N trials to reach a rung are pruned there, so early
trials are not promoted for want of competitors); measured, not used (see rule P202).
"""
import sys, statistics, json, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import torch; torch.set_num_threads(1)
import bench_search as B
from advisor.space import Space
VARIANTS = {"none": {"type": "none"},
            "median-5/1": {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 1},
            "sha-1/2": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 2},
            "sha-1/3": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 3},
            "sha-1/4": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 4},
            "sha-1/5": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 5},
            "sha-1/6": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 6},
            "sha-1/4-b1": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 4, "bootstrap_count": 1},
            "sha-1/4-b3": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 4, "bootstrap_count": 3}}
n, epochs = int(sys.argv[1]), 12
if len(sys.argv) > 3: VARIANTS = {k: v for k, v in VARIANTS.items() if k in sys.argv[3].split(",")}
seeds = int(sys.argv[2])
out = {}
for task in ("digits", "friedman"):
    space = B.planned_space(B.TASKS[task], epochs)
    for seed in range(seeds):
        for v, pr in VARIANTS.items():
            sp = Space.model_validate({**space.to_yaml_dict(), "pruner": pr})
            t0 = time.time()
            r = B.run_advisor(task, sp, n, epochs, seed, phased=True)
            out[(task, seed, v)] = r
            print(task, seed, v, r["best"], r["epochs"], r["pruned"], f"{time.time()-t0:.0f}s", flush=True)
for task in ("digits", "friedman"):
    base = [out[(task, s, "none")] for s in range(seeds)]
    sd = statistics.stdev([b["best"] for b in base]) if seeds > 1 else 0
    for v in VARIANTS:
        if v == "none": continue
        rs = [out[(task, s, v)] for s in range(seeds)]
        saved = statistics.fmean(1 - r["epochs"] / b["epochs"] for r, b in zip(rs, base))
        diff = statistics.fmean(r["best"] - b["best"] for r, b in zip(rs, base))
        print(f"{task} N={n} {v}: saves {saved:.0%}; best minus unpruned {diff:+.4f} (unpruned seeds' std {sd:.4f})")
