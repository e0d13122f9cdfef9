"""The emitted files run in the real tools (issue 17): each plan shape emitted with
`advisor.emit.emit` and run for a few trials with an objective that reports a curve, asserting
that the configurations, the number of runs, the pruning and the concurrency are the plan's.

Optuna: the script's run(objective). W&B: W&B's `sweeps` package (what its controller runs:
next_run, stop_runs), offline. Ray: the module's run(train_fn) on one local Ray (2 CPUs, 2
logical GPUs) shared by the module. A missing tool skips with the reason, and fails under CI=true.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time

import pytest
import yaml

from advisor.emit import emit
from test_emit import load_module, plan_for


def need(module: str, why: str, strict: bool = True):
    """The tool, or a skip with the reason; under CI=true a missing tool of the `tools` extra fails.
    `sweeps` is not in the extra (it pins numpy<2 yet works with numpy 2): .ci/run installs it with
    --no-deps, so under CI it is required too."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if strict and os.environ.get("CI") == "true":
            pytest.fail(f"{module} is missing under CI ({why}): pip install -e '.[tools]'")
        pytest.skip(f"{module} is not installed ({why}): pip install -e '.[tools]'")


def curve(hp: dict, epoch: int, epochs: int) -> float:
    """A learning curve that peaks at learning rate 1e-3; weight decay 0 a little worse than 1e-4."""
    q = 1 - (math.log10(hp["learning_rate"]) + 3) ** 2 / 10
    wd = hp.get("weight_decay")
    if wd is not None:
        q -= 0.02 if wd == 0 else abs(math.log10(wd) + 4) / 50
    return q * (1 - 0.6 ** epoch) * (1 if epoch <= epochs else 0)


def in_plan(plan, hp: dict) -> None:
    for p in plan.params:
        v = hp[p.name]
        if p.distribution == "categorical":
            assert v in p.choices, (p.name, v)
        elif plan.grid:
            continue
        elif p.by:
            lo, hi = p.ranges[hp[p.by]]
            assert lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9), (p.name, v, hp[p.by])
        elif p.zero and v == 0:
            continue
        else:
            assert p.low * (1 - 1e-9) <= v <= p.high * (1 + 1e-9), (p.name, v)


# --------------------------------------------------------------------------- Optuna

def test_optuna_grid_reruns_an_interrupted_point_and_never_leaves_the_grid(tmp_path) -> None:
    optuna = need("optuna", "the emitted Optuna script")
    plan = plan_for("grid-2-params-conditional")
    path = tmp_path / "grid_search.py"
    path.write_text(emit(plan, "optuna", path.name))
    module = load_module(path, path.stem)
    storage = f"sqlite:///{tmp_path / 'grid.db'}"
    ran: list[dict] = []

    def objective(hp, report, stop_at=[4]):
        ran.append(hp)
        if len(ran) == stop_at[0]:
            raise KeyboardInterrupt  # Ctrl-C in the 4th point
        for e in range(1, 4):
            report(curve(hp, e, 3), e)
        return curve(hp, 3, 3)

    with pytest.raises(KeyboardInterrupt):
        module.run(objective, storage=storage, phases=("explore",))
    # a worker killed with -9 leaves its trial RUNNING: simulate one on the 6th point
    study = optuna.load_study(study_name=plan.name, storage=storage)
    zombie = study.ask()
    study.tell(zombie, state=optuna.trial.TrialState.FAIL)
    module.run(objective, storage=storage, phases=("explore",))
    study = optuna.load_study(study_name=plan.name, storage=storage)
    complete = [t.user_attrs["hp"] for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    key = lambda hp: (hp["optimizer"], hp["learning_rate"])  # noqa: E731
    assert sorted(map(key, complete)) == sorted(map(key, plan.grid))  # every point once, nothing else
    for t in study.trials:
        assert "fixed_params" in t.system_attrs or t.number == zombie.number  # no sampler draw ran


def test_optuna_two_workers_share_the_budget_on_a_journal(tmp_path) -> None:
    optuna = need("optuna", "the emitted Optuna script")
    plan = plan_for("parallel-journal")
    assert plan.storage == "journal" and plan.budget.workers == 4
    path = tmp_path / "par_search.py"
    path.write_text(emit(plan, "optuna", path.name))
    module = load_module(path, path.stem)
    journal = str(tmp_path / "par.journal")
    import threading

    def objective(hp, report):
        for e in range(1, 5):
            report(curve(hp, e, 4), e)
            time.sleep(0.005)
        return curve(hp, 4, 4)

    workers = [threading.Thread(target=module.run, args=(objective,),
                                kwargs=dict(storage=journal, phases=("explore",), n_explore=16)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    study = optuna.load_study(study_name=plan.name, storage=module.make_storage(journal))
    # the global budget, not 16 per worker; MaxTrialsCallback is checked after each trial, so each
    # other worker may have one more trial started when the budget is reached (Optuna's behaviour)
    assert 16 <= len(study.trials) <= 17
    states = {t.state.name for t in study.trials}
    assert states <= {"COMPLETE", "PRUNED"} and "PRUNED" in states  # the plan's pruner acted
    for t in study.trials:
        in_plan(plan, t.user_attrs["hp"])


# --------------------------------------------------------------------------- W&B (sweeps)

def _sweep(plan):
    sweeps = need("sweeps", "W&B's sweep logic, offline; pip install --no-deps sweeps (.ci/run does)")
    need("wandb", "W&B's sweep loader")
    from wandb.sdk.launch.sweeps.utils import load_sweep_config  # noqa: F401  (the loader wandb sweep uses)

    config = yaml.safe_load(emit(plan, "wandb", "sweep.yaml"))
    assert sweeps.schema_violations_from_proposed_config(config) == []
    return sweeps, config


def _drive(sweeps, config, epochs: int, cap: int):
    """W&B's controller loop, offline: next_run, run it epoch by epoch, stop_runs after each epoch."""
    runs, hps = [], []
    while len(runs) < cap:
        run = sweeps.next_run(sweeps.SweepConfig(config), runs)
        if run is None:
            break
        hp = {k: v["value"] for k, v in run.config.items()}
        hp.update(hp.pop("planned", {}))
        run.state, run.summary_metrics, run.history = sweeps.RunState.running, {}, []
        run.name = f"run-{len(runs)}"
        runs.append(run)
        for e in range(1, epochs + 1):
            run.history.append({config["metric"]["name"]: curve(hp, e, epochs), "_step": e})
            if "early_terminate" in config and run.name in {
                    r.name for r in sweeps.stop_runs(sweeps.SweepConfig(config), runs)}:
                run.state = sweeps.RunState.killed
                break
        if run.state == sweeps.RunState.running:
            run.state = sweeps.RunState.finished
        run.summary_metrics = run.history[-1]
        hps.append(hp)
    return runs, hps


@pytest.mark.parametrize("key", ["grid-2-params-conditional", "random-50h", "hyperband-1200h"])
def test_wandb_sweep_runs_the_plan(key: str) -> None:
    plan = plan_for(key)
    sweeps, config = _sweep(plan)
    cap = config.get("run_cap", 100)
    runs, hps = _drive(sweeps, config, epochs=plan.budget.epochs or 6, cap=min(cap, 12))
    if plan.grid:  # exactly the planned configurations, not the Cartesian product (report 2.1)
        key_of = lambda hp: json.dumps({k: hp[k] for k in plan.grid[0]}, sort_keys=True)  # noqa: E731
        assert sorted(map(key_of, hps)) == sorted(map(key_of, plan.grid))
    else:
        assert len(runs) == min(cap, 12)
    for hp in hps:
        for p in plan.params:
            if p.zero and hp[p.name] < p.low:  # the file's own rule: below the floor means 0
                hp[p.name] = 0.0
        in_plan(plan, hp)


# --------------------------------------------------------------------------- Ray Tune

@pytest.fixture(scope="module")
def ray_local():
    ray = need("ray", "the emitted Ray Tune module")
    need("ray.tune", "the emitted Ray Tune module")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    yield ray
    ray.shutdown()


def _ray_run(plan, tmp_path, samples: int | None = None, epochs: int = 4, sleep: float = 0.05, run_epochs=None):
    path = tmp_path / "ray_search_mod.py"
    path.write_text(emit(plan, "ray", path.name))
    module = load_module(path, f"ray_mod_{abs(hash(str(tmp_path)))}")
    if samples:
        module.NUM_SAMPLES = samples
    log = tmp_path / "trials.jsonl"

    def train_fn(hp, report, log=str(log), epochs=epochs):
        import ray as _ray

        start = time.time()
        for e in range(1, epochs + 1):
            time.sleep(sleep)
            with open(log, "a") as f:
                f.write(json.dumps({"hp": hp, "epoch": e, "t0": start, "t": time.time(),
                                    "gpus": [str(g) for g in _ray.get_gpu_ids()]}) + "\n")
            report(curve(hp, e, epochs), e)
        return curve(hp, epochs, epochs)

    results = module.run(train_fn, epochs=run_epochs or epochs, storage_path=str(tmp_path / "ray"))
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    trials: dict[str, dict] = {}
    for r in rows:
        t = trials.setdefault(json.dumps(r["hp"], sort_keys=True) + str(r["t0"]), {**r, "epochs": 0})
        t["epochs"], t["end"] = max(t["epochs"], r["epoch"]), r["t"]
    ordered = sorted(trials.values(), key=lambda t: t["t0"])
    spans = [(t["t0"], t["end"]) for t in ordered]
    overlap = max(sum(1 for a, b in spans if a <= s < b) for s, _ in spans)
    return module, results, ordered, overlap


def test_ray_grid_with_a_baseline_runs_the_grid_one_gpu_per_trial(ray_local, tmp_path) -> None:
    plan = plan_for("grid-5h")  # grid + --current, 1 GPU, 1 worker (report 3.2, 3.3, 3.4)
    module, results, trials, overlap = _ray_run(plan, tmp_path)
    assert not results.errors and len(results) == len(plan.grid)
    assert trials[0]["hp"]["learning_rate"] == plan.baseline["learning_rate"]  # the baseline first
    assert sorted(t["hp"]["learning_rate"] for t in trials) == sorted(g["learning_rate"] for g in plan.grid)
    assert all(len(t["gpus"]) == 1 for t in trials)  # one GPU per trial, as planned
    assert overlap == 1  # MAX_CONCURRENT = 1 although Ray has 2 CPUs and 2 GPUs
    # run again on the same storage: the finished experiment is restored, nothing trains again
    # (report 3.9: the module keeps its experiment and resumes it)
    lines = (tmp_path / "trials.jsonl").read_text().count("\n")
    again = module.run(lambda hp, report: pytest.fail("trained again"), storage_path=str(tmp_path / "ray"))
    assert len(again) == len(results) and (tmp_path / "trials.jsonl").read_text().count("\n") == lines


def test_ray_random_with_baseline_zero_and_pruning(ray_local, tmp_path) -> None:
    plan = plan_for("random-50h")  # --current with weight_decay=0, median pruning, 1 worker
    module, results, trials, overlap = _ray_run(plan, tmp_path, samples=8, epochs=6)
    assert not results.errors and len(results) == 8
    assert trials[0]["hp"]["weight_decay"] == 0.0 and trials[0]["hp"]["learning_rate"] == 1e-3
    for t in trials:
        in_plan(plan, t["hp"])
    if plan.pruner.type != "none":
        assert any(t["epochs"] < 6 for t in trials)  # the scheduler stopped some
    assert all(t["epochs"] <= 6 for t in trials) and any(t["epochs"] == 6 for t in trials)
    assert overlap == 1
    assert module.best_hp(results)["seed"] == module.SEED


def test_ray_bayesian_conditional_with_a_partial_baseline(ray_local, tmp_path) -> None:
    from test_emit import make_plan

    plan = make_plan(300, 1.0, epochs=4, current={"learning_rate": 1e-3, "optimizer": "adamw", "weight_decay": 0.0},
                     params=["learning_rate", "optimizer", "batch_size", "weight_decay", "dropout"])
    assert plan.strategy == "bayesian" and plan.param("learning_rate").by == "optimizer"
    module, results, trials, overlap = _ray_run(plan, tmp_path, samples=6)  # report 3.1
    assert not results.errors and len(results) == 6
    first = trials[0]["hp"]
    assert (first["learning_rate"], first["optimizer"], first["weight_decay"]) == (pytest.approx(1e-3), "adamw", 0.0)
    for t in trials:
        in_plan(plan, t["hp"])  # each learning rate inside its optimizer's range (3.8)


def test_ray_assumed_epochs_follow_the_training(ray_local, tmp_path) -> None:
    plan = plan_for("hyperband-1200h-epochs-assumed")  # EPOCHS assumed 20; the training runs 5 (3.5)
    module, results, trials, overlap = _ray_run(plan, tmp_path, samples=4, epochs=5, sleep=0.01)
    assert "assumed" in (tmp_path / "ray_search_mod.py").read_text().split("EPOCHS = ", 1)[1].splitlines()[0]
    assert not results.errors and any(t["epochs"] == 5 for t in trials)


def test_optuna_script_resumes_as_advisor_search_does(tmp_path) -> None:
    """Emitters report 1.5: a trial cut by Ctrl-C or left RUNNING by a kill does not count against
    the budget; the stop rule's decision and the wall-clock start are kept in the study, so running
    the script again adds no trial to a search that has ended and gets no fresh budget."""
    optuna = need("optuna", "the emitted Optuna script")
    plan = plan_for("random-50h")
    path = tmp_path / "resume_search.py"
    path.write_text(emit(plan, "optuna", path.name))
    module = load_module(path, path.stem)
    storage = f"sqlite:///{tmp_path / 'resume.db'}"
    n = module.N_EXPLORE
    calls = {"n": 0}

    def objective(hp, report):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C in the third trial
        for e in range(1, 4):
            report(curve(hp, e, 3), e)
        return curve(hp, 3, 3)

    with pytest.raises(KeyboardInterrupt):
        module.run(objective, storage=storage, phases=("explore",))
    study = optuna.load_study(study_name=plan.name, storage=storage)
    started = study.user_attrs["started"]
    zombie = study.ask()  # what a kill -9 leaves: a trial RUNNING for ever
    module.run(objective, storage=storage, phases=("explore",))
    study = optuna.load_study(study_name=plan.name, storage=storage)
    assert study.user_attrs["started"] == started  # the budget's clock was not restarted
    trials = study.get_trials()
    cut = [t for t in trials if t.user_attrs.get("interrupted")]
    assert {t.number for t in cut} >= {zombie.number} and len(cut) == 2
    assert all(t.state == optuna.trial.TrialState.FAIL for t in cut)
    counted = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("interrupted")]
    assert len(counted) == n or study.user_attrs.get("stopped") == "stale"
    # run once more: a search that ended (budget or stop rule) adds nothing
    before = len(trials)
    module.run(objective, storage=storage, phases=("explore",))
    assert len(optuna.load_study(study_name=plan.name, storage=storage).get_trials()) == before
