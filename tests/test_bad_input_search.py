"""Bad and odd input to `search`, `worker`, `lr-find` and `audit`: the reproductions of
../shared/reports/bad-input-2026-11.md (F11 audit side, F12, F13, F25, F26, F32) as regression
tests. Each one is a tiny task written into tmp_path, one epoch and a few trials."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")

torch.set_num_threads(1)  # tiny models: threads only add overhead


def _one_line_error(r, *words: str) -> str:
    assert r.code == 2, (r.code, r.out, r.err)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("advisor: error:"), r.err
    assert "internal error" not in r.err and "Traceback" not in r.err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _task(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def _trials(url: str, study: str):
    return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)


# A classifier on random data whose inputs are NaN: the loss is NaN from the first step.
NAN_TASK = """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from advisor.act import Task

    def build(hp):
        x, y = torch.full((64, 4), float("nan")), torch.randint(0, 2, (64,))
        data = DataLoader(TensorDataset(x, y), batch_size=16)
        return Task(nn.Linear(4, 2), data, data, nn.CrossEntropyLoss(), "accuracy")
"""

# A sound classifier, small enough for lr-find in a second.
GOOD_TASK = """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from advisor.act import Task

    def build(hp):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(128, 4, generator=g)
        y = (x[:, 0] > 0).long()
        data = DataLoader(TensorDataset(x, y), batch_size=16)
        return Task(nn.Linear(4, 2), data, data, nn.CrossEntropyLoss(), "accuracy")
"""


# --------------------------------------------------------------------------- F12: an objective's direction

LOSS_OBJECTIVE = """
    import math

    def objective(hp, report):
        v = (math.log10(hp["learning_rate"]) + 3) ** 2 + 0.1   # a validation loss, best at lr=1e-3
        report(v, 0)
        return v
"""


def test_an_objective_without_direction_is_minimized_with_a_note(tmp_path) -> None:
    """F12: `search obj_loss.py:objective` maximized a loss and reported its worst configuration."""
    task = _task(tmp_path, "obj_loss.py", LOSS_OBJECTIVE)
    url = f"sqlite:///{tmp_path / 'ol.db'}"
    r = run_cli("search", f"{task}:objective", "--params", "lr", "--epochs", "1", "--trials", "6", "--top-k", "0",
                "--device", "cpu", "--storage", url, "--study", "x", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["direction"] == "minimize"
    assert any("minimized, as Optuna does" in n and "--direction maximize" in n for n in doc["notes"])
    values = [t.value for t in _trials(url, "x") if t.value is not None]
    assert doc["best"]["value"] == min(values) and doc["best"]["value"] < max(values)


def test_an_objective_direction_from_the_option_or_the_function_and_no_note(tmp_path) -> None:
    task = _task(tmp_path, "obj_loss.py", textwrap.dedent(LOSS_OBJECTIVE) + "\nobjective.direction = 'maximize'\n")
    base = ["--params", "lr", "--epochs", "1", "--trials", "2", "--top-k", "0", "--device", "cpu", "--json"]
    r = run_cli("search", f"{task}:objective", *base, "--storage", f"sqlite:///{tmp_path / 'a.db'}")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["direction"] == "maximize" and not any("Optuna does" in n for n in doc["notes"])
    _one_line_error(run_cli("search", f"{task}:objective", *base, "--direction", "minimize",
                            "--storage", f"sqlite:///{tmp_path / 'b.db'}"), "contradicts")
    plain = _task(tmp_path, "plain.py", LOSS_OBJECTIVE)
    r = run_cli("search", f"{plain}:objective", *base, "--direction", "maximize",
                "--storage", f"sqlite:///{tmp_path / 'c.db'}")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["direction"] == "maximize" and not any("Optuna does" in n for n in doc["notes"])


# --------------------------------------------------------------------------- F13: a dead task stops the search

def test_a_loss_nan_from_the_first_step_stops_the_search_after_two_trials(tmp_path) -> None:
    """F13: 16 trials were burnt and the report said '100% saved by pruning', exit 0."""
    task = _task(tmp_path, "nan_loss.py", NAN_TASK)
    url = f"sqlite:///{tmp_path / 'n.db'}"
    r = run_cli("search", str(task), "--params", "lr,weight_decay", "--epochs", "3", "--trials", "20", "--top-k", "0",
                "--device", "cpu", "--storage", url, "--study", "x")
    _one_line_error(r, "first step", "before any update", "loss_fn", "stopped")
    assert "saved by pruning" not in r.out
    trials = _trials(url, "x")
    assert len(trials) == 2 and all(t.user_attrs.get("nonfinite_at_start") for t in trials)


def test_an_objective_nan_from_its_first_report_stops_the_search(tmp_path) -> None:
    task = _task(tmp_path, "objective_nan.py", """
        def objective(hp, report):
            report(float("nan"), 0)
            return float("nan")
    """)
    url = f"sqlite:///{tmp_path / 'n.db'}"
    r = run_cli("search", f"{task}:objective", "--params", "lr", "--epochs", "3", "--trials", "20", "--top-k", "0",
                "--device", "cpu", "--storage", url, "--study", "x", "--direction", "minimize")
    _one_line_error(r, "non-finite value first thing", "stopped")
    assert len(_trials(url, "x")) == 2


def test_trials_that_all_go_non_finite_later_stop_the_search_at_the_guard(tmp_path) -> None:
    task = _task(tmp_path, "late_nan.py", """
        def objective(hp, report):
            report(0.5, 0)
            report(float("inf"), 1)
            return 0.5
    """)
    url = f"sqlite:///{tmp_path / 'n.db'}"
    r = run_cli("search", f"{task}:objective", "--params", "lr", "--epochs", "2", "--trials", "12", "--top-k", "0",
                "--device", "cpu", "--storage", url, "--study", "x", "--direction", "minimize")
    _one_line_error(r, "first 5 trials", "all went non-finite", "learning-rate")
    assert len(_trials(url, "x")) == 5


def test_a_budget_below_the_guard_that_all_fails_is_not_exit_0(tmp_path) -> None:
    """F13: with 2 trials, trials that all failed ended in exit 0 and 'No trial completed'."""
    task = _task(tmp_path, "raising.py", """
        def objective(hp, report):
            raise ValueError("shapes do not match")
    """)
    url = f"sqlite:///{tmp_path / 'n.db'}"
    r = run_cli("search", f"{task}:objective", "--params", "lr", "--epochs", "1", "--trials", "2", "--top-k", "0",
                "--device", "cpu", "--storage", url, "--study", "x", "--direction", "minimize")
    _one_line_error(r, "first 2 trials all failed", "shapes do not match")


def test_trials_stopped_for_a_non_finite_value_are_not_saved_by_pruning(tmp_path) -> None:
    """Some configurations diverge in their second epoch, the others complete: the search runs on,
    and the epochs the diverged ones did not run are not counted as saved by pruning."""
    task = _task(tmp_path, "some_nan.py", """
        def objective(hp, report):
            lr = hp["learning_rate"]
            for epoch in range(int(hp["epochs"])):
                report(float("nan") if lr > 1e-2 and epoch == 1 else 1.0 / (1 + epoch + lr), epoch)
            return 1.0 / (hp["epochs"] + lr)
    """)
    plan = tmp_path / "plan.yaml"
    plan.write_text("advisor_space: 1\ndirection: minimize\nstrategy: grid\nepochs: 3\ntop_k: 0\n"
                    "pruner: {type: none}\nparams:\n"
                    "  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, "
                    "choices: [1.0e-4, 1.0e-3, 1.0e-1]}\n")
    url = f"sqlite:///{tmp_path / 'n.db'}"
    r = run_cli("search", f"{task}:objective", "--plan", plan, "--device", "cpu", "--storage", url, "--study", "x",
                "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["trials"]["complete"] == 2 and doc["trials"]["pruned"] == 1
    assert doc["epochs_saved_by_pruning"] == 0


def test_the_trainer_checks_the_first_step() -> None:
    """The trainer checks the loss every few steps; the first step is always checked, so that a
    loss NaN from the start is known as such."""
    from advisor.act.demo import TensorLoader
    from advisor.act.task import Task
    from advisor.act.train import Diverged, TrainConfig, train

    x, y = torch.full((256, 4), float("nan")), torch.randint(0, 2, (256,))
    task = Task(torch.nn.Linear(4, 2), TensorLoader(x, y, 16), TensorLoader(x, y, 16), torch.nn.CrossEntropyLoss(),
                "accuracy")
    with pytest.raises(Diverged) as info:
        train(task, TrainConfig(epochs=1), device=torch.device("cpu"))
    assert info.value.at_start and "first step" in info.value.reason


# --------------------------------------------------------------------------- F26: sys.exit() in a task

def test_lr_find_names_a_task_that_exits_at_import_or_in_build(tmp_path) -> None:
    """F26: `lr-find sys_exit_import.py` exited 0 with nothing printed; sys.exit(3) in build: exit 3."""
    at_import = _task(tmp_path, "sys_exit_import.py", "import sys\nsys.exit(0)\n")
    _one_line_error(run_cli("lr-find", at_import, "--device", "cpu"), "sys_exit_import.py", "sys.exit(0)",
                    "__main__")
    in_build = _task(tmp_path, "sys_exit.py", "import sys\ndef build(hp):\n    sys.exit(3)\n")
    _one_line_error(run_cli("lr-find", in_build, "--device", "cpu"), "sys_exit.py", "build(hp)", "sys.exit(3)")


def test_a_task_that_parses_the_command_line_at_import_sees_no_advisor_options(tmp_path) -> None:
    """A training script that runs argparse when imported parsed advisor's own options and exited."""
    task = _task(tmp_path, "script.py", "import argparse\nargs = argparse.ArgumentParser().parse_args()\n"
                 + textwrap.dedent(GOOD_TASK))
    r = run_cli("lr-find", task, "--device", "cpu", "--iters", "10", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["sweep"]["iters"] == 10


def test_search_names_a_task_that_exits_and_creates_no_storage(tmp_path) -> None:
    """F26 for search, and F32: the failed search left an empty Optuna database behind."""
    for name, source, words in (("exit_import.py", "import sys\nsys.exit(0)\n", ("importing the task", "sys.exit(0)")),
                                ("exit_build.py", "import sys\ndef build(hp):\n    sys.exit(3)\n",
                                 ("build(hp)", "sys.exit(3)"))):
        task = _task(tmp_path, name, source)
        db = tmp_path / f"{name}.db"
        r = run_cli("search", task, "--params", "lr", "--trials", "2", "--device", "cpu", "--storage", f"sqlite:///{db}")
        _one_line_error(r, name, *words)
        assert not db.exists()
    missing = _task(tmp_path, "broken.py", "import no_such_module_here\n")
    r = run_cli("search", missing, "--params", "lr", "--storage", f"sqlite:///{tmp_path / 'b.db'}")
    _one_line_error(r, "broken.py")
    assert not (tmp_path / "b.db").exists()


def test_an_objective_that_exits_in_a_trial_stops_the_search_in_one_line(tmp_path) -> None:
    task = _task(tmp_path, "exit_objective.py", """
        import sys

        def objective(hp, report):
            sys.exit(4)
    """)
    url = f"sqlite:///{tmp_path / 'e.db'}"
    r = run_cli("search", f"{task}:objective", "--params", "lr", "--trials", "3", "--top-k", "0", "--device", "cpu",
                "--storage", url, "--study", "x", "--direction", "minimize")
    _one_line_error(r, "exit_objective.py", "sys.exit(4)", "trial #0")
    trials = _trials(url, "x")
    assert len(trials) == 1 and trials[0].state == optuna.trial.TrialState.FAIL


# --------------------------------------------------------------------------- S3: internal errors -> one line

@pytest.mark.parametrize("option, value", [("--iters", "1000000000000"), ("--weight-decay", "nan"),
                                           ("--weight-decay", "inf"), ("--end", "inf"), ("--start", "inf")])
def test_lr_find_refuses_absurd_numbers_in_one_line(tmp_path, option, value) -> None:
    """F25: --iters 10**12 was a MemoryError, --weight-decay nan a ValueError; F28: --end inf and
    --weight-decay inf ran and advised 'lower --start'."""
    task = _task(tmp_path, "good.py", GOOD_TASK)
    _one_line_error(run_cli("lr-find", task, "--device", "cpu", option, value), option)


def test_search_current_zero_on_a_log_range_is_one_line(tmp_path) -> None:
    """F25 / F22: `--current lr=0` ended in Optuna's ValueError (log=True)."""
    task = _task(tmp_path, "good.py", GOOD_TASK)
    db = tmp_path / "cur.db"
    _one_line_error(run_cli("search", task, "--params", "lr", "--current", "lr=0", "--trials", "2", "--epochs", "1",
                            "--device", "cpu", "--storage", f"sqlite:///{db}"), "--current")
    assert not db.exists()


def test_worker_on_a_storage_file_that_is_not_there_creates_nothing(tmp_path, monkeypatch) -> None:
    """F32: `worker --storage sqlite:///nofile.db` and `none.journal` created those files."""
    monkeypatch.chdir(tmp_path)
    for storage, name in (("sqlite:///nofile.db", "nofile.db"), ("none.journal", "none.journal")):
        _one_line_error(run_cli("worker", "--storage", storage, "--study", "x"), name, "no such file")
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_audit_timeout_must_be_a_finite_number(tmp_path, value) -> None:
    """F25: `audit URL --timeout nan` was a ValueError, `inf` an OverflowError."""
    _one_line_error(run_cli("audit", "postgresql://u:secret@127.0.0.1:1/optuna", "--timeout", value), "--timeout")


# --------------------------------------------------------------------------- F11: audit's metric direction

def _trials_csv(tmp_path: Path, column: str) -> Path:
    path = tmp_path / f"{column.replace('/', '_')}.csv"
    path.write_text(f"number,{column},params_lr\n0,0.5,0.1\n1,0.9,0.01\n2,0.3,0.001\n3,0.7,0.0001\n")
    return path


@pytest.mark.parametrize("column", ["val_nll", "val_fid", "val_mape", "val_rmsle", "eval_wer", "val_top1_err",
                                    "val_accuracy", "val_map", "val_f1"])
def test_audit_reads_the_direction_from_the_same_table_as_diagnose(tmp_path, column) -> None:
    """F11: `audit` took val_mape as higher-is-better (and guessed val_fid, val_rmsle), while
    diagnose reads rules/tables/metric_direction.yaml; now both read it."""
    from advisor.ingest.roles import higher_is_better
    from advisor.ingest.study import load_study

    table = load_study(str(_trials_csv(tmp_path, column)))
    lower = not higher_is_better(column)
    assert table.direction == ("minimize" if lower else "maximize") and table.direction_from == "metric name"
    r = run_cli("audit", _trials_csv(tmp_path, column), "--json", "--fail-on", "never")
    assert r.code == 0, r.err
    assert json.loads(r.out)["study"]["best"]["value"] == (0.3 if lower else 0.9)


def test_audit_direction_option_overrides_the_name_and_the_assumption(tmp_path) -> None:
    from advisor.ingest.study import load_study

    table = load_study(str(_trials_csv(tmp_path, "val_mape")), direction="maximize")
    assert table.direction == "maximize" and table.direction_from == "option"
    guessed = load_study(str(_trials_csv(tmp_path, "objective")))
    assert guessed.direction == "minimize" and guessed.direction_from == "assumed"
    assert any("assumed" in n for n in guessed.notes)
    told = load_study(str(_trials_csv(tmp_path, "objective")), direction="maximize")
    assert told.direction == "maximize" and not any("assumed" in n for n in told.notes)
    assert math.isclose(float(told.trials["value"].max()), 0.9)


# --------------------------------------------------------------------------- F28: a loader that runs once

ONE_SHOT = """
    import torch
    from torch import nn
    from advisor.act import Task

    def _batches(n):
        g = torch.Generator().manual_seed(0)
        for _ in range(n):
            x = torch.randn(16, 4, generator=g)
            yield x, (x[:, 0] > 0).long()

    def build(hp):
        return Task(nn.Linear(4, 2), _batches(4), [next(_batches(1))], nn.CrossEntropyLoss(), "accuracy")
"""


def test_a_one_shot_generator_is_named_as_such(tmp_path) -> None:
    """F28: a generator as train_loader gave 'yielded no batches', although it had yielded a full
    pass the first time."""
    task = _task(tmp_path, "one_shot.py", ONE_SHOT)
    _one_line_error(run_cli("lr-find", task, "--device", "cpu", "--iters", "10"), "second pass", "only once",
                    "generator")
    from advisor.act.task import load_task
    from advisor.act.train import TrainConfig, TrialError, train

    with pytest.raises(TrialError, match="in epoch 2, after a full epoch 1.*generator can be iterated only once"):
        train(load_task(f"{task}:build"), TrainConfig(epochs=2), device=torch.device("cpu"))
