"""advisor search: the trainer, the plan -> Optuna mapping, end-to-end searches (a torch task, a
custom objective, the demo), reliability (a task that raises, one that diverges, SIGKILL and
--resume), bad input (exit 2, nothing of a study lost), the sanity run, workers, lazy imports."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from conftest import ROOT, run_cli

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")

from advisor.act import search as S  # noqa: E402
from advisor.act import train as T  # noqa: E402
from advisor.commands import search as C  # noqa: E402
from advisor.space import Space  # noqa: E402

TASKS = Path(__file__).resolve().parent / "tasks_search"
NORMAL = f"{TASKS / 'normal_task.py'}:build"
RAISING = f"{TASKS / 'raising_task.py'}:build"
DIVERGING = f"{TASKS / 'diverging_task.py'}:build"
OBJECTIVE = f"{TASKS / 'objective_task.py'}:objective"

torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared machine


@pytest.fixture
def cli(monkeypatch):
    """run_cli on an app with `search` and `worker` (registered here, not in advisor/cli.py)."""
    import advisor.cli

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    app.command(name="search", epilog=C.EPILOG)(C.search)
    app.command(name="worker", epilog=C.WORKER_EPILOG)(C.worker)
    monkeypatch.setattr(advisor.cli, "app", app)
    return run_cli


def plan_file(tmp_path: Path, name: str = "plan.yaml", *, strategy: str = "random", trials: int = 10,
              epochs: int = 4, pruner: str = "{type: median, n_startup_trials: 3, n_warmup_steps: 1}",
              params: str | None = None, extra: str = "") -> Path:
    params = params or ("  learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}\n"
                        "  weight_decay: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, zero: true}\n")
    path = tmp_path / name
    path.write_text(f"advisor_space: 1\ndirection: maximize\nstrategy: {strategy}\ntrials: {trials}\n"
                    f"epochs: {epochs}\ntop_k: 2\npruner: {pruner}\nbaseline: {{learning_rate: 0.001}}\n"
                    f"params:\n{params}{extra}")
    return path


def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def trials_of(url: str, study: str):
    st = optuna.load_study(study_name=study, storage=url)
    return st.get_trials(deepcopy=False)


def one_json(out: str) -> dict:
    return json.loads(out)  # stdout carries only the JSON document


# --------------------------------------------------------------------------- the trainer

def test_schedules_compute_what_the_ranges_table_says() -> None:
    total = 100
    assert T.lr_factor(0, total, "constant") == 1.0
    assert T.lr_factor(49, total, "step") == 1.0 and T.lr_factor(50, total, "step") == pytest.approx(0.1)
    assert T.lr_factor(75, total, "step") == pytest.approx(0.01)
    assert T.lr_factor(0, total, "cosine") == pytest.approx(1.0)
    assert T.lr_factor(50, total, "cosine") == pytest.approx(0.5, abs=0.02)
    assert T.lr_factor(100, total, "cosine") == pytest.approx(0.0, abs=1e-9)
    # linear warmup from 0 to the peak, then the schedule over the remaining steps
    warm = T.warmup_steps(0.1, total)
    assert warm == 10 and T.lr_factor(0, total, "cosine", warm) == pytest.approx(0.1)
    assert T.lr_factor(9, total, "cosine", warm) == pytest.approx(1.0)
    assert T.lr_factor(10, total, "cosine", warm) == pytest.approx(1.0)
    assert T.warmup_steps(25, total) == 25  # >= 1: a number of steps
    # one-cycle: up from peak/25 to the peak over 30% of the steps, then down to peak/25/1e4
    assert T.lr_factor(0, total, "onecycle") == pytest.approx(1 / 25)
    assert T.lr_factor(30, total, "onecycle") == pytest.approx(1.0)
    assert T.lr_factor(100, total, "onecycle") == pytest.approx(1 / 25 / 1e4)


def test_config_from_hp_defaults_and_errors() -> None:
    c = T.config_from_hp({})
    assert (c.optimizer, c.learning_rate, c.weight_decay, c.lr_schedule, c.epochs) == ("adamw", 1e-3, 0.01, "cosine", 10)
    sgd = T.config_from_hp({"optimizer": "SGD", "nesterov": True, "epochs": 3})
    assert sgd.optimizer == "sgd" and sgd.momentum == 0.9 and sgd.nesterov and sgd.learning_rate == 0.1
    for bad, words in (({"optimizer": "lion"}, "optimizer"), ({"learning_rate": -1}, "learning_rate"),
                       ({"lr_schedule": "poly"}, "lr_schedule"), ({"momentum": 1.5}, "momentum"),
                       ({"optimizer": "sgd", "momentum": 0.0, "nesterov": True}, "nesterov")):
        with pytest.raises(T.TrialError, match=words):
            T.config_from_hp(bad)


@pytest.mark.parametrize("hp", [
    {"optimizer": "sgd", "learning_rate": 0.05, "nesterov": True, "lr_schedule": "step"},
    {"optimizer": "adam", "learning_rate": 3e-3, "lr_schedule": "onecycle"},
    {"optimizer": "adamw", "learning_rate": 3e-3, "warmup": 0.2, "grad_clip": 0.5},
    {"optimizer": "rmsprop", "learning_rate": 1e-3, "momentum": 0.5, "lr_schedule": "constant"},
])
def test_trainer_trains_with_each_optimizer_and_reports_every_epoch(hp) -> None:
    sys.path.insert(0, str(TASKS))
    import normal_task

    reported = []
    task = normal_task.build({"batch_size": 64})
    cfg = T.config_from_hp({**hp, "epochs": 3})
    result = T.train(task, cfg, report=lambda v, e: reported.append((e, v)), hp=hp)
    assert [e for e, _ in reported] == [0, 1, 2] and result.epochs == 3
    assert 0.0 <= result.value <= 1.0 and result.history[-1] == result.value
    assert all(math.isfinite(x) for x in result.train_loss)
    if "grad_clip" in hp:
        assert result.clipped_share is not None and 0 <= result.clipped_share <= 1


def test_trainer_stops_at_once_on_a_non_finite_loss() -> None:
    sys.path.insert(0, str(TASKS))
    import diverging_task

    task = diverging_task.build({})
    with pytest.raises(T.Diverged) as info:
        T.train(task, T.config_from_hp({"optimizer": "sgd", "learning_rate": 5.0, "momentum": 0.0, "epochs": 5}))
    assert info.value.epoch == 0 and "non-finite" in info.value.reason


def test_trainer_turns_cuda_out_of_memory_into_a_batch_size_hint() -> None:
    class Hungry(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 3)

        def forward(self, x):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    sys.path.insert(0, str(TASKS))
    import normal_task

    task = normal_task.build({"batch_size": 128})
    task.model = Hungry()
    with pytest.raises(T.OutOfMemory, match="batch_size=128.*lower batch_size"):
        T.train(task, T.config_from_hp({"epochs": 1}), hp={"batch_size": 128})


# --------------------------------------------------------------------------- the plan -> Optuna

def _space(**kw) -> Space:
    base = {"strategy": "random", "trials": 20, "epochs": 10, "params": {
        "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "weight_decay": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True, "zero": True},
        "batch_size": {"type": "categorical", "choices": [32, 64]}}}
    base.update(kw)
    return Space.model_validate(base)


def test_samplers_and_pruners_from_the_plan_with_every_argument_explicit() -> None:
    kind, args = S.sampler_spec(_space(sampler={"type": "QMCSampler", "qmc_type": "sobol", "scramble": True}), 7)
    assert kind == "QMCSampler" and args["seed"] == 7 and args["scramble"] is True
    assert args["independent_sampler"] == ("RandomSampler", {"seed": 7})
    kind, args = S.sampler_spec(_space(strategy="bayesian"), 0, workers=4, index=2)
    assert kind == "TPESampler" and args["multivariate"] is True and args["group"] is True
    assert args["constant_liar"] is True and args["seed"] == 2 and args["n_startup_trials"] == 10
    grid = _space(strategy="grid", params={"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True,
                                                             "choices": [1e-4, 1e-3, 1e-2]},
                                           "weight_decay": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True,
                                                            "zero": True, "choices": [0.0, 1e-3, 1e-1]}})
    kind, args = S.sampler_spec(grid, 0)
    assert kind == "GridSampler" and args["search_space"]["weight_decay"] == [pytest.approx(1e-4), 1e-3, 1e-1]
    assert isinstance(S.make_sampler(grid, 0), optuna.samplers.GridSampler)
    assert S.pruner_spec(_space(pruner={"type": "median", "n_startup_trials": 5, "n_warmup_steps": 2}), 10) == \
        ("MedianPruner", {"n_startup_trials": 5, "n_warmup_steps": 2, "interval_steps": 1, "n_min_trials": 1})
    kind, args = S.pruner_spec(_space(pruner={"type": "hyperband"}), 27)
    assert kind == "HyperbandPruner" and args["max_resource"] == 27 and args["bootstrap_count"] == 0
    assert isinstance(S.make_pruner(_space(pruner={"type": "patient", "patience": 3}), 10), optuna.pruners.PatientPruner)
    assert S.pruner_spec(_space(), 10)[0] == "NopPruner"


def test_suggest_decodes_zero_and_conditional_ranges_and_to_params_encodes_them() -> None:
    space = _space(params={
        "optimizer": {"type": "categorical", "choices": ["sgd", "adamw"]},
        "learning_rate": {"type": "float", "log": True, "by": "optimizer",
                          "ranges": {"sgd": [1e-3, 0.5], "adamw": [1e-5, 1e-2]}},
        "weight_decay": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True, "zero": True}})
    hp = {"optimizer": "adamw", "learning_rate": 3e-4, "weight_decay": 0.0}
    params = S.to_params(hp, space)
    assert params == {"optimizer": "adamw", "learning_rate_adamw": 3e-4, "weight_decay": pytest.approx(1e-5)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(params)
    trial = study.ask()
    assert S.suggest(trial, space) == hp
    seen = set()
    for _ in range(30):
        got = S.suggest(study.ask(), space)
        lo, hi = {"sgd": (1e-3, 0.5), "adamw": (1e-5, 1e-2)}[got["optimizer"]]
        assert lo <= got["learning_rate"] <= hi
        assert got["weight_decay"] == 0.0 or 1e-4 <= got["weight_decay"] <= 1e-1
        seen.add(got["weight_decay"] == 0.0)
    assert seen == {True, False}


# --------------------------------------------------------------------------- searches end to end

def test_search_a_torch_task_end_to_end_json(cli, tmp_path) -> None:
    plan = plan_file(tmp_path, trials=8, epochs=3, params=(
        "  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\n"
        "  batch_size: {type: categorical, choices: [32, 64]}\n"
        "  dropout: {type: float, low: 0.0, high: 0.5}\n"))
    url = storage(tmp_path)
    r = cli("search", NORMAL, "--plan", plan, "--storage", url, "--study", "s1", "--json", "--current", "bs=64")
    assert r.code == 0, r.err
    assert r.err == ""  # no progress bar off a terminal, no Optuna log lines
    doc = one_json(r.out)
    assert doc["schema_version"] == "advisor.search/1" and doc["direction"] == "maximize"
    assert doc["sampler"]["type"] == "QMCSampler" and doc["pruner"]["type"] == "MedianPruner"
    c = doc["trials"]
    assert c["total"] == 8 and c["complete"] + c["pruned"] + c["failed"] == 8
    assert doc["baseline"]["number"] == 0 and doc["baseline"]["params"]["learning_rate"] == 0.001
    assert doc["baseline"]["params"]["batch_size"] == 64
    assert set(doc["best"]) >= {"value", "params"} and 0 < doc["best"]["value"] <= 1
    assert len(doc["final"]) == 2
    for f in doc["final"]:
        assert f["seeds"] == [1, 2, 3] and len(f["values"]) == 3 and f["std"] >= 0
        assert f["mean"] == pytest.approx(sum(f["values"]) / 3)
    assert isinstance(doc["audit"], list)
    assert doc["epochs_used"] == doc["epochs_search"] + doc["epochs_final"] and doc["epochs_final"] == 2 * 3 * 3
    planned = 8 * 3
    assert doc["epochs_search"] + doc["epochs_saved_by_pruning"] == planned
    # the study is plain Optuna: every trial carries its hyperparameters and epochs
    ts = trials_of(url, "s1")
    assert ts[0].user_attrs["baseline"] is True and ts[0].params["learning_rate"] == 0.001
    assert all("hp" in t.user_attrs and "epochs" in t.user_attrs for t in ts)
    assert sum(1 for t in ts if t.user_attrs.get("final")) == 6


def test_terminal_output_names_best_final_and_resume(cli, tmp_path) -> None:
    plan = plan_file(tmp_path, trials=6, epochs=3)
    r = cli("search", OBJECTIVE, "--plan", plan, "--storage", storage(tmp_path), "--study", "t1")
    assert r.code == 0, r.err
    for words in ("Best", "Baseline #0", "Final: top 2", "saved by pruning", "optuna-dashboard"):
        assert words in r.out


def test_demo_runs_end_to_end(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli("search", "--demo", "--trials", "8", "--top-k", "1", "--json")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    assert doc["task"] == "demo" and doc["trials"]["total"] == 8 and doc["best"]["value"] > 0.8
    assert doc["strategy"] == "bayesian" and doc["pruner"]["type"] == "SuccessiveHalvingPruner"  # P104, P202
    assert [ph["name"] for ph in doc["phases"]] == ["explore", "refine", "final"]
    assert set(doc["best"]["params"]) == {"learning_rate", "weight_decay", "dropout", "batch_size"}
    assert (tmp_path / "advisor-search.db").is_file()


def test_budget_and_params_make_the_plan_through_advisor_plan(cli, tmp_path) -> None:
    r = cli("search", NORMAL, "--budget", "30m", "--params", "lr,wd", "--epochs", "2", "--top-k", "0",
            "--storage", storage(tmp_path), "--study", "b", "--json")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    # under an hour of compute the plan tunes the learning rate by hand (P101): 5 values, no pruning
    assert doc["strategy"] == "manual" and doc["sampler"]["type"] == "GridSampler"
    assert doc["trials"]["total"] == 5 and set(doc["best"]["params"]) == {"learning_rate"}
    assert doc["budget"]["timeout_s"] == pytest.approx(1800, rel=0.01)
    assert any("measured" in n for n in doc["notes"]) and any("weight_decay" in n for n in doc["notes"])


def test_custom_objective_reports_and_is_pruned(cli, tmp_path) -> None:
    plan = plan_file(tmp_path, trials=14, epochs=5, pruner="{type: median, n_startup_trials: 3, n_warmup_steps: 0}")
    url = storage(tmp_path)
    r = cli("search", OBJECTIVE, "--plan", plan, "--storage", url, "--study", "o1", "--json", "--top-k", "0")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    assert doc["trials"]["pruned"] >= 1 and doc["final"] == []
    assert doc["epochs_saved_by_pruning"] > 0
    assert doc["best"]["value"] > 0.8  # near the peak at lr 3e-3
    ts = trials_of(url, "o1")
    pruned = [t for t in ts if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.user_attrs["epochs"] == len(t.intermediate_values) < 5 for t in pruned)


def test_seed_makes_a_single_process_search_reproducible(tmp_path) -> None:
    space = _space(pruner={"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
                   sampler={"type": "QMCSampler", "qmc_type": "sobol", "scramble": True}, trials=6, epochs=2)
    runs = []
    for i in range(2):
        spec = S.SearchSpec(task=NORMAL, space=space.to_yaml_dict(), trials=6, epochs=2, seed=3, top_k=0,
                            direction="maximize")
        S.run(spec, storage(tmp_path), f"r{i}", resume=False, device_name="cpu", audit=False)
        runs.append([(t.params, t.value, t.state) for t in trials_of(storage(tmp_path), f"r{i}")])
    assert runs[0] == runs[1]


def test_grid_plan_runs_every_point_once_plus_the_baseline(cli, tmp_path) -> None:
    plan = plan_file(tmp_path, strategy="grid", trials=4, epochs=2, pruner="{type: none}", params=(
        "  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, choices: [1.0e-4, 1.0e-3, 1.0e-2]}\n"
        "  weight_decay: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, zero: true, choices: [0.0, 0.01]}\n"))
    url = storage(tmp_path)
    r = cli("search", OBJECTIVE, "--plan", plan, "--storage", url, "--study", "g1", "--json", "--top-k", "0")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    assert doc["sampler"]["type"] == "GridSampler" and doc["trials"]["total"] == 7
    searched = {(t.user_attrs["hp"]["learning_rate"], t.user_attrs["hp"]["weight_decay"])
                for t in trials_of(url, "g1") if not t.user_attrs.get("baseline")}
    assert searched == {(lr, wd) for lr in (1e-4, 1e-3, 1e-2) for wd in (0.0, 0.01)}


def test_stop_rule_ends_a_search_that_no_longer_improves(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ADVISOR_TEST_CONSTANT", "1")
    plan = plan_file(tmp_path, trials=30, epochs=1, pruner="{type: none}",
                     extra="stop: {min_gain_per_trial: 0.001, stale_trials: 4}\n")
    r = cli("search", OBJECTIVE, "--plan", plan, "--storage", storage(tmp_path), "--study", "st", "--json",
            "--top-k", "0")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    # the stale explore phase moves on to refine, whose stop rule ends the search: 5 trials each
    assert doc["stopped_by"] == "stale" and doc["trials"]["total"] == 10
    assert [(ph["name"], ph["trials"]) for ph in doc["phases"]] == [("explore", 5), ("refine", 5)]


# --------------------------------------------------------------------------- reliability

def test_a_task_that_raises_fails_those_trials_and_the_search_goes_on(cli, tmp_path) -> None:
    plan = plan_file(tmp_path, trials=10, epochs=2, pruner="{type: none}", params=(
        "  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
        "  dropout: {type: float, low: 0.0, high: 0.6}\n"
        "  batch_size: {type: categorical, choices: [32, 64]}\n"))
    url = storage(tmp_path)
    r = cli("search", RAISING, "--plan", plan, "--storage", url, "--study", "x", "--json", "--top-k", "1")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    c = doc["trials"]
    assert c["failed"] >= 2 and c["complete"] >= 1 and c["total"] == 10
    failed = [t for t in trials_of(url, "x") if t.state == optuna.trial.TrialState.FAIL]
    for t in failed:  # each with the message of its own failure
        hp, reason = t.user_attrs["hp"], t.user_attrs["fail_reason"]
        if hp["dropout"] > 0.3:
            assert "build(hp) raised raising_task.py:" in reason and "ValueError: dropout" in reason
        else:
            assert hp["batch_size"] == 64 and "training epoch 1 failed" in reason and "RuntimeError" in reason
    assert {f["number"] for f in doc["failures"]} == {t.number for t in failed}


def test_a_diverging_configuration_is_pruned_at_once_with_its_reason(cli, tmp_path) -> None:
    plan = plan_file(tmp_path, trials=8, epochs=3, pruner="{type: none}",
                     params="  learning_rate: {type: float, low: 1.0e-4, high: 1.0, log: true}\n",
                     extra="fixed: {optimizer: sgd, momentum: 0.0}\n")
    plan.write_text(plan.read_text().replace("direction: maximize", "direction: minimize"))
    url = storage(tmp_path)
    r = cli("search", DIVERGING, "--plan", plan, "--storage", url, "--study", "d", "--json", "--top-k", "0")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    assert doc["direction"] == "minimize"
    ts = trials_of(url, "d")
    diverged = [t for t in ts if t.user_attrs.get("diverged")]
    assert diverged and all(t.state == optuna.trial.TrialState.PRUNED for t in diverged)
    assert all(t.user_attrs["epochs"] <= 1 and "non-finite" in t.user_attrs["pruned_reason"] for t in diverged)
    assert all(t.user_attrs["hp"]["learning_rate"] > 1e-3 for t in diverged)
    assert all(math.isnan(list(t.intermediate_values.values())[-1]) for t in diverged)
    assert doc["trials"]["complete"] >= 1 and doc["best"]["params"]["learning_rate"] < 1e-2


KILLER = r"""
import sys, typer
sys.argv = ["advisor", *sys.argv[1:]]
import advisor.cli
from advisor.commands import search as C
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command(name="search")(C.search)
app.command(name="worker")(C.worker)
advisor.cli.app = app
advisor.cli.main()
"""


def _finished(url: str, study: str) -> list:
    try:
        con = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=5)
        try:
            return con.execute("SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                               "WHERE s.study_name = ? AND t.state IN ('COMPLETE', 'PRUNED', 'FAIL')",
                               (study,)).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


MID_TRIAL_OBJECTIVE = """
import importlib.util
import os
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_mid_trial_objective_task", {source!r})
_task = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_task)
_calls = 0


def objective(hp, report):
    \"\"\"objective_task's objective; in a process with ADVISOR_TEST_MID_TRIAL set, the {at}th trial
    it runs stops after its first epoch: it creates that marker file and waits there (up to 120 s)
    for the test to stop the process.\"\"\"
    global _calls
    _calls += 1
    marker = os.environ.get("ADVISOR_TEST_MID_TRIAL")
    if not marker or _calls != {at}:
        return _task.objective(hp, report)

    def held(value, epoch):
        report(value, epoch)
        Path(marker).touch()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.02)

    return _task.objective(hp, held)


objective.direction = "maximize"
"""


def _stopped_mid_trial(tmp_path: Path, monkeypatch, at: int, *args: str) -> tuple[subprocess.Popen, str]:
    """`advisor search <a task held mid-trial> *args` in a process of its own, once its trial `at`
    (1 = its first) has reported an epoch and waits there: no timing decides where the signal lands."""
    task = tmp_path / "mid_trial_task.py"
    task.write_text(MID_TRIAL_OBJECTIVE.format(source=str(TASKS / "objective_task.py"), at=at))
    marker = tmp_path / "mid-trial"
    monkeypatch.delenv("ADVISOR_TEST_MID_TRIAL", raising=False)  # the resume in this process runs freely
    monkeypatch.delenv("ADVISOR_TEST_DELAY", raising=False)
    env = {**os.environ, "ADVISOR_TEST_MID_TRIAL": str(marker), "PYTHONPATH": str(ROOT)}
    # A shell runs a background job with SIGINT ignored, and a child inherits that (Python then
    # installs no KeyboardInterrupt): the search gets Ctrl-C as a user's terminal would deliver it.
    proc = subprocess.Popen([sys.executable, "-c", KILLER, "search", f"{task}:objective", *args],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if not marker.exists():
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the search never reached trial {at} (exit {proc.returncode}): {err}")
    return proc, f"{task}:objective"


def test_sigkill_mid_search_then_resume_loses_no_finished_trial(cli, tmp_path, monkeypatch) -> None:
    plan = plan_file(tmp_path, trials=12, epochs=4)
    url = storage(tmp_path)
    proc, task = _stopped_mid_trial(tmp_path, monkeypatch, 5, "--plan", str(plan), "--storage", url, "--study", "k",
                                    "--top-k", "1")
    proc.send_signal(signal.SIGKILL)  # inside the fifth trial, after its first epoch
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    before = {t.number: (t.state, t.value, dict(t.params)) for t in trials_of(url, "k")
              if t.state.is_finished()}
    running = [t.number for t in trials_of(url, "k") if t.state == optuna.trial.TrialState.RUNNING]
    assert len(before) == 4 and running == [4]  # killed mid-trial
    r = cli("search", task, "--storage", url, "--study", "k", "--resume", "--json")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    after = {t.number: t for t in trials_of(url, "k")}
    for number, (state, value, params) in before.items():  # every finished trial is still there, unchanged
        assert (after[number].state, after[number].value, dict(after[number].params)) == (state, value, params)
    for number in running:  # the killed trial: failed, marked interrupted, not counted as done
        assert after[number].state == optuna.trial.TrialState.FAIL and after[number].user_attrs["interrupted"]
    c = doc["trials"]
    assert c["complete"] + c["pruned"] + c["failed"] == c["total"] == len([t for t in after.values()
                                                                           if not t.user_attrs.get("final")])
    assert c["running"] == 0 and c["interrupted"] == len(running)
    assert c["total"] - c["interrupted"] == 12  # the budget holds across the resume
    assert doc["resumed"] and any("interrupted" in n for n in doc["notes"])
    assert len(doc["final"]) == 1 and len(doc["final"][0]["values"]) == 3


def test_ctrl_c_saves_every_finished_trial_and_says_how_to_resume(cli, tmp_path, monkeypatch) -> None:
    plan = plan_file(tmp_path, trials=30, epochs=4)
    url = storage(tmp_path)
    proc, _ = _stopped_mid_trial(tmp_path, monkeypatch, 3, "--plan", str(plan), "--storage", url, "--study", "c")
    proc.send_signal(signal.SIGINT)  # inside the third trial, after its first epoch
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    ts = trials_of(url, "c")
    assert not [t for t in ts if t.state == optuna.trial.TrialState.RUNNING]
    assert len([t for t in ts if t.state.is_finished() and not t.user_attrs.get("interrupted")]) == 2
    cut = [t for t in ts if t.user_attrs.get("interrupted")]
    assert len(cut) == 1 and cut[0].state == optuna.trial.TrialState.FAIL and cut[0].number == 2
    # resumed without TASK: the study knows its task
    r = cli("search", "--storage", url, "--study", "c", "--resume", "--trials", "6", "--top-k", "0", "--json")
    assert r.code == 0, r.err
    assert one_json(r.out)["trials"]["total"] == 7  # 6 counted + the interrupted one


OWNERLESS = r"""
import sys
import time

import optuna

from advisor.act.search.trials import working

study = optuna.load_study(study_name=sys.argv[2], storage=sys.argv[1])
with working(study):
    trial = study.ask()  # RUNNING; the process dies before it records itself as the trial's worker
    print(trial.number, flush=True)
    time.sleep(120)
"""


def test_a_trial_killed_before_it_recorded_its_worker_is_failed_by_the_resume_at_once(cli, tmp_path) -> None:
    from advisor.act.search.trials import fail_stale

    plan = plan_file(tmp_path, trials=3, epochs=2)
    url = storage(tmp_path)
    assert cli("search", OBJECTIVE, "--plan", plan, "--storage", url, "--study", "o", "--top-k", "0").code == 0
    proc = subprocess.Popen([sys.executable, "-c", OWNERLESS, url, "o"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    number = int(proc.stdout.readline() or -1)
    assert number == 3, proc.stderr.read()
    st = optuna.load_study(study_name="o", storage=url)
    # its process lives: the trial may be about to get its worker, it is left alone
    assert fail_stale(st, st._storage) == []
    [t] = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert "worker" not in t.user_attrs
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    began = time.monotonic()
    r = cli("search", OBJECTIVE, "--storage", url, "--study", "o", "--resume", "--trials", "4", "--top-k", "0",
            "--json")
    assert r.code == 0, r.err
    assert time.monotonic() - began < 60
    doc = one_json(r.out)
    t = {t.number: t for t in trials_of(url, "o")}[number]
    assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["interrupted"]
    c = doc["trials"]
    assert c["running"] == 0 and c["interrupted"] == 1 and c["total"] - c["interrupted"] == 4
    assert any(f"#{number}" in n and "interrupted" in n for n in doc["notes"]), doc["notes"]
    # a study without the register of processes (plain Optuna): the grace period still applies
    plain = optuna.create_study()
    plain.ask()
    assert fail_stale(plain, plain._storage) == []


def test_ctrl_c_before_a_trial_records_its_worker_leaves_no_trial_running(tmp_path, monkeypatch) -> None:
    space = _space(pruner={"type": "none"}, trials=6, epochs=2)
    spec = S.SearchSpec(task=OBJECTIVE, space=space.to_yaml_dict(), trials=6, epochs=2, top_k=0)
    sampler = type(S.make_sampler(space, 0))
    calls = {"n": 0}
    real = sampler.before_trial

    def interrupted_third(self, study, trial):  # Ctrl-C inside study.ask(): the trial exists, no worker yet
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, study, trial)

    monkeypatch.setattr(sampler, "before_trial", interrupted_third)
    with pytest.raises(KeyboardInterrupt):
        S.run(spec, storage(tmp_path), "i", resume=False, device_name="cpu", audit=False)
    ts = trials_of(storage(tmp_path), "i")
    assert [t.state for t in ts] == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.FAIL]
    assert ts[2].user_attrs["interrupted"] and "worker" not in ts[2].user_attrs


def test_timeout_stops_starting_trials(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ADVISOR_TEST_DELAY", "0.05")
    plan = plan_file(tmp_path, trials=100, epochs=4)
    r = cli("search", OBJECTIVE, "--plan", plan, "--storage", storage(tmp_path), "--study", "to", "--timeout", "1s",
            "--top-k", "0", "--json")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    assert doc["stopped_by"] == "timeout" and 1 <= doc["trials"]["total"] < 100


def test_a_task_that_always_fails_stops_the_search_with_one_line(cli, tmp_path) -> None:
    plan = plan_file(tmp_path, trials=20, epochs=2, params="  dropout: {type: float, low: 0.35, high: 0.6}\n")
    url = storage(tmp_path)
    msg = _one_line_error(cli("search", RAISING, "--plan", plan, "--storage", url, "--study", "f"))
    assert "first 5 trials all failed" in msg and "dropout" in msg
    assert len(trials_of(url, "f")) == 5


def test_resume_with_a_higher_budget_continues_and_reruns_the_finals(cli, tmp_path) -> None:
    plan = plan_file(tmp_path, trials=5, epochs=2)
    url = storage(tmp_path)
    assert cli("search", OBJECTIVE, "--plan", plan, "--storage", url, "--study", "r", "--top-k", "1").code == 0
    r = cli("search", OBJECTIVE, "--plan", plan, "--storage", url, "--study", "r", "--resume", "--trials", "8",
            "--json")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    assert doc["trials"]["total"] == 8 and doc["stopped_by"] == "budget"
    assert doc["final"][0]["search_value"] == doc["best"]["value"]


# --------------------------------------------------------------------------- bad input: exit 2, one line

def _one_line_error(r) -> str:
    assert r.code == 2, (r.code, r.out, r.err)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("advisor: error:"), r.err
    assert r.out == ""
    return lines[0]


def test_invalid_plan_file_is_one_line_exit_2(cli, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("advisor_space: 1\nstrategy: sometimes\nparams:\n  lr: {type: float, low: 1, high: 2}\n")
    assert "strategy" in _one_line_error(cli("search", OBJECTIVE, "--plan", bad, "--storage", storage(tmp_path)))
    bad.write_text("advisor_space: 1\nparams:\n  weight_decay: {type: float, low: 0.0, high: 0.1, log: true}\n")
    assert "log range" in _one_line_error(cli("search", OBJECTIVE, "--plan", bad, "--storage", storage(tmp_path)))
    bad.write_text("params: [unclosed\n")
    assert "YAML" in _one_line_error(cli("search", OBJECTIVE, "--plan", bad))
    assert "no such file" in _one_line_error(cli("search", OBJECTIVE, "--plan", tmp_path / "missing.yaml"))
    assert not (tmp_path / "runs.db").exists()


def test_unreachable_storage_fails_fast_in_one_line(cli, tmp_path) -> None:
    plan = plan_file(tmp_path)
    began = time.monotonic()
    msg = _one_line_error(cli("search", OBJECTIVE, "--plan", plan, "--storage",
                              "postgresql://advisor:secret@127.0.0.1:1/optuna"))
    assert "storage" in msg and "secret" not in msg
    msg = _one_line_error(cli("search", OBJECTIVE, "--plan", plan, "--storage", "sqlite:////no/such/folder/x.db"))
    assert "does not exist" in msg
    notdb = tmp_path / "notes.db"
    notdb.write_text("hello")
    assert "not a SQLite database" in _one_line_error(cli("search", OBJECTIVE, "--plan", plan, "--storage", notdb))
    assert time.monotonic() - began < 20


def test_a_study_with_a_different_space_is_refused_and_left_untouched(cli, tmp_path) -> None:
    url = storage(tmp_path)
    assert cli("search", OBJECTIVE, "--plan", plan_file(tmp_path, trials=4, epochs=2), "--storage", url,
               "--study", "s", "--top-k", "0").code == 0
    db = tmp_path / "runs.db"
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    before = [(t.number, t.state, t.value, t.params) for t in trials_of(url, "s")]
    other = plan_file(tmp_path, "other.yaml", trials=4, epochs=2,
                      params="  learning_rate: {type: float, low: 1.0e-4, high: 1.0, log: true}\n")
    msg = _one_line_error(cli("search", OBJECTIVE, "--plan", other, "--storage", url, "--study", "s"))
    assert "different space" in msg and "learning_rate" in msg
    msg = _one_line_error(cli("search", OBJECTIVE, "--plan", other, "--storage", url, "--study", "s", "--resume"))
    assert "different space" in msg
    msg = _one_line_error(cli("search", OBJECTIVE, "--plan", plan_file(tmp_path, trials=4, epochs=2), "--storage",
                              url, "--study", "s"))
    assert "--resume" in msg  # same plan, no --resume: say how to continue
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert [(t.number, t.state, t.value, t.params) for t in trials_of(url, "s")] == before


def test_other_bad_options_are_one_line(cli, tmp_path) -> None:
    plan = plan_file(tmp_path)
    assert "TASK" in _one_line_error(cli("search"))
    assert "not both" in _one_line_error(cli("search", OBJECTIVE, "--demo"))
    assert "SQLite" in _one_line_error(cli("search", OBJECTIVE, "--plan", plan, "--workers", "2",
                                           "--storage", storage(tmp_path)))
    assert "no such file" in _one_line_error(cli("search", OBJECTIVE, "--storage", storage(tmp_path),
                                                 "--study", "nope", "--resume"))
    sqlite3.connect(tmp_path / "runs.db").close()
    assert "no such study" in _one_line_error(cli("search", OBJECTIVE, "--storage", storage(tmp_path),
                                                  "--study", "nope", "--resume"))
    assert "task file not found" in _one_line_error(cli("search", "missing.py:build", "--plan", plan))
    assert "contradicts" in _one_line_error(cli("search", NORMAL, "--plan", plan, "--direction", "minimize",
                                                "--storage", storage(tmp_path)))


# --------------------------------------------------------------------------- the sanity run

def test_sanity_passes_on_a_sound_task(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli("search", NORMAL, "--params", "lr,dropout", "--trials", "20", "--sanity", "--json")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    assert doc["verdict"] == "ok" and len(doc["configs"]) == 5 and doc["epochs"] == 2
    codes = {f["code"] for f in doc["findings"]}
    assert "S111" in codes and "S110" in codes
    assert not (tmp_path / "advisor-search.db").exists()  # nothing stored


def test_sanity_finds_crashes_and_divergence_before_the_search(cli, tmp_path) -> None:
    plan = plan_file(tmp_path, params="  dropout: {type: float, low: 0.35, high: 0.6}\n"
                                      "  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    r = cli("search", RAISING, "--plan", plan, "--sanity", "--json")
    assert r.code == 1
    doc = one_json(r.out)
    assert doc["verdict"] == "fix-first" and "S104" in {f["code"] for f in doc["findings"]}
    plan = plan_file(tmp_path, "div.yaml", params="  learning_rate: {type: float, low: 1.0, high: 10.0, log: true}\n",
                     extra="fixed: {optimizer: sgd, momentum: 0.0}\n")
    plan.write_text(plan.read_text().replace("direction: maximize", "direction: minimize"))
    r = cli("search", DIVERGING, "--plan", plan, "--sanity")
    assert r.code == 1 and "S105" in r.out and "every-configuration-diverges" in r.out


def test_sanity_warns_when_an_objective_never_reports(cli, tmp_path) -> None:
    plan = plan_file(tmp_path)
    r = cli("search", f"{TASKS / 'objective_task.py'}:unreported", "--plan", plan, "--sanity", "--json")
    assert r.code == 0, r.err  # a warning, not an error
    codes = {f["code"] for f in one_json(r.out)["findings"]}
    assert "S103" in codes and "S104" not in codes


def test_sanity_rules_read_the_facts() -> None:
    from advisor.engine import evaluate, load_knowledge

    kb = load_knowledge("sanity")
    findings, _ = evaluate(kb, {"n_configs": 5, "n_ok": 5, "n_params_constant": 1, "params_constant": "lr",
                                "metric_spread": 0.0, "metric_high": 0.5, "n_failed": 0, "n_diverged": 0,
                                "diverged_fraction": 0.0, "n_improved": 0, "sanity_epochs": 2})
    assert {"S101", "S102", "S108"} <= {f.code for f in findings}


# --------------------------------------------------------------------------- workers, imports

GATED_OBJECTIVE = """
import importlib.util
import os
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_gated_objective_task", {source!r})
_task = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_task)
_deadline = time.monotonic() + 120  # a worker that never comes: this process stops waiting, the test fails


def objective(hp, report):
    \"\"\"objective_task's objective, behind a gate: a trial starts scoring only once two processes
    have each begun a trial (one file per process id in ADVISOR_TEST_GATE).\"\"\"
    gate = Path(os.environ["ADVISOR_TEST_GATE"])
    (gate / str(os.getpid())).touch()
    while len(list(gate.iterdir())) < 2 and time.monotonic() < _deadline:
        time.sleep(0.02)
    return _task.objective(hp, report)


objective.direction = "maximize"
"""


def test_two_workers_share_a_journal_and_the_budget(cli, tmp_path, monkeypatch) -> None:
    # Each worker must take a trial however slowly the second process starts (importing optuna and
    # torch takes seconds on a small machine): the first trial waits, behind a gate, until the other
    # process has begun one too; no timing decides it.
    task = tmp_path / "gated_task.py"
    task.write_text(GATED_OBJECTIVE.format(source=str(TASKS / "objective_task.py")))
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv("ADVISOR_TEST_GATE", str(gate))  # the spawned worker inherits it
    monkeypatch.delenv("ADVISOR_TEST_DELAY", raising=False)
    plan = plan_file(tmp_path, trials=10, epochs=3)
    journal = tmp_path / "runs.journal"
    r = cli("search", f"{task}:objective", "--plan", plan, "--storage", journal, "--study", "w", "--workers", "2",
            "--json", "--top-k", "1")
    assert r.code == 0, r.err
    doc = one_json(r.out)
    c = doc["trials"]
    assert 10 <= c["total"] <= 11 and c["running"] == 0  # the global budget (one trial may overshoot)
    assert not [n for n in doc["notes"] if "worker" in n], doc["notes"]
    st = optuna.load_study(study_name="w", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    workers = {t.user_attrs.get("worker") for t in st.get_trials(deepcopy=False) if not t.user_attrs.get("final")}
    assert len(workers) == 2, workers  # both took trials of the one study (host:pid each)
    assert {w.rsplit(":", 1)[1] for w in workers} == {p.name for p in gate.iterdir()}
    assert os.getpid() in {int(p.name) for p in gate.iterdir()}  # this process is worker 0


def test_the_budget_rule_counts_anew_after_each_trial_a_retried_trial_not_counted() -> None:
    # A worker's phase began with trial 1 running (its worker killed); the heartbeat fails it and
    # Optuna re-queues it during the phase: from then on it is not counted, its retry is. The rule
    # must not stop the phase one trial short (it did with a limit fixed when the phase began).
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(direction="maximize")
    dist = {"x": FloatDistribution(0.0, 1.0)}
    for state, attrs in ((TrialState.COMPLETE, {}), (TrialState.FAIL, {}), (TrialState.COMPLETE, {}),
                         (TrialState.COMPLETE, {"retry_history": [1]})):
        study.add_trial(create_trial(state=state, params={"x": 0.5}, distributions=dist,
                                     value=0.5 if state == TrialState.COMPLETE else None, system_attrs=attrs))
    stopped = []
    study.stop = lambda: stopped.append(True)
    rule = S.Search._budget_rule(4)
    rule(study, None, study.get_trials(deepcopy=False))
    assert not stopped  # 3 counted (0, 2 and the retry 3): the phase goes on
    study.add_trial(create_trial(state=TrialState.COMPLETE, params={"x": 0.1}, distributions=dist, value=0.1))
    rule(study, None, study.get_trials(deepcopy=False))
    assert stopped
    # a trial of this worker found extra (the others took the budget while their last trials
    # run): this worker stops rather than start one extra after another until those end
    stopped.clear()
    rule = S.Search._budget_rule(10)
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": 0.2}, distributions=dist,
                                 user_attrs={"extra": True}))
    trials = study.get_trials(deepcopy=False)
    rule(study, trials[-2], trials)
    assert not stopped
    rule(study, trials[-1], trials)
    assert stopped


def test_worker_devices_give_one_gpu_per_process_round_robin() -> None:
    from advisor.act.search.run import worker_devices

    # 4 GPUs, 6 workers: this process is worker 0 (GPU 0); the others 1, 2, 3, then round again
    assert worker_devices(6, "auto", 4) == [("1", "cuda"), ("2", "cuda"), ("3", "cuda"), ("0", "cuda"),
                                            ("1", "cuda")]
    assert worker_devices(2, "cuda", 2) == [("1", "cuda")]
    # the GPUs this process was given are the ones handed out, by their own names
    assert worker_devices(3, "auto", 2, "2,3") == [("3", "cuda"), ("2", "cuda")]
    assert worker_devices(2, "auto", 2, "GPU-aaa, GPU-bbb") == [("GPU-bbb", "cuda")]
    assert worker_devices(3, "auto", 2, "5") == [("1", "cuda"), ("0", "cuda")]  # fewer names than GPUs: CUDA's
    # one GPU, a device asked by name, MPS or the CPU: every process as asked, nothing restricted
    assert worker_devices(3, "auto", 1) == [(None, "auto"), (None, "auto")]
    assert worker_devices(3, "cuda:1", 4) == [(None, "cuda:1"), (None, "cuda:1")]
    assert worker_devices(2, "cpu", 0) == [(None, "cpu")]
    assert worker_devices(2, "mps", 0) == [(None, "mps")]
    assert worker_devices(1, "auto", 8) == []


def test_spawned_workers_get_cuda_visible_devices_from_a_faked_gpu_count(monkeypatch) -> None:
    import importlib
    import subprocess as sp

    R = importlib.import_module("advisor.act.search.run")  # the module (the package exports a function `run`)
    started = []

    class FakePopen:
        def __init__(self, cmd, stdout=None, stderr=None, env=None):
            started.append((cmd, env))
            self.pid = len(started)

    monkeypatch.setattr(sp, "Popen", FakePopen)
    monkeypatch.setattr(R, "_gpu_count", lambda: 3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    procs = R._spawn_workers("runs.journal", "s", 4, "auto")
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["5", "6", "4"]
    assert [cmd[-4:] for cmd, _ in started] == [["runs.journal", "s", str(i), "cuda"] for i in (1, 2, 3)]
    for _, log in procs:
        log.close()
    started.clear()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    for _, log in R._spawn_workers("runs.journal", "s", 2, "cpu"):  # the CPU: no GPU counted, none restricted
        log.close()
    assert "CUDA_VISIBLE_DEVICES" not in started[0][1] and started[0][0][-1] == "cpu"


def test_more_cpu_workers_than_the_rules_allow_are_refused_in_one_line() -> None:
    from advisor.act.search.request import check_workers
    from advisor.errors import InputError

    settings = T.load_settings()
    per_core = settings.search.cpu_workers_per_core  # rules/search.yaml: the trainer 1 per core, an objective 4
    cpu = torch.device("cpu")
    check_workers(2, "cpu", "build", settings, cores=2, device=cpu)
    with pytest.raises(InputError) as exc:
        check_workers(3, "cpu", "build", settings, cores=2, device=cpu)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("--workers 3:") and "2 cores" in msg
    assert "cpu_workers_per_core.trainer" in msg and "--workers 2" in msg and "PostgreSQL" in msg
    # a custom objective may wait on I/O: more workers than cores, up to the objective's share
    limit = int(2 * per_core.objective)
    assert limit > 2
    check_workers(limit, "cpu", "objective", settings, cores=2, device=cpu)
    with pytest.raises(InputError, match=f"--workers {limit + 1}:.*cpu_workers_per_core.objective"):
        check_workers(limit + 1, "cpu", "objective", settings, cores=2, device=cpu)
    # the numbers are the rules file's: half a worker per core is one per two cores
    half = settings.model_copy(update={"search": settings.search.model_copy(update={
        "cpu_workers_per_core": per_core.model_copy(update={"trainer": 0.5})})})
    check_workers(2, "cpu", "build", half, cores=4, device=cpu)
    with pytest.raises(InputError, match="room for 2 workers \\(one per 2 cores"):
        check_workers(3, "cpu", "build", half, cores=4, device=cpu)
    # with a GPU the workers go one per GPU: no core count applies
    check_workers(16, "cuda", "build", settings, cores=2, device=type("D", (), {"type": "cuda"})())


def test_workers_past_the_cores_are_refused_before_anything_is_written(cli, tmp_path) -> None:
    from advisor.act.device import cpu_cores

    journal = tmp_path / "runs.journal"
    n = cpu_cores() + 1
    msg = _one_line_error(cli("search", NORMAL, "--plan", plan_file(tmp_path), "--workers", str(n), "--device", "cpu",
                              "--storage", journal, "--study", "w"))
    assert f"--workers {n}:" in msg and "rules/search.yaml" in msg
    assert not journal.exists()


def test_the_command_module_imports_neither_torch_nor_optuna() -> None:
    code = ("import sys; import advisor.commands.search, advisor.act.search, advisor.act.train; "
            "print(sorted(m for m in ('torch', 'optuna', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
