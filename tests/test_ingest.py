"""Ingest: every format read from a real run, roles found by name, one tidy table per run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from advisor.errors import InputError
from advisor.ingest import load_run
from advisor.ingest.readers import sniff

from conftest import FIXTURES, RUNS

# the same overfitting run (100 epochs, lowest validation loss 0.2879 at epoch 8) in every format
OVERFITTING = {
    "overfitting.keras.csv": "csv",
    "overfitting.tsv": "csv",
    "overfitting.wandb.csv": "wandb",
    "overfitting.lightning/version_0/metrics.csv": "lightning",
    "overfitting.hf/trainer_state.json": "hf",
    "overfitting.mmdet/20261127_101010.log.json": "mmdet",
    "overfitting.detectron2/metrics.json": "detectron2",
}


@pytest.mark.parametrize("name, fmt", sorted(OVERFITTING.items()))
def test_every_format_gives_the_same_run(name: str, fmt: str) -> None:
    run = load_run(RUNS / name)
    assert run.format == fmt
    assert {"train_loss", "val_loss", "val_metric"} <= set(run.epochs.columns)
    val = run.series("val_loss")
    assert np.nanmin(val) == pytest.approx(0.2879, abs=2e-4)
    expected = 95 if fmt == "detectron2" else 100  # detectron2 drops evaluations it does not flush
    assert len(run.epochs) == pytest.approx(expected, abs=2)
    assert 0.9 < np.nanmax(run.series("val_metric")) <= 1.0  # percent metrics brought to 0-1
    assert run.higher_is_better is True


def test_directory_with_one_log_resolves_to_it() -> None:
    assert load_run(RUNS / "overfitting.lightning").path.endswith("version_0/metrics.csv")
    assert load_run(RUNS / "overfitting.hf").format == "hf"


def test_lightning_sparse_rows_become_epochs_and_steps() -> None:
    run = load_run(RUNS / "overfitting.lightning")
    assert run.columns["train_loss"] == "train_loss_epoch"
    assert run.columns["lr"].startswith("lr-")
    assert run.n_steps > len(run.epochs)   # the per-step losses are kept beside the epochs
    assert not run.epochs["train_loss"].isna().any()


def test_hf_fractional_epochs_and_summary_entry() -> None:
    run = load_run(RUNS / "healthy.hf")
    assert list(run.epochs.index[:3]) == [1.0, 2.0, 3.0]
    assert len(run.epochs) == 30 and run.n_steps > 30
    assert run.columns["val_loss"] == "eval_loss" and run.columns["grad_norm"] == "grad_norm"


def test_hf_nan_is_divergence() -> None:
    run = load_run(RUNS / "diverged.hf")
    assert run.epochs["nonfinite"].any()
    assert int(run.epochs.index[run.epochs["nonfinite"].to_numpy().argmax()]) == 11


def test_keras_written_nan_is_divergence_but_empty_cells_are_not(tmp_path: Path) -> None:
    run = load_run(RUNS / "diverged.keras.csv")
    assert run.epochs["nonfinite"].any()
    sparse = load_run(RUNS / "healthy.wandb.csv")  # empty cells everywhere, no NaN written
    assert not sparse.epochs["nonfinite"].any()


def test_ultralytics_padded_header_and_summed_losses() -> None:
    run = load_run(RUNS / "overfitting.ultralytics")
    assert run.format == "ultralytics"
    assert run.columns["train_loss"] == "train/loss" and run.columns["val_loss"] == "val/loss"
    assert run.columns["val_metric"] == "metrics/mAP50-95(B)"
    # the sum of box, cls and dfl losses
    assert run.epochs["val_loss"].min() == pytest.approx(4.473, abs=0.01)


def test_ultralytics_classify_layout() -> None:
    run = load_run(RUNS / "oscillating.ultralytics")
    assert run.columns["val_metric"] == "metrics/accuracy_top1"


def test_mmdet_val_lines_become_validation_columns() -> None:
    run = load_run(RUNS / "overfitting.mmdet")
    assert run.columns["val_loss"] == "val_loss" and run.columns["val_metric"] == "val_accuracy_top-1"
    assert run.metric_scale == 0.01


def test_per_step_log_without_epochs_is_binned(tmp_path: Path) -> None:
    path = tmp_path / "steps.csv"
    n = 5000
    loss = 2.3 * np.exp(-np.arange(n) / 1000) + 0.1
    path.write_text("step,loss\n" + "".join(f"{i},{v:.5f}\n" for i, v in enumerate(loss)))
    run = load_run(path, step_bins=50, rows_per_epoch_max=1000)
    assert len(run.epochs) == 50 and run.n_steps == n
    assert run.epochs["train_loss"].is_monotonic_decreasing


def test_map_overrides_and_format_forcing(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("it;obj;holdout\n" + "".join(f"{i};{1 / (i + 1):.4f};{1.1 / (i + 1):.4f}\n" for i in range(20)))
    run = load_run(path, "csv", {"train_loss": "obj", "val_loss": "holdout", "step": "it"})
    assert run.columns == {"train_loss": "obj", "val_loss": "holdout", "step": "it"}
    with pytest.raises(InputError, match="looks like JSON"):
        load_run(RUNS / "healthy.hf", "csv")


@pytest.mark.parametrize("name, fmt", [("healthy.keras.csv", "csv"), ("healthy.tsv", "csv"),
                                       ("healthy.wandb.csv", "wandb"), ("healthy.hf/trainer_state.json", "hf"),
                                       ("healthy.detectron2/metrics.json", "detectron2"),
                                       ("healthy.ultralytics/results.csv", "ultralytics")])
def test_sniffing(name: str, fmt: str) -> None:
    assert sniff(RUNS / name)[0] == fmt


def test_fixture_script_reproduces_the_committed_files(tmp_path: Path) -> None:
    """The fixtures are real training runs: the script trains them again, byte for byte."""
    proc = subprocess.run([sys.executable, str(FIXTURES / "make_fixtures.py"), "--only", "too-short,diverged",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(made) >= 5
    for rel in made:
        assert (tmp_path / rel).read_bytes() == (RUNS / rel).read_bytes(), rel
