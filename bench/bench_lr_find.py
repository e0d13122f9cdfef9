"""How good is `advisor lr-find`'s suggestion, and what does the range test cost?

    python bench/bench_lr_find.py                 # all tasks, ~6-9 minutes on 2 CPU cores
    python bench/bench_lr_find.py --tasks digits-mlp friedman-mlp --seeds 2
    python bench/bench_lr_find.py --save out/lrbench.json     # also keep curves and sweeps
    python bench/bench_lr_find.py --cuda-check                # the CUDA path once, on a GPU

For each small task (different kinds, different optimizers):
1. the truth: a full sweep of constant LRs (16 log-spaced, 3 per decade, over 5 decades wide
   enough that the best is inside), each trained with 3 seeds for a fixed number of epochs; the
   validation metric (accuracy, or MSE for the regression) averaged over the seeds. The sweep's
   best LR is the grid point with the best mean.
2. one range test per seed (default settings: 1e-7 .. 10, 100 steps), and on that same curve:
   advisor's suggestion (one run), fastai's valley and minimum/10, torch-lr-finder's steepest
   gradient; plus advisor with --repeats 3 (the median of the three answers), and advisor's
   default as `advisor lr-find --epochs E` gives it (rules/lr_find.yaml's repeats read off their
   mean curve, lowered for the task's planned steps).
3. each rule's LR trained with the same protocol as the sweep (the per-seed suggestion with that
   seed); its mean metric against the sweep's best.
   Good band: within 1 point of accuracy, or 2% relative loss, of the sweep's best.
4. cost: the range test against the same number of plain training steps (same model, loader,
   optimizer), alternated after one warm-up, median of 7.

Single-threaded torch (the tasks are tiny: two threads on a shared 2-core machine are slower).
No rule is tuned per task: every task goes through the same `suggest()` with rules/lr_find.yaml.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import time
from functools import lru_cache
from pathlib import Path

import torch
from rich.console import Console
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advisor.act.cli_lr_find import _progress  # noqa: E402
from advisor.act.demo import TensorLoader, digits_tensors  # noqa: E402
from advisor.act.lr_find import (apply_horizon, combine, combine_curves, cycle, forward,  # noqa: E402
                                 horizon_correction, load_settings, make_optimizer, range_test,
                                 seed_everything, split_batch)
from advisor.act.task import Task  # noqa: E402

GRID = [10 ** (-5 + k / 3) for k in range(16)]  # 1e-5 .. 1e0, 3 per decade


# --------------------------------------------------------------------------- tasks

def digits_mlp(hp: dict) -> Task:
    x, y, xv, yv = digits_tensors()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return Task(model, TensorLoader(x, y, hp.get("batch_size", 64)), TensorLoader(xv, yv, 512, False),
                nn.CrossEntropyLoss(), "accuracy")


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 16, 10))

    def forward(self, x):
        return self.body(x.view(-1, 1, 8, 8))


def digits_cnn(hp: dict) -> Task:
    x, y, xv, yv = digits_tensors()
    return Task(SmallCNN(), TensorLoader(x, y, hp.get("batch_size", 64)), TensorLoader(xv, yv, 512, False),
                nn.CrossEntropyLoss(), "accuracy")


@lru_cache(maxsize=None)
def friedman_tensors():
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=0)
    y = (y - y.mean()) / y.std()
    x = (x - 0.5) / 0.29
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return t(x[:1600]), t(y[:1600, None]), t(x[1600:]), t(y[1600:, None])


def friedman_mlp(hp: dict) -> Task:
    x, y, xv, yv = friedman_tensors()
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    return Task(model, TensorLoader(x, y, hp.get("batch_size", 32)), TensorLoader(xv, yv, 400, False),
                nn.MSELoss(), "loss")


V, L = 16, 12


@lru_cache(maxsize=None)
def reverse_tensors():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, V, (5000, L), generator=g)
    return x[:4000], x[:4000].flip(1), x[4000:], x[4000:].flip(1)


class TinyTransformer(nn.Module):
    def __init__(self, d: int = 32):
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.pos = nn.Parameter(torch.randn(L, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, 4, 64, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, V)

    def forward(self, x):
        return self.head(self.enc(self.emb(x) + self.pos))


def seq_ce(out, y):
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def reverse_transformer(hp: dict) -> Task:
    x, y, xv, yv = reverse_tensors()
    return Task(TinyTransformer(), TensorLoader(x, y, hp.get("batch_size", 64)), TensorLoader(xv, yv, 500, False),
                seq_ce, "accuracy")


# name: (builder, optimizer, epochs, kind)
TASKS = {
    "digits-mlp": (digits_mlp, "sgd", 8, "classifier MLP, SGD+momentum"),
    "digits-cnn": (digits_cnn, "adam", 6, "classifier CNN+batch-norm, Adam"),
    "friedman-mlp": (friedman_mlp, "adam", 10, "regression MLP (MSE), Adam"),
    "reverse-transformer": (reverse_transformer, "adamw", 6, "tiny transformer, sequence reversal, AdamW"),
}


# --------------------------------------------------------------------------- protocol

def evaluate(task) -> float:
    model = task.model
    model.eval()
    total, weight = 0.0, 0
    with torch.no_grad():
        for batch in task.val_loader:
            x, y = split_batch(batch, "val_loader")
            out = forward(model, x)
            if task.metric == "accuracy":
                value = (out.argmax(-1) == y).float().mean().item()
            else:
                value = task.loss_fn(out, y).item()
            total += value * len(y)
            weight += len(y)
    model.train()
    return total / weight


def worst(metric: str) -> float:
    return 0.0 if metric == "accuracy" else math.inf


def train(name: str, lr: float, seed: int) -> float:
    """The fixed protocol: constant LR, fixed epochs, metric at the end; divergence = worst."""
    builder, optimizer, epochs, _ = TASKS[name]
    seed_everything(seed)
    task = builder({})
    opt = make_optimizer(optimizer, task.model.parameters(), lr)
    for _ in range(epochs):
        for x, y in task.train_loader:
            opt.zero_grad(set_to_none=True)
            loss = task.loss_fn(task.model(x), y)
            loss.backward()
            opt.step()
        if not math.isfinite(loss.item()):
            return worst(task.metric)
    value = evaluate(task)
    return value if math.isfinite(value) else worst(task.metric)


def better(metric: str, a: float, b: float) -> bool:
    return a > b if metric == "accuracy" else a < b


def in_band(metric: str, value: float, best: float) -> bool:
    return value >= best - 0.01 if metric == "accuracy" else value <= best * 1.02


def plain_steps(name: str, steps: int, seed: int) -> float:
    builder, optimizer, _, _ = TASKS[name]
    seed_everything(seed)
    task = builder({})
    began = time.perf_counter()
    opt = make_optimizer(optimizer, task.model.parameters(), 1e-7)
    batches = cycle(task.train_loader)
    for _ in range(steps):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss = task.loss_fn(task.model(x), y)
        loss.backward()
        opt.step()
    loss.item()
    return time.perf_counter() - began


def timed_range_test(name: str, seed: int):
    builder, optimizer, _, _ = TASKS[name]
    seed_everything(seed)
    task = builder({})
    began = time.perf_counter()
    # the progress bar the command shows, drawn to a throw-away terminal
    with _progress(Console(file=io.StringIO(), force_terminal=True), "lr-find", 100) as callback:
        curve = range_test(task.model, task.train_loader, task.loss_fn, optimizer_name=optimizer,
                           callback=callback)
    return curve, time.perf_counter() - began


# --------------------------------------------------------------------------- the benchmark

def geo(values):
    vals = [v for v in values if v]
    return 10 ** statistics.fmean(math.log10(v) for v in vals) if vals else None


def run_task(name: str, seeds: list[int], log) -> dict:
    builder, optimizer, epochs, kind = TASKS[name]
    metric = builder({}).metric
    t0 = time.perf_counter()
    sweep = {lr: [train(name, lr, s) for s in seeds] for lr in GRID}
    means = {lr: statistics.fmean(v) for lr, v in sweep.items()}
    best_lr = max(means, key=means.get) if metric == "accuracy" else min(means, key=means.get)
    best = means[best_lr]
    log(f"{name}: sweep done in {time.perf_counter() - t0:.0f}s, best lr {best_lr:.2e} -> {best:.4f}")

    curves = []
    for s in seeds:
        seed_everything(1000 + s)  # the range test's own seed, not the training seed
        task = builder({})
        curves.append(range_test(task.model, task.train_loader, task.loss_fn, optimizer_name=optimizer))
    sugg = [c.suggest() for c in curves]
    rules = {
        "advisor": [s.suggested_lr for s in sugg],
        "fastai valley": [s.peers["fastai_valley"] for s in sugg],
        "torch-lr-finder steepest": [s.peers["torch_lr_finder_steepest"] for s in sugg],
        "minimum/10": [s.peers["fastai_minimum"] for s in sugg],
    }
    combined = combine(sugg).suggestion.suggested_lr
    # the default of `advisor lr-find --epochs E`: rules/lr_find.yaml's repeats read off their
    # mean curve, lowered for the planned length
    repeats = load_settings().sweep.repeats
    default_curves = curves[:repeats]
    for r in range(len(default_curves), repeats):
        seed_everything(1000 + r)
        task = builder({})
        default_curves.append(range_test(task.model, task.train_loader, task.loss_fn, optimizer_name=optimizer))
    planned = epochs * len(builder({}).train_loader)
    default = apply_horizon(combine_curves(default_curves).suggestion,
                            horizon_correction(planned, default_curves[0].iters))
    rows = []
    cache: dict[tuple[float, int], float] = {}

    def score(lr, seed):
        if lr is None:
            return worst(metric)
        key = (round(lr, 12), seed)
        if key not in cache:
            cache[key] = train(name, lr, seed)
        return cache[key]

    for rule, lrs in rules.items():
        values = [score(lr, s) for lr, s in zip(lrs, seeds)]
        verdicts = [x.verdict for x in sugg] if rule == "advisor" else None
        rows.append(_row(rule, lrs, values, best_lr, best, metric, verdicts))
    values = [score(combined, s) for s in seeds]
    rows.append(_row("advisor --repeats 3 (median)", [combined], values, best_lr, best, metric,
                     [combine(sugg).suggestion.verdict]))
    values = [score(default.suggested_lr, s) for s in seeds]
    rows.append(_row("advisor default (--epochs)", [default.suggested_lr], values, best_lr, best, metric,
                     [default.verdict]))

    # cost: range test vs the same number of plain steps, alternated
    ratios, rt_times, plain_times = [], [], []
    timed_range_test(name, 99), plain_steps(name, 50, 99)  # warm-up, not counted
    for rep in range(7):
        curve, rt = timed_range_test(name, rep)
        pl = plain_steps(name, curve.steps, rep)
        rt_times.append(rt)
        plain_times.append(pl)
        ratios.append(rt / pl)
    log(f"{name}: done in {time.perf_counter() - t0:.0f}s")
    return {"task": name, "kind": kind, "optimizer": optimizer, "epochs": epochs, "metric": metric,
            "best_lr": best_lr, "best": best, "sweep": {f"{k:.3e}": v for k, v in sweep.items()},
            "rows": rows, "cost": {"range_test_s": statistics.median(rt_times),
                                   "plain_s": statistics.median(plain_times),
                                   "ratio": statistics.median(ratios), "steps": curves[0].steps},
            "curves": [{"lrs": c.lrs, "losses": c.losses, "iters": c.iters, "diverged": c.diverged}
                       for c in curves],
            "suggestions": [s.model_dump() for s in sugg]}


def _row(rule, lrs, values, best_lr, best, metric, verdicts):
    finite = [v for v in values if math.isfinite(v)]
    mean = statistics.fmean(values) if len(finite) == len(values) else math.inf
    g = geo(lrs)
    return {"rule": rule, "lrs": lrs, "lr": g, "ratio": (g / best_lr) if g else None, "values": values,
            "metric": mean, "delta": (mean - best), "in_band": in_band(metric, mean, best),
            "verdicts": verdicts}


def print_report(results: list[dict], seconds: float) -> None:
    print()
    print(f"{'task':<21} {'rule':<25} {'LR':>9} {'/best':>6} {'metric':>8} {'best':>8} {'delta':>8}  band")
    for r in results:
        unit = "acc" if r["metric"] == "accuracy" else "mse"
        at_best = r["sweep"][f"{r['best_lr']:.3e}"]
        sd = statistics.stdev(at_best) if len(at_best) > 1 else 0.0
        sd_txt = f"sd {sd * 100:.1f}pt" if r["metric"] == "accuracy" else f"sd {sd / r['best'] * 100:.1f}%"
        print(f"{r['task']:<21} {'sweep best (' + unit + ')':<25} {r['best_lr']:>9.2e} {1:>6.2f} "
              f"{r['best']:>8.4f} {r['best']:>8.4f} {sd_txt:>8}  (seed sd at the best LR)")
        for row in r["rows"]:
            lr = f"{row['lr']:.2e}" if row["lr"] else "none"
            ratio = f"{row['ratio']:.2f}" if row["ratio"] else "-"
            delta = row["delta"] if r["metric"] == "accuracy" else (row["metric"] / r["best"] - 1)
            dtxt = f"{delta * 100:+.1f}pt" if r["metric"] == "accuracy" else \
                (f"{delta * 100:+.1f}%" if delta < 10 else ">+999%")
            metric = f"{row['metric']:>8.4f}" if row["metric"] < 1000 else f"{row['metric']:>8.2g}"
            print(f"{'':<21} {row['rule']:<25} {lr:>9} {ratio:>6} {metric} {r['best']:>8.4f} "
                  f"{dtxt:>8}  {'yes' if row['in_band'] else 'NO'}")
    print()
    print("advisor's default (rules/lr_find.yaml repeats, mean curve, horizon) against the best peer:")
    ok_all = True
    for r in results:
        rows = {row["rule"]: row for row in r["rows"]}
        adv = rows["advisor default (--epochs)"]["metric"]
        peers = [rows[k]["metric"] for k in ("fastai valley", "torch-lr-finder steepest", "minimum/10")]
        best_peer = max(peers) if r["metric"] == "accuracy" else min(peers)
        # "behind": worse than the best peer by more than half the band (0.5 point / 1%)
        tol = 0.005 if r["metric"] == "accuracy" else 0.01 * r["best"]
        behind = better(r["metric"], best_peer, adv) and abs(best_peer - adv) > tol
        band = rows["advisor default (--epochs)"]["in_band"]
        ok_all &= band and not behind
        print(f"  {r['task']:<21} in band: {'yes' if band else 'NO '}   best peer {best_peer:.4f}  advisor {adv:.4f}"
              f"  {'behind' if behind else 'not behind'}")
    print()
    print(f"{'task':<21} {'steps':>5} {'range test s':>12} {'plain steps s':>13} {'ratio':>6}  (goal <= 1.10)")
    for r in results:
        c = r["cost"]
        print(f"{r['task']:<21} {c['steps']:>5} {c['range_test_s']:>12.3f} {c['plain_s']:>13.3f} {c['ratio']:>6.2f}")
    print()
    print(f"goal met on every task: {'yes' if ok_all else 'no'}; total {seconds:.0f}s")


def cuda_check() -> None:
    """The CUDA path once: the demo task and the CNN (batch-norm) on cuda with mixed precision;
    the model must come back to the CPU bit-identical; the loss read back in blocks of 8."""
    from advisor.act import demo
    from advisor.act.device import describe_device, resolve_device

    device = resolve_device("cuda")
    print(f"device: {describe_device(device)}, bf16: {torch.cuda.is_bf16_supported()}")
    for name, builder, optimizer in (("demo", demo.build, "adamw"), ("digits-cnn", digits_cnn, "adam")):
        seed_everything(0)
        task = builder({})
        before = {k: v.clone() for k, v in task.model.state_dict().items()}
        rng = torch.get_rng_state().clone()
        curve = range_test(task.model, task.train_loader, task.loss_fn, optimizer_name=optimizer, device=device)
        same = all(torch.equal(before[k], v) for k, v in task.model.state_dict().items())
        on_cpu = all(p.device.type == "cpu" for p in task.model.parameters())
        s = curve.suggest()
        print(f"{name}: {curve.steps} steps in {curve.seconds:.2f}s on {curve.device}, mixed precision "
              f"{curve.mixed_precision}, stop {curve.stop_reason}; restored bit-identical {same}, back on cpu "
              f"{on_cpu}, rng restored {torch.equal(rng, torch.get_rng_state())}; {s.verdict} {s.suggested_lr:.3g}")
        assert same and on_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--save", type=Path, help="write every number, curve and sweep as JSON")
    parser.add_argument("--cuda-check", action="store_true", help="only run the CUDA path once (needs a GPU)")
    args = parser.parse_args()
    if args.cuda_check:
        return cuda_check()
    torch.set_num_threads(1)
    began = time.perf_counter()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results = [run_task(name, list(range(args.seeds)), log) for name in args.tasks]
    print_report(results, time.perf_counter() - began)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
