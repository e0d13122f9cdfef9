"""`advisor plan --budget 50h` as typed (issue 12, item 1): the trial time from a --from log's
timings when it has them, otherwise an assumption stated in the text and the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

from advisor.advice.plan import tables
from advisor.advice.plan_time import logged_time

ONE_GPU = ["--gpus", "1"]
REAL = ROOT / "fixtures" / "real"


def _plan(*args: str) -> dict:
    res = run_cli("plan", *args, *ONE_GPU, "--json")
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_budget_alone_states_the_assumed_trial_time() -> None:
    assumed_hours = tables()["budget"]["assumed"]["trial_hours"]
    data = _plan("--budget", "50h")
    assert data["tune"] is True and data["n_configs"] > 0
    assert data["assumed"]["trial_hours"] == assumed_hours
    assert data["budget"]["trial_hours"] == assumed_hours
    hint = data["notes"][0]
    assert hint.startswith("trial time assumed") and "--trial-time" in hint
    # the hint says how the plan moves with a real figure: a shorter trial buys more configurations
    half = _plan("--budget", "50h", "--trial-time", f"{assumed_hours * 30:g}m")
    assert f"{half['n_configs']} configurations" in hint
    assert half["n_configs"] > data["n_configs"] and half["assumed"] == {}

    res = run_cli("plan", "--budget", "50h", *ONE_GPU)
    assert res.code == 0 and "Traceback" not in res.err
    assert "(assumed)" in res.out and "trial time assumed" in " ".join(res.out.split())


def test_the_same_budget_with_a_typed_trial_time_assumes_nothing() -> None:
    data = _plan("--budget", "50h", "--trial-time", "30m")
    assert data["assumed"] == {} and data["trial_time_from"] == "--trial-time"
    assert not any("assumed" in n for n in data["notes"])


@pytest.mark.parametrize("log, seconds, epochs", [
    # Hugging Face: the closing record's train_runtime over its epochs
    (REAL / "hf" / "h_15_roberta-syslog-cls.json", 47.5797 / 30, 30),
    # Ultralytics 8.3+: cumulative seconds in `time` (epoch 1 at 102.9 s, epoch 100 at 9685 s)
    (REAL / "det" / "y_09_hands-yolo11pose.csv", (9685.15 - 102.937) / 99, 100),
])
def test_trial_time_from_the_logs_timings(log: Path, seconds: float, epochs: int) -> None:
    found = logged_time(log)
    assert found is not None and found.epochs == epochs
    assert found.seconds_per_epoch == pytest.approx(seconds, rel=1e-4)
    data = _plan("--budget", "50h", "--from", str(log))
    assert data["assumed"] == {}
    assert data["budget"]["trial_hours"] == pytest.approx(seconds * epochs / 3600, rel=1e-4)
    assert data["budget"]["epochs"] == epochs and log.name in data["trial_time_from"]
    # --epochs given: the log's time per epoch, the user's number of epochs
    data = _plan("--budget", "50h", "--from", str(log), "--epochs", "10")
    assert data["budget"]["trial_hours"] == pytest.approx(seconds * 10 / 3600, rel=1e-4)


def test_wandb_runtime_and_per_epoch_columns(tmp_path: Path) -> None:
    per_epoch = tmp_path / "log.csv"
    per_epoch.write_text("epoch,train_loss,val_loss,epoch_time\n"
                         + "".join(f"{e},{1 / e:.4f},{1.2 / e:.4f},{60 + e % 2}\n" for e in range(1, 11)))
    found = logged_time(per_epoch)
    assert found is not None and found.epochs == 10 and 60 <= found.seconds_per_epoch <= 61
    stamps = tmp_path / "stamps.csv"  # wall-clock stamps: 2 minutes an epoch
    stamps.write_text("epoch,loss,val_loss,timestamp\n"
                      + "".join(f"{e},{1 / e:.4f},{1.1 / e:.4f},{1.7e9 + 120 * e}\n" for e in range(1, 6)))
    assert logged_time(stamps).seconds_per_epoch == pytest.approx(120)


def test_a_log_without_timings_falls_back_to_the_assumption(tmp_path: Path) -> None:
    log = tmp_path / "run.csv"  # an overfitting run (so that the plan searches), no time column
    log.write_text("epoch,train_loss,val_loss\n"
                   + "".join(f"{e},{2 * 0.8 ** e:.4f},{0.9 + 0.02 * (e - 8) ** 2 / 8:.4f}\n" for e in range(30)))
    assert logged_time(log) is None
    data = _plan("--budget", "50h", "--from", str(log))
    assert data["assumed"]["trial_hours"] == tables()["budget"]["assumed"]["trial_hours"]
    assert "--from log holds no timings" in data["assumed"]["why"]


def test_per_iteration_times_are_not_read_as_epochs() -> None:
    # mmdetection's `time` is seconds per iteration, not a clock: no figure rather than a wrong one
    assert logged_time(ROOT / "fixtures" / "runs" / "healthy.mmdet") is None
