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


# --------------------------------------------------------------------------- S3: internal errors -> one line

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
