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


# --- through the MLflow client: runs logged by MLflow itself to a SQLite tracking store ---------

@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    pytest.importorskip("mlflow")
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("make_mlflow_runs", ROOT / "fixtures" / "make_mlflow_runs.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    maker.log_runs(uri, experiment="lr-study")
    import mlflow

    mlflow.set_tracking_uri(None)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lr-study")
    ids = {r.info.run_name: r.info.run_id for r in client.search_runs([exp.experiment_id])}
    return uri, ids, folder / "mlflow.db"


def test_a_tracked_run_reads_as_the_same_run_in_the_file_store(sqlite_store) -> None:
    from advisor.ingest.mlflow import tracked_runs

    uri, ids, _ = sqlite_store
    tracked = load_run(tracked_runs(uri, [ids["overfit"]], None))
    stored = load_run(_run("overfit"))
    assert tracked.columns == stored.columns
    for role in ("train_loss", "val_loss", "val_metric", "lr"):
        np.testing.assert_allclose(tracked.series(role), stored.series(role))
    diverged = load_run(tracked_runs(uri, [ids["diverged"]], None))
    assert list(diverged.epochs["nonfinite"]) == [False] * 20 + [True] * 10


def test_diagnose_a_tracked_run_and_an_experiment(sqlite_store) -> None:
    import json

    from conftest import run_cli

    uri, ids, db = sqlite_store
    one = run_cli("diagnose", "--mlflow-run", ids["overfit"], "--tracking-uri", uri, "--json")
    assert one.code in (0, 1), one
    assert "overfitting" in [d["label"] for d in json.loads(one.out)["diagnoses"]]
    both = run_cli("diagnose", "--experiment", "lr-study", "--tracking-uri", uri, "--json")
    report = json.loads(both.out)
    assert both.code == 1, both  # the diverged run is an error
    assert sorted(r["run"] for r in report["runs"]) == sorted(f"mlflow:lr-study [{n}]" for n in ids)
    assert report["best_run"] == "mlflow:lr-study [overfit]"
    assert {d["label"] for d in report["diagnoses"]} >= {"overfitting", "diverged"}
    assert report["comparison"] and len(report["comparison"]) == 2
    # the database behind the URI is an input: never written over
    before = db.read_bytes()
    refused = run_cli("diagnose", "--experiment", "lr-study", "--tracking-uri", uri, "--report", db, "--force")
    assert refused.code == 2 and db.read_bytes() == before


@pytest.mark.parametrize("args, words", [
    (["--experiment", "nope"], ["no experiment 'nope'", "lr-study"]),
    (["--mlflow-run", "0123abc"], ["0123abc"]),
    (["--mlflow-run", "a", "--experiment", "lr-study"], ["not both"]),
])
def test_tracked_runs_that_do_not_exist_are_one_line(sqlite_store, args, words) -> None:
    from conftest import run_cli

    uri, _, _ = sqlite_store
    result = run_cli("diagnose", *args, "--tracking-uri", uri)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result
    assert all(w in result.err for w in words), result.err


def test_a_sqlite_uri_without_its_file_creates_nothing(tmp_path, monkeypatch) -> None:
    from conftest import run_cli

    monkeypatch.chdir(tmp_path)
    result = run_cli("diagnose", "--mlflow-run", "abc", "--tracking-uri", "sqlite:///absent.db")
    assert result.code == 2 and "no such database file" in result.err
    assert not (tmp_path / "absent.db").exists()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    no_uri = run_cli("diagnose", "--mlflow-run", "abc")
    assert no_uri.code == 2 and "--tracking-uri" in no_uri.err
