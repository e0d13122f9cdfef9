"""Speed and memory of `advisor diagnose` against pandas.read_csv of the same file.

    python bench/bench_diagnose.py [--repeats 5] [--rows 10000 1000000]

For each size it writes a per-step training log (step, epoch, train loss, lr, grad norm, and a
validation loss/accuracy every 100 steps, as W&B and Lightning exports look), then times
    baseline: python -c "import pandas; pandas.read_csv(FILE)"
    advisor:  python -m advisor diagnose FILE --json
in alternation (this machine is shared and noisy: read the ratios, not the seconds), and
measures each one's peak resident memory. Goals: ratio <= 1.5 at 10k rows, <= 2.0 at 1M rows;
peak memory under 3x the file size (beyond the interpreter and pandas themselves).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def write_log(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    step = np.arange(rows)
    steps_per_epoch = max(1, rows // 50)
    epoch = step // steps_per_epoch
    t = step / rows
    train = 2.3 * np.exp(-6 * t) + 0.15 + 0.05 * rng.standard_normal(rows) * np.exp(-2 * t)
    lr = 1e-3 * np.minimum(1.0, t / 0.05) * 0.5 * (1 + np.cos(np.pi * t))
    grad = 1.0 + 0.2 * np.abs(rng.standard_normal(rows))
    evaluated = (step + 1) % 100 == 0
    val = np.where(evaluated, 2.3 * np.exp(-6 * t) + 0.2 + 0.02 * rng.standard_normal(rows), np.nan)
    acc = np.where(evaluated, 0.95 - 0.85 * np.exp(-6 * t), np.nan)
    import pandas as pd

    pd.DataFrame({"step": step, "epoch": epoch, "train_loss": train.round(5), "lr": lr,
                  "grad_norm": grad.round(4), "val_loss": val.round(5), "val_acc": acc.round(4)}
                 ).to_csv(path, index=False, na_rep="")


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def peak_kb(cmd: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def bench(path: Path, repeats: int) -> dict:
    baseline = [sys.executable, "-c", f"import pandas; pandas.read_csv({str(path)!r})"]
    advisor = [sys.executable, "-m", "advisor", "diagnose", str(path), "--json"]
    floor = [sys.executable, "-c", "import pandas"]
    timed(baseline), timed(advisor)  # warm the file cache and the bytecode
    base_t, adv_t = [], []
    for _ in range(repeats):
        base_t.append(timed(baseline))
        adv_t.append(timed(advisor))
    size = path.stat().st_size
    mem_floor, mem_base, mem_adv = peak_kb(floor), peak_kb(baseline), peak_kb(advisor)
    return {
        "rows": sum(1 for _ in path.open()) - 1, "file_mb": size / 1e6,
        "pandas_s": statistics.median(base_t), "advisor_s": statistics.median(adv_t),
        "ratio": statistics.median(adv_t) / statistics.median(base_t),
        "peak_mb": mem_adv / 1024, "pandas_peak_mb": mem_base / 1024,
        "mem_over_floor_x_file": (mem_adv - mem_floor) * 1024 / size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    args = parser.parse_args()
    goals = {10_000: 1.5, 1_000_000: 2.0}
    print(f"{'rows':>9} {'file MB':>8} {'pandas s':>9} {'advisor s':>10} {'ratio':>6} {'goal':>5} "
          f"{'peak MB':>8} {'pandas peak MB':>15} {'extra mem / file':>17}")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"steps_{rows}.csv"
            write_log(path, rows)
            r = bench(path, args.repeats)
            goal = goals.get(rows, 2.0)
            print(f"{r['rows']:>9} {r['file_mb']:>8.1f} {r['pandas_s']:>9.3f} {r['advisor_s']:>10.3f} "
                  f"{r['ratio']:>6.2f} {goal:>5.1f} {r['peak_mb']:>8.0f} {r['pandas_peak_mb']:>15.0f} "
                  f"{r['mem_over_floor_x_file']:>16.2f}x")


if __name__ == "__main__":
    main()
