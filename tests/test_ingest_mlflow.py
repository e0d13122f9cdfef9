"""MLflow's file store read directly (no MLflow library): runs logged by MLflow itself
(fixtures/make_mlflow_runs.py wrote fixtures/runs/mlruns/ with mlflow-skinny 3.17)."""

from __future__ import annotations

import numpy as np
import pytest

from advisor.errors import InputError
from advisor.ingest import load_run, load_runs

from conftest import RUNS

EXPERIMENT = next(p for p in (RUNS / "mlruns").iterdir() if p.name not in ("0", ".trash"))


def _run(name: str):
    return next(p for p in EXPERIMENT.iterdir() if (p / "tags" / "mlflow.runName").is_file()
                and (p / "tags" / "mlflow.runName").read_text().strip() == name)


def test_a_run_folder() -> None:
    run = load_run(_run("overfit"))
    assert run.format == "mlflow"
    assert run.columns == {"step": "step", "train_loss": "loss", "val_loss": "val_loss",
                           "val_metric": "val_accuracy", "lr": "lr"}
    assert len(run.epochs) == 30
    val = run.series("val_loss")
    assert np.nanargmin(val) == 8 and np.nanmin(val) == pytest.approx(0.6)


def test_keys_with_slashes_and_nan() -> None:
    run = load_run(_run("diverged"))
    assert run.columns["train_loss"] == "train/loss" and run.columns["val_loss"] == "val/loss"
    assert list(run.epochs["nonfinite"]) == [False] * 20 + [True] * 10


def test_an_experiment_folder_gives_its_runs_side_by_side() -> None:
    runs = load_runs(EXPERIMENT)
    assert sorted(r.part_name for r in runs) == ["diverged", "overfit"]
    assert all(len(r.epochs) == 30 for r in runs)


def test_an_experiment_without_runs() -> None:
    with pytest.raises(InputError, match="an MLflow folder without runs"):
        load_run(RUNS / "mlruns" / "0")  # MLflow's Default experiment


def test_a_damaged_metric_file_is_named(tmp_path) -> None:
    import shutil

    run = tmp_path / "0" / "abc"
    shutil.copytree(_run("overfit"), run)
    (run / "metrics" / "loss").write_text("1796093938317 2.05 0\nnot a metric line\n")
    with pytest.raises(InputError, match=r"metrics/loss: line 2: expected 'timestamp value step'"):
        load_run(run)
