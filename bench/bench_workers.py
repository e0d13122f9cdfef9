"""Several workers on one study: trials per minute with 1 and 3 workers, and the storage's own cost per trial.

    nice python bench/bench_workers.py                                   # ~9 minutes on 2 CPU cores
    nice python bench/bench_workers.py --repeats 3 --save bench/results/workers-2cores.txt
    nice python bench/bench_workers.py --part throughput --epochs 5 --repeats 3 --save bench/results/workers-2cores-5epochs.txt
    nice python bench/bench_workers.py --part overhead --storages postgresql --overhead-trials 80

Part 1, throughput (goal: 3 workers >= 1.6x the trials per minute of 1 worker). A task bound by a
sleep (an objective(hp, report) that sleeps --sleep seconds per epoch and reports a value: I/O-like,
the cores are not the limit) searched with the real command,

    python -m advisor search TASK:objective --plan PLAN --storage S --study X --no-stop-rule --top-k 0 --workers K

with the same trial budget, K = 1 and K = 3, on a journal file and on PostgreSQL, alternated
(1, 3, 1, 3 ...) so that the machine's noise falls on both. Reported: the command's wall time
(start-up of every process included), trials per minute over it, and the ratio 3 workers / 1
worker, each repetition against the 1-worker run just before it; also the span from the first
trial's start to the last one's end (the search itself, start-up left out), and when each
process began its first trial. Every worker process pays its start-up (Python, Optuna and
SQLAlchemy imports, then scipy for the QMC sampler in its first trial: ~2.5 s of CPU) while the
first one already runs trials; with 2 cores and trials of 0.6 s that is a large share of a
20-second search, with trials of 1.5 s (--epochs 5) much less.

Part 2, overhead (goal: <= 50 ms per trial). An objective that does nothing but report its
epochs, in this process, on each storage: plain Optuna (the plan's sampler, nothing else: the
storage's own cost) and the same search through advisor.act.search's run (its objective's
bookkeeping, callbacks and phases on top). The time from one trial's objective call to the next
is what is spent per trial (sampling, writing the trial, its parameters, attributes and reported
values, the callbacks); also the time inside the storage's methods (this thread only). The
fastest of --overhead-repeats alternated repetitions (other processes on a shared machine only
add). SQLite, journal file, PostgreSQL, and Optuna's JournalRedisBackend on the Redis server when
the `redis` package is installed and a server answers.

The PostgreSQL server: ADVISOR_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432); a
database of the benchmark's own is created and dropped. Redis: ADVISOR_BENCH_REDIS (default
redis://127.0.0.1:6379), keys under a prefix of the benchmark's own, deleted after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POSTGRES = os.environ.get("ADVISOR_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
REDIS = os.environ.get("ADVISOR_BENCH_REDIS", "redis://127.0.0.1:6379")

TASK = '''
import os, time

STAMPS = []  # (objective called, returned), perf_counter seconds: read by the overhead part


def objective(hp, report):
    """Sleeps BENCH_SLEEP seconds per epoch (I/O-like: no core is busy) and reports a value."""
    began = time.perf_counter()
    delay = float(os.environ.get("BENCH_SLEEP", "0"))
    lr = float(hp["learning_rate"])
    score = 0.0
    for epoch in range(int(hp["epochs"])):
        if delay:
            time.sleep(delay)
        score = 1.0 - abs(__import__("math").log10(lr) + 2.5) / 10.0 * (1.0 - 0.5 ** (epoch + 1))
        report(score, epoch)
    STAMPS.append((began, time.perf_counter()))
    return score


objective.direction = "maximize"
'''

PLAN = """advisor_space: 1
direction: maximize
strategy: random
trials: {trials}
epochs: {epochs}
top_k: 0
pruner: {{type: none}}
baseline: {{learning_rate: 0.001}}
params:
  learning_rate: {{type: float, low: 1.0e-5, high: 1.0e-1, log: true}}
  weight_decay: {{type: float, low: 1.0e-6, high: 1.0e-2, log: true}}
"""


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- servers

def postgres_database() -> tuple[str, callable]:
    """A fresh database on the server -> (URL, drop)."""
    import psycopg

    name = f"advisor_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=3) as con:
        con.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{POSTGRES}/{name}", drop


def postgres_error() -> str | None:
    try:
        import psycopg

        with psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3):
            return None
    except Exception as exc:
        return f"no PostgreSQL at {POSTGRES} ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r})"


def redis_error() -> str | None:
    try:
        import redis
    except ImportError:
        return "the redis package is not installed (pip install redis)"
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
        return None
    except Exception as exc:
        return f"no Redis at {REDIS} ({exc})"


# --------------------------------------------------------------------------- part 1: throughput

def search_command(task: Path, plan: Path, storage: str, study: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "advisor", "search", f"{task}:objective", "--plan", str(plan), "--storage", storage,
            "--study", study, "--no-stop-rule", "--top-k", "0", "--json", "--device", "cpu", "--workers", str(workers)]


def open_study(storage: str, study: str):
    import optuna

    from advisor.act.search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=study, storage=open_storage(storage))


def one_search(task: Path, plan: Path, storage: str, study: str, workers: int, sleep: float) -> dict:
    from advisor.act.search.trials import counts, done_search, is_extra, is_final

    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_SLEEP": str(sleep)}
    began, launched = time.perf_counter(), time.time()
    proc = subprocess.run(search_command(task, plan, storage, study, workers), capture_output=True, text=True,
                          env=env, cwd=ROOT)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"advisor search failed ({proc.returncode}): {proc.stderr[-2000:]}")
    notes = [n for n in json.loads(proc.stdout).get("notes", []) if "worker" in n]
    trials = open_study(storage, study).get_trials(deepcopy=False)
    search = [t for t in trials if not is_final(t) and t.datetime_start and t.datetime_complete]
    span = (max(t.datetime_complete for t in search) - min(t.datetime_start for t in search)).total_seconds()
    done = done_search(trials)
    first: dict[str, float] = {}  # each process's first trial, seconds after the command was launched
    for t in search:
        w = str(t.user_attrs.get("worker"))
        first[w] = min(first.get(w, math.inf), t.datetime_start.timestamp() - launched)
    return {"workers": workers, "wall": wall, "span": span, "done": done, "extra": counts(trials)["extra"],
            "per_worker": len({t.user_attrs.get("worker") for t in search if not is_extra(t)}),
            "tpm": 60.0 * done / wall, "tpm_span": 60.0 * done / span, "notes": notes,
            "first": "/".join(f"{v:.1f}" for v in sorted(first.values()))}


def throughput(args, work: Path) -> list[str]:
    task = work / "sleepy.py"
    task.write_text(TASK)
    plan = work / "plan.yaml"
    plan.write_text(PLAN.format(trials=args.trials, epochs=args.epochs))
    kinds = [k for k in args.storages if k in ("journal", "postgresql")]
    out = [f"## throughput: {args.trials} trials of {args.epochs} epochs x {args.sleep:g} s sleep "
           f"({args.trials * args.epochs * args.sleep:.0f} s of sleep in all), {args.repeats} repetitions, "
           f"{os.cpu_count()} cores",
           "",
           f"{'storage':<11} {'rep':>3} {'workers':>7} {'wall s':>7} {'trials/min':>10} {'ratio':>6} "
           f"{'span s':>7} {'/min(span)':>10} {'ratio':>6} {'counted':>7} {'extra':>5} {'ran':>3}  first trials at s"]
    summary = []
    for kind in kinds:
        if kind == "postgresql" and postgres_error():
            out.append(f"{kind:<11} skipped: {postgres_error()}")
            continue
        ratios, span_ratios, one_tpm, three_tpm = [], [], [], []
        for rep in range(args.repeats):
            rows = {}
            for k in (1, 3):
                study = f"bench-{k}w-{rep}-{uuid.uuid4().hex[:6]}"
                drop = None
                if kind == "journal":
                    storage = str(work / f"{study}.journal")
                else:
                    storage, drop = postgres_database()
                try:
                    log(f"{kind} rep {rep + 1}: {k} worker(s) ...")
                    rows[k] = one_search(task, plan, storage, study, k, args.sleep)
                finally:
                    if drop:
                        drop()
            r1, r3 = rows[1], rows[3]
            ratio, span_ratio = r3["tpm"] / r1["tpm"], r3["tpm_span"] / r1["tpm_span"]
            ratios.append(ratio)
            span_ratios.append(span_ratio)
            one_tpm.append(r1["tpm"])
            three_tpm.append(r3["tpm"])
            for r, shown, shown_span in ((r1, "", ""), (r3, f"{ratio:.2f}", f"{span_ratio:.2f}")):
                out.append(f"{kind:<11} {rep + 1:>3} {r['workers']:>7} {r['wall']:>7.1f} {r['tpm']:>10.1f} {shown:>6} "
                           f"{r['span']:>7.1f} {r['tpm_span']:>10.1f} {shown_span:>6} {r['done']:>7} "
                           f"{r['extra']:>5} {r['per_worker']:>3}  {r['first']}")
                out += [f"    note: {n}" for n in r["notes"]]
        summary.append(f"{kind:<11} 1 worker {statistics.median(one_tpm):.1f} trials/min, 3 workers "
                       f"{statistics.median(three_tpm):.1f}: ratio {statistics.median(ratios):.2f} (median of "
                       f"{len(ratios)}; min {min(ratios):.2f}), search span only {statistics.median(span_ratios):.2f}"
                       f" -> goal >= 1.6: {'met' if statistics.median(ratios) >= 1.6 else 'MISSED'}")
    out += ["", "wall: the whole command (every process's start-up included); span: first trial start to last trial "
            "end; counted: finished trials against the budget; extra: trials started past it, not counted; ran: "
            "processes that ran counted trials; first trials at: when each process's first trial began, seconds "
            "after the command was launched (the other workers' start-up)", ""] + summary
    return out


# --------------------------------------------------------------------------- part 2: overhead per trial

class StorageClock:
    """Time spent in a storage's methods by this thread (patched on the instance; the outermost
    call only). Optuna wraps an RDBStorage in a cache that calls some private methods of it
    (_get_trials, _create_new_trial, _set_trial_param ...): those are timed too."""

    PRIVATE = ("_create_new_trial", "_get_trials", "_set_trial_param", "_get_best_trial_id", "_get_stale_trial_ids")
    SKIP = ("get_heartbeat_interval", "get_failed_trial_callback", "is_heartbeat_enabled",
            "get_heartbeat_stale_trial_callback")

    def __init__(self, storage):
        self.seconds, self.calls, self.depth = 0.0, 0, 0
        me = threading.get_ident()
        for name in dir(type(storage)):
            if (name.startswith("_") and name not in self.PRIVATE) or name in self.SKIP:
                continue
            if callable(getattr(storage, name, None)):
                setattr(storage, name, self._timed(getattr(storage, name), me))

    def _timed(self, fn, me):
        def call(*a, **k):
            if threading.get_ident() != me or self.depth:
                return fn(*a, **k)
            self.depth += 1
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.depth -= 1
                self.seconds += time.perf_counter() - t
                self.calls += 1

        return call


def overhead_one(kind: str, work: Path, trials: int, epochs: int) -> dict:
    import optuna

    from advisor.act.search import Request, prepare, run
    from advisor.act.search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    task = work / f"zero_{kind}_{uuid.uuid4().hex[:6]}.py"  # a module of its own per run: STAMPS starts empty
    task.write_text(TASK)
    plan = work / f"plan_{kind}.yaml"
    plan.write_text(PLAN.format(trials=trials, epochs=epochs))
    drop, cleanup = None, None
    study = f"overhead-{kind}"
    if kind == "sqlite":
        url = f"sqlite:///{work / 'overhead.db'}"
    elif kind == "journal":
        url = str(work / "overhead.journal")
    elif kind == "postgresql":
        url, drop = postgres_database()
    else:  # redis: Optuna's journal on the Redis server; the spec is prepared on a scratch journal
        url = str(work / "scratch.journal")
    os.environ["BENCH_SLEEP"] = "0"
    try:
        prepared = prepare(Request(task=f"{task}:objective", plan=str(plan), storage=url, study=study, top_k=0,
                                   stop_rule=False, device="cpu"))
        storage = prepared.storage or open_storage(url)
        if kind == "redis":
            storage, cleanup = redis_storage()
            url = REDIS
        clock = StorageClock(storage)
        began = time.perf_counter()
        report = run(prepared.spec, url, study, resume=False, device_name="cpu", storage=storage,
                     runner=prepared.runner, audit=False)
        wall = time.perf_counter() - began
        stamps = prepared.runner.fn.__globals__["STAMPS"]
    finally:
        if drop:
            drop()
        if cleanup:
            cleanup()
    return {**_figures(kind, stamps, clock, report.trials["complete"]), "wall": wall}


def optuna_alone(kind: str, work: Path, trials: int, epochs: int) -> dict:
    """The storage's own cost: plain Optuna (the plan's sampler, no pruner, no callbacks) on the
    same storage, the objective only reporting its epochs; nothing of advisor in the loop."""
    import optuna

    from advisor.act.search.space import make_sampler, space_from_file
    from advisor.act.search.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    plan = work / f"plan_alone_{kind}.yaml"
    plan.write_text(PLAN.format(trials=trials, epochs=epochs))
    space = space_from_file(str(plan))
    drop, cleanup = None, None
    if kind == "sqlite":
        storage = open_storage(f"sqlite:///{work / 'alone.db'}")
    elif kind == "journal":
        storage = open_storage(str(work / "alone.journal"))
    elif kind == "postgresql":
        url, drop = postgres_database()
        storage = open_storage(url)
    else:
        storage, cleanup = redis_storage()
    stamps = []

    def objective(trial) -> float:
        began = time.perf_counter()
        lr = trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
        trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        for epoch in range(epochs):
            trial.report(1.0 - abs(__import__("math").log10(lr) + 2.5) / 10.0, epoch)
        stamps.append((began, time.perf_counter()))
        return lr

    try:
        clock = StorageClock(storage)
        study = optuna.create_study(study_name=f"alone-{kind}", storage=storage, direction="maximize",
                                    sampler=make_sampler(space, 0, 1, 0, trials), pruner=optuna.pruners.NopPruner())
        study.optimize(objective, n_trials=trials, gc_after_trial=False)
    finally:
        if drop:
            drop()
        if cleanup:
            cleanup()
    return _figures(kind, stamps, clock, len(stamps))


def redis_storage():
    """Optuna's journal on the Redis server, under a key prefix of its own -> (storage, delete its keys)."""
    import optuna
    import redis
    from optuna.storages.journal import JournalRedisBackend

    prefix = f"advisor-bench-{uuid.uuid4().hex[:8]}"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental"
        storage = optuna.storages.JournalStorage(JournalRedisBackend(REDIS, prefix=prefix))

    def cleanup() -> None:
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)

    return storage, cleanup


def _figures(kind: str, stamps: list, clock: StorageClock, counted: int) -> dict:
    n = len(stamps)
    warm = stamps[2:]  # the first trials pay for one-off costs (imports, the sampler's set-up)
    gaps = [b[0] - a[0] for a, b in zip(warm, warm[1:])]
    own = [end - start for start, end in warm]
    return {"kind": kind, "trials": n, "counted": counted,
            "per_trial_ms": 1000 * statistics.median(gaps), "mean_ms": 1000 * statistics.fmean(gaps),
            "p90_ms": 1000 * sorted(gaps)[int(0.9 * (len(gaps) - 1))],
            "in_objective_ms": 1000 * statistics.median(own),
            "storage_ms": 1000 * clock.seconds / max(1, n), "calls": clock.calls / max(1, n)}


def overhead(args, work: Path) -> list[str]:
    out = [f"## overhead per trial: {args.overhead_trials} trials of {args.epochs} epochs, an objective that only "
           f"reports (no sleep), one process; the fastest of {args.overhead_repeats} alternated repetitions", "",
           f"{'storage':<11} {'loop':<8} {'trials':>6} {'ms/trial':>8} {'mean':>6} {'p90':>6} {'report':>6} "
           f"{'in storage':>10} {'calls':>5}  goal <= 50 ms"]
    summary = []
    for kind in args.storages:
        why = postgres_error() if kind == "postgresql" else redis_error() if kind == "redis" else None
        if why:
            out.append(f"{kind:<11} skipped: {why}")
            continue
        log(f"overhead: {kind} ...")
        runs: dict[str, list] = {"optuna": [], "advisor": []}
        for rep in range(args.overhead_repeats):  # alternated: the machine's load falls on both
            sub = work / f"{kind}-{rep}"
            sub.mkdir()
            runs["optuna"].append(optuna_alone(kind, sub, args.overhead_trials, args.epochs))
            runs["advisor"].append(overhead_one(kind, sub, args.overhead_trials, args.epochs))
        # the least loaded repetition of each: others' processes on a shared machine only add
        rows = {loop: min(rs, key=lambda r: r["per_trial_ms"]) for loop, rs in runs.items()}
        for loop, r in rows.items():
            out.append(f"{kind:<11} {loop:<8} {r['trials']:>6} {r['per_trial_ms']:>8.1f} {r['mean_ms']:>6.1f} "
                       f"{r['p90_ms']:>6.1f} {r['in_objective_ms']:>6.1f} {r['storage_ms']:>10.1f} {r['calls']:>5.1f}  "
                       f"{'met' if r['per_trial_ms'] <= 50 else 'MISSED'}")
        alone, ours = rows["optuna"]["per_trial_ms"], rows["advisor"]["per_trial_ms"]
        summary.append(f"{kind:<11} the storage under plain Optuna {alone:.1f} ms/trial; advisor's search "
                       f"{ours:.1f} ms/trial (+{ours - alone:.1f} ms of advisor's own bookkeeping)")
    out += ["", "loop: optuna = plain Optuna (the plan's sampler, no pruner, no callback) on the storage: the storage's "
            "own cost; advisor = advisor.act.search's run() (its objective, callbacks, phases). ms/trial: median time "
            "from one objective call to the next (trials 3..N), everything done per trial; report: of which inside "
            "the objective (suggestions, report() calls); in storage: time inside the storage's methods per trial "
            "(this thread); calls: storage calls per trial", ""] + summary
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "throughput", "overhead"), default="all")
    ap.add_argument("--trials", type=int, default=30, help="trial budget of each throughput search")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--sleep", type=float, default=0.3, help="seconds of sleep per epoch (throughput)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--overhead-trials", type=int, default=60)
    ap.add_argument("--overhead-repeats", type=int, default=3)
    ap.add_argument("--storages", default="sqlite,journal,postgresql,redis",
                    help="comma-separated: sqlite, journal, postgresql, redis (throughput: journal, postgresql)")
    ap.add_argument("--save", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    args.storages = [s.strip() for s in args.storages.split(",") if s.strip()]
    lines = [f"# bench_workers: {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load "
             f"{os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}",
             f"# {' '.join([Path(sys.argv[0]).name] + sys.argv[1:])}", ""]
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        work = Path(tmp)
        if args.part in ("all", "throughput"):
            lines += throughput(args, work) + [""]
        if args.part in ("all", "overhead"):
            lines += overhead(args, work)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(text)


if __name__ == "__main__":
    main()
