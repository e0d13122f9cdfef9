"""Ingest: every format read from a real run, roles found by name, one tidy table per run."""

from __future__ import annotations

import csv
import io
import json
import math
import re
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


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_TRAINED = re.compile(r"loss|acc|grad_norm")  # what training computes (steps, lr, clock fields are fixed)
_BLOWN_UP = 10 * math.log(10)  # a loss ten times that of a uniform guess over the 10 digit classes
_RTOL = 1e-4


class _Num(str):
    """A number as the file writes it."""


def _values(path: Path) -> list[tuple[str, str]]:
    """(key or column, value) of every value of a CSV, JSON or JSON-lines file, in file order;
    numbers as _Num, NaN / Infinity and everything else as str."""
    text = path.read_text()
    if path.suffix == ".csv":
        header, *rows = csv.reader(io.StringIO(text))
        return [(key, _Num(cell) if _NUMBER.fullmatch(cell) else cell)
                for row in rows for key, cell in zip(header, row)]
    load = lambda doc: json.loads(doc, parse_float=_Num, parse_int=_Num, parse_constant=str)  # noqa: E731
    try:
        docs = [load(text)]
    except json.JSONDecodeError:  # JSON lines (mmdet)
        docs = [load(line) for line in text.splitlines() if line.strip()]
    out: list[tuple[str, str]] = []

    def walk(node, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        else:
            out.append((key, node))

    for doc in docs:
        walk(doc, "")
    return out


def _last_digit(text: str) -> float:
    """The value of one unit in the last digit written: 7.1633 -> 1e-4, 1.8666e+20 -> 1e16."""
    mantissa, _, exp = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exp or 0) - decimals)


def _differences(made: Path, committed: Path) -> list[str]:
    """How a re-trained fixture file differs from the committed one, beyond float rounding.

    The text with every number blanked must be identical: same keys, columns and rows, NaN and
    Infinity in the same places. Every number must match to 1e-4 relative (or within a unit of
    its last written digit), except what training computes once the run has blown up (a loss
    above 10 ln 10, or non-finite): `diverged` is full-batch SGD at lr 6, which multiplies a
    difference in the last bit of float32 (another CPU's SIMD kernels sum in another order) by
    about 10 per epoch, until its losses differ by 30% on their way to inf. From there on, trained
    values need only the same sign and order of magnitude. A changed model, data split, seed or
    optimizer moves the first epochs by far more than 1e-4; the fixed fields (epochs, steps, lr,
    the simulated clock) are held to 1e-4 throughout."""
    a_text, b_text = made.read_text(), committed.read_text()
    if a_text == b_text:
        return []
    if _NUMBER.sub("#", a_text) != _NUMBER.sub("#", b_text):
        return ["the text differs beyond its numbers (keys, columns, rows or where NaN/Infinity are)"]
    problems, blown_up = [], False
    for (key, a), (key_b, b) in zip(_values(made), _values(committed), strict=True):
        assert key == key_b
        if isinstance(a, _Num) and isinstance(b, _Num) and a != b:
            x, y = float(a), float(b)
            if blown_up and _TRAINED.search(key):
                ok = (x >= 0) == (y >= 0) and abs(math.log1p(abs(x)) - math.log1p(abs(y))) <= math.log(10)
            else:
                ok = abs(x - y) <= max(_RTOL * max(abs(x), abs(y)), _last_digit(a), _last_digit(b))
            if not ok:
                problems.append(f"{key}: {a} here, {b} committed" + (" (after the blow-up)" if blown_up else ""))
        elif a != b:
            problems.append(f"{key}: {a!r} here, {b!r} committed")
        if "loss" in key and (not isinstance(b, _Num) or float(b) > _BLOWN_UP):
            blown_up = True
    return problems


def test_fixture_script_reproduces_the_committed_files(tmp_path: Path) -> None:
    """The fixtures are real training runs: the script trains them again, to float rounding (see
    _differences: byte for byte on the machine that made them, not on every CPU)."""
    proc = subprocess.run([sys.executable, str(FIXTURES / "make_fixtures.py"), "--only", "too-short,diverged",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(made) >= 5
    for rel in made:
        assert (RUNS / rel).is_file(), rel
        assert not _differences(tmp_path / rel, RUNS / rel), (rel, _differences(tmp_path / rel, RUNS / rel)[:10])
